"""The deployable bundle (DESIGN section 2): its manifest, its names, and loading it back.

A bundle is a directory: ``bundle.json`` (what is in it and how to feed it),
``vocabulary.npz``, the encoder and decoder graphs per format, and
``weights.safetensors``. This module is torch-free: devices read bundles with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence

from ..errors import BundleError, DatasetError
from ..files import PathLike, read_json, write_json

FORMAT = "mipd-edge-bundle"
VERSION = 2  # 2: every file's SHA-256 recorded in "files"
INPUTS = {"encoder": ["images"], "decoder": ["memory", "role_emb", "verb_emb", "role_mask"]}
OUTPUTS = {"encoder": ["memory", "glance"], "decoder": ["nouns", "boxes", "exists"]}
# HOI students: the decoder needs no vocabulary input and gives every interaction point (grid cell) at once
HOI_INPUTS = {"encoder": ["images"], "decoder": ["memory"]}
HOI_OUTPUTS = {"encoder": ["memory", "glance"],
               "decoder": ["human_boxes", "object_boxes", "objects", "verbs", "interaction"]}


def task_of(manifest: Mapping[str, Any]) -> str:
    """``gsr`` (one situation per image) or ``hoi`` (a set of interactions)."""
    return manifest["model"].get("task", "gsr")


def graph_io(task: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Input and output names of both graphs for a task."""
    return (HOI_INPUTS, HOI_OUTPUTS) if task == "hoi" else (INPUTS, OUTPUTS)


GRAPHS = ("encoder", "decoder")
# the graph formats a bundle holds: name -> where each graph lives in the bundle (tensorrt:
# engines built on the device, named by GPU and TensorRT version, so no fixed files)
GRAPH_FORMATS: dict[str, dict[str, str]] = {
    "onnx": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"},
    "onnx-int8": {"encoder": "encoder.int8.onnx", "decoder": "decoder.onnx"},  # INT8 is in the encoder
    "openvino": {"encoder": "openvino/encoder.xml", "decoder": "openvino/decoder.xml"},
    "openvino-int8": {"encoder": "openvino/encoder.int8.xml", "decoder": "openvino/decoder.xml"},
    "tensorrt": {},
}
# the graph family each backend reads (torch: the weights file); TensorRT builds its engines from ONNX
BACKEND_FAMILY: dict[str, Optional[str]] = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "onnx",
                                            "torch": None}
PRECISIONS = ("fp32", "fp16", "int8")  # fp16 runs from the fp32 graphs (converted by the runtime or at export)


def graph_format(backend: str, precision: str) -> Optional[str]:
    """The graph format a backend runs a precision from (None: the weights file)."""
    family = BACKEND_FAMILY[backend]
    if family is None:
        return None
    return family + ("-int8" if precision == "int8" else "")


def graph_files(fmt: str) -> dict[str, str]:
    """Where a format's graphs are written in a bundle (relative paths, as the manifest records them)."""
    return dict(GRAPH_FORMATS[fmt])
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_DEPTH = 32
UNRECORDED = ("tensorrt",)  # engines are built on the device and keyed by the ONNX graph they came from


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


def graph_path(bundle: PathLike, manifest: Mapping[str, Any], fmt: str, graph: str) -> Path:
    """Where a graph of a format lives, or a BundleError that says what the bundle has."""
    graphs = manifest.get("graphs", {})
    if fmt not in graphs:
        raise BundleError(f"{bundle}: no {fmt} graphs in this bundle (it has: {', '.join(sorted(graphs)) or 'none'}); "
                          f"re-export it with --formats {fmt.split('-')[0]}")
    path = bundle_file(bundle, graphs[fmt][graph], f"graphs.{fmt}.{graph}")
    if not path.is_file():
        raise BundleError(f"{bundle}: {graphs[fmt][graph]} is listed in bundle.json but missing")
    return path


def read_manifest(bundle: PathLike, verify: bool = True) -> dict[str, Any]:
    """The validated manifest of a bundle. ``verify`` also checks every recorded file's
    SHA-256: a damaged bundle is an error, never a different answer."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleError(f"bundle not found: {bundle}")
    try:
        manifest = read_json(bundle / "bundle.json", "bundle manifest", MAX_MANIFEST_BYTES)
    except DatasetError as exc:
        raise BundleError(str(exc)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{bundle / 'bundle.json'} is not a mipd-edge bundle manifest")
    if manifest.get("version") != VERSION:
        raise BundleError(f"{bundle}: bundle version {manifest.get('version')} is not {VERSION}; re-export it")
    validate_manifest(bundle, manifest)
    if verify:
        verify_files(bundle, manifest)
    return manifest


def verify_files(bundle: Path, manifest: Mapping[str, Any]) -> None:
    """Every recorded file is present and has its recorded hash."""
    for relative, digest in manifest["files"].items():
        path = bundle_file(bundle, relative, f"files.{relative}")
        if not path.is_file():
            raise BundleError(f"{bundle}: {relative} is missing (the bundle is incomplete)")
        if file_digest(path) != digest:
            raise BundleError(f"{bundle}: {relative} has changed since export (SHA-256 differs): "
                              "the bundle is damaged; copy or export it again")


def write_manifest(bundle: PathLike, manifest: Mapping[str, Any]) -> None:
    """``bundle.json`` with the SHA-256 of every file in the bundle (but device caches)."""
    bundle = Path(bundle)
    files = {p.relative_to(bundle).as_posix(): file_digest(p) for p in sorted(bundle.rglob("*"))
             if p.is_file() and p.name != "bundle.json" and p.relative_to(bundle).parts[0] not in UNRECORDED
             and not p.name.startswith(".")}
    manifest = {**{k: v for k, v in manifest.items() if k != "files"}, "format": FORMAT, "version": VERSION,
                "files": files}
    validate_manifest(bundle, json.loads(json.dumps(manifest)))  # as it will be read back (tuples are lists)
    write_json(bundle / "bundle.json", manifest)


def input_dims(manifest: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Per graph input, its shape after the batch dimension, as the manifest promises it."""
    size, roles, dim = manifest["preprocess"]["size"], manifest["max_roles"], manifest["text_dim"]
    return {"images": (3, size, size), "role_emb": (roles, dim), "verb_emb": (dim,), "role_mask": (roles,)}


def check_input_shapes(bundle: PathLike, manifest: Mapping[str, Any], graph: str,
                       shapes: Mapping[str, Sequence[Optional[int]]]) -> None:
    """A loaded graph's input shapes (None for a free dimension) agree with the manifest."""
    for name, dims in input_dims(manifest).items():
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
    task = model.get("task", "gsr")
    need(task in ("gsr", "hoi"), "model.task", "gsr or hoi")
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
    inputs, outputs = graph_io(task)
    need(m["inputs"] == inputs, "inputs", f"{inputs} for a {task} model")
    need(m["outputs"] == outputs, "outputs", f"{outputs} for a {task} model")
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
    need(task != "hoi" or "hoi_space" in m, "hoi_space", "present for an HOI model")
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


# the manifest's fields and their JSON types; OPTIONAL_FIELDS may be absent
MANIFEST_FIELDS: dict[str, type] = {
    "format": str, "version": int, "model": dict, "preprocess": dict, "precision": str, "graphs": dict,
    "inputs": dict, "outputs": dict, "dynamic_batch": bool, "scales": dict, "max_roles": int, "text_dim": int,
    "text_encoder": str, "text_encoder_spec": str, "weights": str, "vocabulary": str, "verification": dict,
    "provenance": dict, "files": dict, "quantization": dict, "metrics": dict, "hoi_space": dict,
    "text_encoder_onnx": dict}
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
