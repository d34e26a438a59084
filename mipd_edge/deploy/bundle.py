"""The deployable bundle (DESIGN section 2): its manifest, its names, and loading it back.

A bundle is a directory: ``bundle.json`` (what is in it and how to feed it),
``vocabulary.npz``, the encoder and decoder graphs per format, and
``weights.safetensors``. This module is torch-free: devices read bundles with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path, PurePosixPath
from typing import Any, Collection, Mapping, Optional, Sequence

from ..errors import BundleError, DatasetError
from ..files import PathLike, read_json, write_json
from .backends import backend_info
from .tasks import TASKS, BundleTask, bundle_task

FORMAT = "mipd-edge-bundle"
VERSION = 2  # 2: every file's SHA-256 recorded in "files"

# run-time precisions; bf16 is OpenVINO's arithmetic on the FP32 graphs, on CPUs that have it
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_DEPTH = 32
UNRECORDED = ("tensorrt",)  # engines are built on the device and keyed by the ONNX graph they came from


@dataclasses.dataclass(frozen=True)
class GraphFormat:
    family: str  # what reads it: onnx (ONNX Runtime, and TensorRT's engine builder) or openvino
    precision: Optional[str]  # the arithmetic its graphs hold (None: engines of any, built on the device)
    files: Mapping[str, str]  # graph -> where it lives in the bundle (none for device-built engines)
    backend: Optional[str] = None  # a layout for this backend alone, which it prefers where a bundle has it


# the graph formats a bundle may hold, by the name the manifest lists them under
GRAPH_FORMATS: dict[str, GraphFormat] = {
    "onnx": GraphFormat("onnx", "fp32", {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}),
    "onnx-int8": GraphFormat("onnx", "int8", {"encoder": "encoder.int8.onnx", "decoder": "decoder.onnx"}),
    # ONNX Runtime's own static Q/DQ layout (u8 activations, 7-bit s8 weights): faster on its CPU
    # kernels than NNCF's Q/DQ, which TensorRT needs and ONNX Runtime runs where this one is missing
    "onnxruntime-int8": GraphFormat("onnx", "int8", {"encoder": "encoder.int8.ort.onnx", "decoder": "decoder.onnx"},
                                    backend="onnxruntime"),
    "openvino": GraphFormat("openvino", "fp32", {"encoder": "openvino/encoder.xml", "decoder": "openvino/decoder.xml"}),
    "openvino-int8": GraphFormat("openvino", "int8", {"encoder": "openvino/encoder.int8.xml",
                                                      "decoder": "openvino/decoder.xml"}),  # INT8 is in the encoder
    "tensorrt": GraphFormat("tensorrt", None, {}),
}


def format_of(family: str, precision: str) -> str:
    """The format that holds a family's graphs in a precision for every backend that reads the
    family. FP16 runs from the FP32 graphs (converted by the runtime, or compressed at export)
    where no format holds FP16 ones; bf16 always runs from the FP32 graphs (the runtime computes
    them in bf16)."""
    for wanted in ((precision, "fp32") if precision in ("fp16", "bf16") else (precision,)):
        for name, fmt in GRAPH_FORMATS.items():
            if fmt.family == family and fmt.precision == wanted and fmt.backend is None:
                return name
    raise BundleError(f"no {family} graph format holds {precision} graphs")


def graph_format(backend: str, precision: str, graphs: Collection[str] = ()) -> Optional[str]:
    """The graph format a backend runs a precision from (None: the weights file): a layout of the
    backend's own where ``graphs`` (a bundle's) holds one, else its family's."""
    family = backend_info(backend).family
    if family is None:
        return None
    own = [name for name, fmt in GRAPH_FORMATS.items()
           if fmt.backend == backend and fmt.precision == precision and name in graphs]
    return own[0] if own else format_of(family, precision)


def graph_files(fmt: str) -> dict[str, str]:
    """Where a format's graphs are written in a bundle (relative paths, as the manifest records them)."""
    return dict(GRAPH_FORMATS[fmt].files)


