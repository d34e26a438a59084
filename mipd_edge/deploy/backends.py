"""Every backend in one table: where its ``Runtime`` lives, what installs it, which graphs it
reads, and which precisions it runs on which devices.

``backend="auto"``, the benchmark, ``mipd-edge check`` and the command line's choices all
read this table, so a backend is added by writing its ``Runtime`` and one row here (or, from
outside the package, ``register_backend``). Torch-free and import-free: a runtime's module
is imported only when it is chosen.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import BundleError


@dataclass(frozen=True)
class Backend:
    """One row of the backend table: a runtime, what installs it, which graphs it reads, and
    which precisions it runs on which device kinds (``CPU``, ``CUDA``, ``GPU``, ``NPU``, ``AUTO``)."""

    name: str
    runtime: str  # "module:Class" of its Runtime
    package: str  # the import that tells whether it is installed
    extra: str  # the pip extra that installs it: pip install 'mipd-edge[EXTRA]'
    family: Optional[str]  # the graph family it reads (deploy/bundle.py GRAPH_FORMATS); None: the weights file
    devices: Mapping[str, tuple[str, ...]]  # device kind -> the precisions it runs there

    def installed(self) -> bool:
        """Whether its package can be imported here (checked without importing it)."""
        return importlib.util.find_spec(self.package) is not None


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "mipd_edge.deploy.runtimes.torch:TorchRuntime", "torch", "train", None,
            {"CPU": ("fp32",), "CUDA": ("fp32", "fp16")}),
    Backend("onnxruntime", "mipd_edge.deploy.runtimes.onnxruntime:OnnxRuntime", "onnxruntime", "onnx", "onnx",
            {"CPU": ("fp32", "int8"), "CUDA": ("fp32", "int8")}),
    Backend("openvino", "mipd_edge.deploy.runtimes.openvino:OpenVinoRuntime", "openvino", "openvino", "openvino",
            {"CPU": ("fp32", "fp16", "bf16", "int8"),
             **{kind: ("fp32", "fp16", "int8") for kind in ("GPU", "NPU", "AUTO")}}),
    # TensorRT builds its engines from the ONNX graphs, on the device
    Backend("tensorrt", "mipd_edge.deploy.runtimes.tensorrt:TensorRTRuntime", "tensorrt", "tensorrt", "onnx",
            {"CUDA": ("fp32", "fp16", "int8")}),
)}


def register_backend(backend: Backend) -> None:
    """Add a backend (or replace the one of its name) for this process."""
    if not isinstance(backend, Backend) or ":" not in backend.runtime or not backend.devices:
        raise BundleError(f"a backend is a Backend naming its runtime as 'module:Class' and at least one device, "
                          f"got {backend!r}")
    BACKENDS[backend.name] = backend


def backend_info(name: str) -> Backend:
    if name not in BACKENDS:
        raise BundleError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[name]


def installed(name: str) -> bool:
    return backend_info(name).installed()


def device_kind(device: str) -> str:
    """``CUDA:1`` -> ``CUDA``, ``GPU.0`` -> ``GPU``."""
    return device.upper().split(":")[0].split(".")[0]


def backends_for(device: str) -> tuple[str, ...]:
    """The backends that can serve a device (a kind no backend names is served as a CPU)."""
    kind = device_kind(device)
    found = tuple(b.name for b in BACKENDS.values() if kind in b.devices)
    return found or tuple(b.name for b in BACKENDS.values() if "CPU" in b.devices)


def unsupported(name: str, precision: str, device: str) -> Optional[str]:
    """Why backend ``name`` cannot run ``precision`` on ``device`` whatever the bundle, or None."""
    backend = backend_info(name)
    if not backend.installed():
        return f"not installed: pip install 'mipd-edge[{backend.extra}]'"
    kind = device_kind(device)
    runs = backend.devices.get(kind)
    if runs is None:
        return f"{name} runs on {', '.join(backend.devices)} devices, not {kind}"
    if precision in runs:
        return None
    elsewhere = [k for k, p in backend.devices.items() if precision in p]
    others = [b.name for b in BACKENDS.values() if precision in b.devices.get(kind, ())]
    return (f"{name} runs {', '.join(runs)} on {kind}"
            + (f"; {precision} on {', '.join(elsewhere)} (--device)" if elsewhere else "")
            + (f"; {precision} on {kind}: {', '.join(others)}" if others else ""))

