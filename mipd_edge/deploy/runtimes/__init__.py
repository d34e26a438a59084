"""Backends behind one ``Runtime`` interface, imported only when asked for.

``load_runtime`` loads a named backend; a backend that is not installed is a clear error
naming the pip extra that provides it. ``selection.select_runtime`` is ``backend="auto"``:
it measures the candidates and keeps the fastest.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Optional

from ...errors import BundleError, MissingDependencyError
from ..bundle import BundleManifest
from .base import Runtime

# name -> (module, class, the package it needs, the pip extra)
BACKENDS = {
    "tensorrt": ("mipd_edge.deploy.runtimes.tensorrt", "TensorRTRuntime", "tensorrt", "tensorrt"),
    "openvino": ("mipd_edge.deploy.runtimes.openvino", "OpenVinoRuntime", "openvino", "openvino"),
    "onnxruntime": ("mipd_edge.deploy.runtimes.onnxruntime", "OnnxRuntime", "onnxruntime", "onnx"),
    "torch": ("mipd_edge.deploy.runtimes.torch", "TorchRuntime", "torch", "train"),
}
# the backends that can serve each device kind; ``auto`` measures them (this order breaks no ties)
PREFERENCE = {"CPU": ("openvino", "onnxruntime", "torch"), "GPU": ("openvino",),
              "CUDA": ("tensorrt", "torch", "onnxruntime"), "NPU": ("openvino",), "AUTO": ("openvino",)}


def installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name][2]) is not None


def load_runtime(name: str, bundle: Path, manifest: BundleManifest, device: str = "CPU",
                 precision: Optional[str] = None, threads: Optional[int] = None, **options: Any) -> Runtime:
    if name not in BACKENDS:
        raise BundleError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    module, cls, package, extra = BACKENDS[name]
    if not installed(name):
        raise MissingDependencyError(f"the {name} backend needs '{package}', which is not installed: "
                                     f"pip install 'mipd-edge[{extra}]'")
    runtime_cls = getattr(importlib.import_module(module), cls)
    return runtime_cls(bundle, manifest, device=device, precision=precision, threads=threads, **options)


__all__ = ["Runtime", "BACKENDS", "PREFERENCE", "installed", "load_runtime"]
