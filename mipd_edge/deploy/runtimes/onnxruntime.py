"""ONNX Runtime: CPU everywhere; CUDA and TensorRT execution providers where installed."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping, Optional

import numpy as np

from ...errors import BundleError, require
from ..bundle import BundleManifest, graph_format, graph_path
from .base import Runtime

log = logging.getLogger(__name__)

PROVIDERS = {"CPU": ["CPUExecutionProvider"],
             "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, bundle, manifest: BundleManifest, device: str = "CPU", precision: Optional[str] = None,
                 threads: Optional[int] = None, canvas_input: bool = False):
        super().__init__(bundle, manifest, device, precision, threads, canvas_input)
        ort = require("onnxruntime", self.extra, "The ONNX Runtime backend")
        device = device.upper()
        if device not in PROVIDERS:
            raise BundleError(f"onnxruntime device must be one of {sorted(PROVIDERS)}, got {device!r}")
        available = set(ort.get_available_providers())
        providers = [p for p in PROVIDERS[device] if p in available]
        if PROVIDERS[device][0] not in available:
            raise BundleError(f"onnxruntime here has no {PROVIDERS[device][0]} (available: {sorted(available)})")
        fmt = graph_format("onnxruntime", self.precision, manifest.graphs)
        self.sessions = {}
        for graph in ("encoder", "decoder"):
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Each session has its own thread pool, whose threads spin after a run. The decoder
            # is a few per cent of the work: run on the calling thread alone it leaves the cores
            # to the encoder's pool, instead of two pools spinning against each other (the
            # benchmark's raw latency shows the difference).
            if graph == "decoder":
                options.intra_op_num_threads = 1
            elif threads:
                options.intra_op_num_threads = threads
            path = graph_path(bundle, manifest, fmt, graph)
            try:
                self.sessions[graph] = ort.InferenceSession(str(path), options, providers=providers)
            except Exception as exc:  # ORT raises its own exception types for broken files
                raise BundleError(f"{path}: ONNX Runtime cannot load this graph ({exc})") from exc
            self.check_shapes(graph, {i.name: [d if isinstance(d, int) else None for d in i.shape]
                                      for i in self.sessions[graph].get_inputs()})
        self.providers = providers
        self.pending, self.idle = 0, threading.Condition()
        self.errors: list[str] = []

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``InferenceSession.run`` may be called from many threads at once."""
        return self.outputs(graph, self.sessions[graph].run(None, self.check_inputs(graph, inputs)))

    def run_async(self, graph: str, inputs: Mapping[str, np.ndarray],
                  callback: Callable[[dict[str, np.ndarray]], None]) -> None:
        """``InferenceSession.run_async``: the run happens on ONNX Runtime's own thread pool. The
        decoder has none (it runs on the calling thread), so it runs inline."""
        if graph == "decoder":
            callback(self.run(graph, inputs))
            return
        def done(results, _user_data, error: str) -> None:
            try:
                if error:
                    self.errors.append(error)
                else:
                    callback(self.outputs(graph, results))
            finally:
                with self.idle:
                    self.pending -= 1
                    self.idle.notify_all()

        with self.idle:
            self.pending += 1
        self.sessions[graph].run_async(None, self.check_inputs(graph, inputs), done, None)

    def wait(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.pending == 0)
        if self.errors:
            error, self.errors = self.errors[0], []
            raise BundleError(f"ONNX Runtime asynchronous run failed: {error}")