@dataclasses.dataclass
class BundleManifest:
    """``bundle.json``, typed: what a bundle holds and how to feed it.

    ``read_manifest`` gives one checked against its bundle; export and quantization build or
    change one and ``write_manifest`` records it with every file's hash. The fields are in
    the order ``bundle.json`` lists them."""

    model: dict[str, Any]  # the student's configuration (``StudentConfig.to_json``)
    preprocess: dict[str, Any]  # ``Preprocess.to_json``: input size, mean / std, pad value
    precision: str  # the most compact precision the bundle holds
    graphs: dict[str, dict[str, str]]  # format -> graph -> path in the bundle
    inputs: dict[str, list[str]]
    outputs: dict[str, list[str]]
    dynamic_batch: bool  # whether the encoder graphs take any batch (decoders always do)
    scales: dict[str, float]  # the verb and noun logit scales of the cosine matching
    max_roles: int
    text_dim: int
    text_encoder: str  # the id of the text encoder that embedded the vocabulary
    text_encoder_spec: str  # how that encoder is loaded where the vocabulary is edited
    weights: str
    vocabulary: str
    verification: dict[str, Any]  # per format, its agreement with torch
    provenance: dict[str, Any]  # how the student was trained
    hoi_space: Optional[dict[str, Any]] = None  # HOI bundles: their verbs, objects and classes
    text_encoder_onnx: Optional[dict[str, Any]] = None  # a shipped ONNX text encoder: folder, id
    format: str = FORMAT
    version: int = VERSION
    quantization: Optional[dict[str, Any]] = None  # INT8 bundles: how, on what, the accuracy gate
    metrics: Optional[dict[str, Any]] = None  # INT8 bundles: FP32 and INT8 accuracy side by side
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # path in the bundle -> SHA-256

    @classmethod
    def from_json(cls, bundle: PathLike, data: Any) -> "BundleManifest":
        """The manifest in ``bundle.json``'s contents, every value checked first."""
        validate_manifest(bundle, data)
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """``bundle.json``'s object (optional fields left out where absent)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None or f.name not in OPTIONAL_FIELDS}

    @property
    def task(self) -> BundleTask:
        return bundle_task(self.model.get("task", "gsr"))

    @property
    def verb_scale(self) -> float:
        return float(self.scales["verb"])

    @property
    def noun_scale(self) -> float:
        return float(self.scales["noun"])

    @property
    def image_size(self) -> int:
        return int(self.preprocess["size"])

    def input_dims(self) -> dict[str, tuple[int, ...]]:
        """Per graph input, its shape after the batch dimension, as the manifest promises it."""
        size, roles, dim = self.image_size, self.max_roles, self.text_dim
        return {"images": (3, size, size), "role_emb": (roles, dim), "verb_emb": (dim,), "role_mask": (roles,)}


def bundle_file(bundle: PathLike, relative: Any, field: str) -> Path:
    """The file a manifest field names, confined to the bundle: a relative path without
    ``..`` whose real location (symlinks followed) is inside the bundle folder."""
    if not isinstance(relative, str) or not relative:
        raise BundleError(f"{bundle}: bundle.json '{field}' must be a relative path, got {relative!r}")
    rel = PurePosixPath(relative)
    if rel.is_absolute() or ".." in rel.parts or "\\" in relative or ":" in rel.parts[0]:
        raise BundleError(f"{bundle}: bundle.json '{field}' = {relative!r} points outside the bundle")
    root = Path(bundle).resolve()
    path = root / rel
    if not path.resolve().is_relative_to(root):
        raise BundleError(f"{bundle}: bundle.json '{field}' = {relative!r} leads outside the bundle (a symlink)")
    return path


def graph_path(bundle: PathLike, manifest: BundleManifest, fmt: str, graph: str) -> Path:
    """Where a graph of a format lives, or a BundleError that says what the bundle has."""
    graphs = manifest.graphs
    if fmt not in graphs:
        raise BundleError(f"{bundle}: no {fmt} graphs in this bundle (it has: {', '.join(sorted(graphs)) or 'none'}); "
                          f"re-export it with --formats {fmt.split('-')[0]}")
    path = bundle_file(bundle, graphs[fmt][graph], f"graphs.{fmt}.{graph}")
    if not path.is_file():
        raise BundleError(f"{bundle}: {graphs[fmt][graph]} is listed in bundle.json but missing")
    return path


def read_manifest(bundle: PathLike, verify: bool = True) -> BundleManifest:
    """The validated manifest of a bundle. ``verify`` also checks every recorded file's
    SHA-256: a damaged bundle is an error, never a different answer."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleError(f"bundle not found: {bundle}")
    try:
        data = read_json(bundle / "bundle.json", "bundle manifest", MAX_MANIFEST_BYTES)
    except DatasetError as exc:
        raise BundleError(str(exc)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{bundle / 'bundle.json'} is not a mipd-edge bundle manifest")
    if data.get("version") != VERSION:
        raise BundleError(f"{bundle}: bundle version {data.get('version')} is not {VERSION}; re-export it")
    manifest = BundleManifest.from_json(bundle, data)
    if verify:
        verify_files(bundle, manifest)
    return manifest


def verify_files(bundle: Path, manifest: BundleManifest) -> None:
    """Every recorded file is present and has its recorded hash."""
    for relative, digest in manifest.files.items():
        path = bundle_file(bundle, relative, f"files.{relative}")
        if not path.is_file():
            raise BundleError(f"{bundle}: {relative} is missing (the bundle is incomplete)")
        if file_digest(path) != digest:
            raise BundleError(f"{bundle}: {relative} has changed since export (SHA-256 differs): "
                              "the bundle is damaged; copy or export it again")


def write_manifest(bundle: PathLike, manifest: BundleManifest) -> None:
    """``bundle.json`` with the SHA-256 of every file in the bundle (but device caches),
    which it also records in ``manifest.files``."""
    bundle = Path(bundle)
    manifest.files = {p.relative_to(bundle).as_posix(): file_digest(p) for p in sorted(bundle.rglob("*"))
                      if p.is_file() and p.name != "bundle.json" and p.relative_to(bundle).parts[0] not in UNRECORDED
                      and not p.name.startswith(".")}
    data = manifest.to_json()
    validate_manifest(bundle, json.loads(json.dumps(data)))  # as it will be read back (tuples are lists)
    write_json(bundle / "bundle.json", data)


def check_input_shapes(bundle: PathLike, manifest: BundleManifest, graph: str,
                       shapes: Mapping[str, Sequence[Optional[int]]]) -> None:
    """A loaded graph's input shapes (None for a free dimension) agree with the manifest."""
    for name, dims in manifest.input_dims().items():
        if name not in shapes:
            continue
        got = list(shapes[name])
        if len(got) != len(dims) + 1 or any(g is not None and g != d for g, d in zip(got[1:], dims)):
            raise BundleError(f"{bundle}: the {graph} graph's input '{name}' has shape {got}, bundle.json "
                              f"promises (batch, {', '.join(map(str, dims))})")


def validate_manifest(bundle: PathLike, m: Mapping[str, Any]) -> None:
    """Every value of the manifest has its type, range and agreement with the others; the
    first one that does not is a BundleError naming the field."""
    where = f"{bundle}: bundle.json"

    def need(ok: bool, field: str, expected: str) -> None:
        if not ok:
            value = m
            for part in field.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            shown = repr(value)
            raise BundleError(f"{where} '{field}' must be {expected}, got {shown[:80]}")

    def is_int(v: Any, lo: int, hi: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    def is_number(v: Any, lo: float, hi: float) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi

    if _depth(m) > MAX_MANIFEST_DEPTH:
        raise BundleError(f"{where} is nested more than {MAX_MANIFEST_DEPTH} levels deep")
    unknown = sorted(set(m) - set(MANIFEST_FIELDS))
    if unknown:
        raise BundleError(f"{where} has unknown fields {unknown}")
    for key, kind in MANIFEST_FIELDS.items():
        if key in m or key not in OPTIONAL_FIELDS:
            need(isinstance(m.get(key), kind), key, f"a {kind.__name__}" if key in m else "present")
    model, pre, scales = m["model"], m["preprocess"], m["scales"]
    task = TASKS.get(model.get("task", "gsr"))
    need(task is not None, "model.task", " or ".join(TASKS))
    need(is_int(pre.get("size"), 16, 4096), "preprocess.size", "an integer from 16 to 4096")
    need(pre.get("size") == model.get("image_size"), "preprocess.size", "the model's image_size")
    for key, lo in (("mean", -1e3), ("std", 1e-6)):
        values = pre.get(key)
        need(isinstance(values, list) and len(values) == 3 and all(is_number(v, lo, 1e3) for v in values),
             f"preprocess.{key}", f"three finite numbers{' above 0' if key == 'std' else ''}")
    need(is_int(pre.get("pad_value", 114), 0, 255), "preprocess.pad_value", "an integer from 0 to 255")
    need(m["precision"] in ("fp32", "fp16", "int8"), "precision", "fp32, fp16 or int8")
    for key in ("verb", "noun"):
        need(is_number(scales.get(key), 1e-3, 1e4), f"scales.{key}", "a finite number from 0.001 to 10000")
    need(is_int(m["max_roles"], 1, 6), "max_roles", "an integer from 1 to 6")
    need(m["max_roles"] == model.get("max_roles", m["max_roles"]), "max_roles", "the model's max_roles")
    need(is_int(m["text_dim"], 1, 16384), "text_dim", "an integer from 1 to 16384")
    need(m["text_dim"] == model.get("text_dim"), "text_dim", "the model's text_dim")
    need(m["inputs"] == task.inputs, "inputs", f"{task.inputs} for a {task.name} model")
    need(m["outputs"] == task.outputs, "outputs", f"{task.outputs} for a {task.name} model")
    for fmt, graphs in m["graphs"].items():
        need(fmt in GRAPH_FORMATS, "graphs", f"keyed by {', '.join(GRAPH_FORMATS)}")
        need(isinstance(graphs, dict) and set(graphs) == {"encoder", "decoder"}, f"graphs.{fmt}",
             "an object with an encoder and a decoder path")
        for graph, relative in graphs.items():
            bundle_file(bundle, relative, f"graphs.{fmt}.{graph}")
    for key in ("weights", "vocabulary"):
        bundle_file(bundle, m[key], key)
    if "text_encoder_onnx" in m:
        need(m["text_encoder_onnx"].get("id") == m["text_encoder"], "text_encoder_onnx.id",
             "the model's text_encoder")
        bundle_file(bundle, m["text_encoder_onnx"].get("folder"), "text_encoder_onnx.folder")
    gate = m.get("quantization", {}).get("accuracy_gate", 0.0)
    need(is_number(gate, 0.0, 100.0), "quantization.accuracy_gate", "a number of points from 0 to 100")
    for key in task.required_fields:
        need(key in m, key, f"present for a {task.name} model")
    for relative, digest in m["files"].items():
        bundle_file(bundle, relative, f"files.{relative}")
        need(isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest),
             f"files.{relative}", "a SHA-256 in hex")
    recorded = set(m["files"])
    referenced = [m["weights"], m["vocabulary"]] + [
        path for fmt, graphs in m["graphs"].items() if fmt not in UNRECORDED for path in graphs.values()]
    referenced += [p[:-4] + ".bin" for p in referenced if p.endswith(".xml")]
    if "text_encoder_onnx" in m:
        referenced += [f"{m['text_encoder_onnx']['folder']}/{name}" for name in ("model.onnx", "tokenizer.json")]
    unrecorded = [p for p in referenced if PurePosixPath(p).as_posix() not in recorded]
    if unrecorded:
        raise BundleError(f"{where} names files without a recorded hash: {unrecorded[:3]}")


# the manifest's fields (BundleManifest's, in its order) and their JSON types; OPTIONAL_FIELDS may be absent
MANIFEST_FIELDS: dict[str, type] = {
    "model": dict, "preprocess": dict, "precision": str, "graphs": dict, "inputs": dict, "outputs": dict,
    "dynamic_batch": bool, "scales": dict, "max_roles": int, "text_dim": int, "text_encoder": str,
    "text_encoder_spec": str, "weights": str, "vocabulary": str, "verification": dict, "provenance": dict,
    "hoi_space": dict, "text_encoder_onnx": dict, "format": str, "version": int, "quantization": dict,
    "metrics": dict, "files": dict}
OPTIONAL_FIELDS = frozenset({"quantization", "metrics", "hoi_space", "text_encoder_onnx"})


def _depth(obj: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_MANIFEST_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def file_digest(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_digest(bundle: PathLike) -> str:
    """One hash over a bundle's manifest, which records every file's hash: what benchmarks
    and ``auto``'s cache record as 'the model'."""
    return file_digest(Path(bundle) / "bundle.json")
