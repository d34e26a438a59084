"""Backends behind one ``Runtime`` interface, imported only when asked for.

``load_runtime("auto", ...)`` picks the fastest backend installed for the device and
says which it picked. A backend that is not installed is a clear error naming the pip
extra that provides it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import BundleError, MissingDependencyError
from .base import Runtime

log = logging.getLogger(__name__)

# name -> (module, class, the package it needs, the pip extra)
BACKENDS = {
    "tensorrt": ("mipd_edge.runtimes.tensorrt", "TensorRTRuntime", "tensorrt", "tensorrt"),
    "openvino": ("mipd_edge.runtimes.openvino", "OpenVinoRuntime", "openvino", "openvino"),
    "onnxruntime": ("mipd_edge.runtimes.onnxruntime", "OnnxRuntime", "onnxruntime", "onnx"),
    "torch": ("mipd_edge.runtimes.torch", "TorchRuntime", "torch", "train"),
}
# fastest first, per device kind
PREFERENCE = {"CPU": ("openvino", "onnxruntime", "torch"), "GPU": ("openvino", "onnxruntime"),
              "CUDA": ("tensorrt", "torch", "onnxruntime"), "NPU": ("openvino",), "AUTO": ("openvino",)}


def installed(name: str) -> bool:
    return importlib.util.find_spec(BACKENDS[name][2]) is not None


def available_backends() -> list[str]:
    return [name for name in BACKENDS if installed(name)]


def pick_backend(device: str, manifest: Mapping[str, Any]) -> str:
    """The first installed backend for the device whose graphs the bundle has."""
    formats = set(manifest.get("graphs", {}))
    for name in PREFERENCE.get(device.upper().split(":")[0], PREFERENCE["CPU"]):
        has_graphs = name == "torch" or name == "tensorrt" or any(f.startswith(name.replace("onnxruntime", "onnx"))
                                                                    for f in formats)
        if installed(name) and has_graphs:
            return name
    raise BundleError(f"no installed backend can run this bundle on {device}: install one of "
                      "mipd-edge[openvino], mipd-edge[onnx], mipd-edge[train]")


def load_runtime(name: str, bundle: Path, manifest: Mapping[str, Any], device: str = "CPU",
                 precision: Optional[str] = None, threads: Optional[int] = None, **options: Any) -> Runtime:
    if name == "auto":
        name = pick_backend(device, manifest)
        log.info("backend auto: picked %s for %s", name, device)
    if name not in BACKENDS:
        raise BundleError(f"unknown backend {name!r}; choose from auto, {', '.join(BACKENDS)}")
    module, cls, package, extra = BACKENDS[name]
    if not installed(name):
        raise MissingDependencyError(f"the {name} backend needs '{package}', which is not installed: "
                                     f"pip install 'mipd-edge[{extra}]'")
    runtime_cls = getattr(importlib.import_module(module), cls)
    return runtime_cls(bundle, manifest, device=device, precision=precision, threads=threads, **options)


__all__ = ["Runtime", "BACKENDS", "available_backends", "load_runtime", "pick_backend"]
