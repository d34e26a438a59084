"""The formats ``mipd-edge export`` writes, in one table (as Ultralytics' ``export_formats()``):
how each format's graphs are made from the ONNX export, and what checks them against torch.
Torch-free, so the command line lists the formats without importing the exporter, and a
device can build its own TensorRT engines from a bundle's ONNX graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .deploy.bundle import BundleManifest, graph_files
from .errors import MissingDependencyError


def onnx_to_openvino(onnx_path: Path, xml_path: Path, fp16: bool) -> None:
    try:
        import openvino as ov
    except ImportError as exc:
        raise MissingDependencyError("exporting OpenVINO IR needs openvino: pip install 'mipd-edge[openvino]'") from exc
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=fp16)


def openvino_ir(out: Path, manifest: BundleManifest, precision: str) -> dict[str, str]:
    """The ONNX graphs as OpenVINO IR (weights compressed to FP16 in an fp16 bundle)."""
    files = graph_files("openvino")
    for graph, xml in files.items():
        onnx_to_openvino(out / manifest.graphs["onnx"][graph], out / xml, precision == "fp16")
    return files


def tensorrt_engines(out: Path, manifest: BundleManifest, precision: str) -> dict[str, str]:
    """TensorRT engines built from the ONNX graphs (on an NVIDIA GPU: engines are device-specific)."""
    from .deploy.runtimes.tensorrt import build_engines

    return build_engines(out, manifest, "fp16" if precision == "fp16" else "fp32")


@dataclass(frozen=True)
class ExportFormat:
    """A ``--formats`` choice: how its graphs are made from the ONNX export (None: they are the
    ONNX export, which every format is converted from and which is kept only when asked for),
    and the backend (and its options) that checks them against torch (None: checked where
    they are built)."""

    convert: Optional[Callable[[Path, BundleManifest, str], dict[str, str]]]
    verified_by: Optional[tuple[str, dict[str, Any]]]
    holds_precision: bool  # its float graphs hold the bundle's precision (an fp16 bundle's are fp16)
    what: str


# the formats ``export`` writes, in the order it writes them (GRAPH_FORMATS says where their graphs live)
EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(None, ("onnxruntime", {}), False, "ONNX graphs (FP32): ONNX Runtime, and TensorRT's source"),
    "openvino": ExportFormat(openvino_ir, ("openvino", {}), True,
                             "OpenVINO IR (FP32, or FP16 weights in an fp16 bundle)"),
    "tensorrt": ExportFormat(tensorrt_engines, None, True, "TensorRT engines, built on the device's GPU"),
}
