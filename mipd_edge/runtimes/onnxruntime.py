"""ONNX Runtime: CPU everywhere; CUDA and TensorRT execution providers where installed."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import numpy as np

from ..bundle import graph_path
from ..errors import BundleError, require
from .base import FORMAT_BY_PRECISION, Runtime

log = logging.getLogger(__name__)

PROVIDERS = {"CPU": ["CPUExecutionProvider"],
             "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    extra = "onnx"

    def __init__(self, bundle, manifest: Mapping[str, Any], device: str = "CPU", precision: Optional[str] = None,
                 threads: Optional[int] = None):
        super().__init__(bundle, manifest, device, precision, threads)
        ort = require("onnxruntime", self.extra, "The ONNX Runtime backend")
        device = device.upper()
        if device not in PROVIDERS:
            raise BundleError(f"onnxruntime device must be one of {sorted(PROVIDERS)}, got {device!r}")
        available = set(ort.get_available_providers())
        providers = [p for p in PROVIDERS[device] if p in available]
        if PROVIDERS[device][0] not in available:
            raise BundleError(f"onnxruntime here has no {PROVIDERS[device][0]} (available: {sorted(available)})")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        fmt = "onnx" + FORMAT_BY_PRECISION[self.precision]
        self.sessions = {}
        for graph in ("encoder", "decoder"):
            path = graph_path(bundle, manifest, fmt, graph)
            try:
                self.sessions[graph] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # ORT raises its own exception types for broken files
                raise BundleError(f"{path}: ONNX Runtime cannot load this graph ({exc})") from exc
        self.providers = providers

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.outputs(graph, self.sessions[graph].run(None, self.check_inputs(graph, inputs)))
