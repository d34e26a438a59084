"""The deployable bundle (DESIGN section 2): its manifest, its names, and loading it back.

A bundle is a directory: ``bundle.json`` (what is in it and how to feed it),
``vocabulary.npz``, the encoder and decoder graphs per format, and
``weights.safetensors``. This module is torch-free: devices read bundles with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from .errors import BundleError, DatasetError
from .files import PathLike, read_json, write_json

FORMAT = "mipd-edge-bundle"
VERSION = 1
INPUTS = {"encoder": ["images"], "decoder": ["memory", "role_emb", "verb_emb", "role_mask"]}
OUTPUTS = {"encoder": ["memory", "glance"], "decoder": ["nouns", "boxes", "exists"]}
# HOI students: the decoder needs no vocabulary input and gives every interaction point (grid cell) at once
HOI_INPUTS = {"encoder": ["images"], "decoder": ["memory"]}
HOI_OUTPUTS = {"encoder": ["memory", "glance"],
               "decoder": ["human_boxes", "object_boxes", "objects", "verbs", "interaction"]}
GRAPH_FILES = {"onnx": "{graph}.onnx", "onnx-int8": "{graph}.int8.onnx", "openvino": "openvino/{graph}.xml",
               "openvino-int8": "openvino/{graph}.int8.xml"}


def task_of(manifest: Mapping[str, Any]) -> str:
    """``gsr`` (one situation per image) or ``hoi`` (a set of interactions)."""
    return manifest["model"].get("task", "gsr")


def graph_io(task: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Input and output names of both graphs for a task."""
    return (HOI_INPUTS, HOI_OUTPUTS) if task == "hoi" else (INPUTS, OUTPUTS)


def graph_path(bundle: PathLike, manifest: Mapping[str, Any], fmt: str, graph: str) -> Path:
    """Where a graph of a format lives, or a BundleError that says what the bundle has."""
    graphs = manifest.get("graphs", {})
    if fmt not in graphs:
        raise BundleError(f"{bundle}: no {fmt} graphs in this bundle (it has: {', '.join(sorted(graphs)) or 'none'}); "
                          f"re-export with --formats {fmt.split('-')[0]}")
    path = Path(bundle) / graphs[fmt][graph]
    if not path.is_file():
        raise BundleError(f"{bundle}: {graphs[fmt][graph]} is listed in bundle.json but missing")
    return path


def read_manifest(bundle: PathLike) -> dict[str, Any]:
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise BundleError(f"bundle not found: {bundle}")
    try:
        manifest = read_json(bundle / "bundle.json", "bundle manifest")
    except DatasetError as exc:
        raise BundleError(str(exc)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{bundle / 'bundle.json'} is not a mipd-edge bundle manifest")
    if manifest.get("version") != VERSION:
        raise BundleError(f"{bundle}: bundle version {manifest.get('version')} is not {VERSION}; re-export it")
    for key in ("model", "preprocess", "graphs", "scales", "text_dim", "max_roles"):
        if key not in manifest:
            raise BundleError(f"{bundle / 'bundle.json'}: missing '{key}'")
    return manifest


def write_manifest(bundle: PathLike, manifest: Mapping[str, Any]) -> None:
    write_json(Path(bundle) / "bundle.json", {"format": FORMAT, "version": VERSION, **manifest})


def file_digest(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundle_digest(bundle: PathLike) -> str:
    """One hash over every file of a bundle: what benchmarks record as 'the model'."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(bundle).rglob("*") if p.is_file()):
        h.update(path.relative_to(bundle).as_posix().encode())
        h.update(file_digest(path).encode())
    return h.hexdigest()
