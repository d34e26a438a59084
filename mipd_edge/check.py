"""``mipd-edge check BUNDLE``: everything a device verifies before a bundle answers, at once.

For people who copy bundles to devices: the manifest's schema, every path inside the
bundle, every file's SHA-256, then one inference on every backend x precision installed
here that the bundle holds. A failure anywhere is a ``BundleError``; the report says what
each step cost, so the price of verification at load is known.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Union

import numpy as np

from .deploy.bundle import PRECISIONS, read_manifest, verify_files
from .deploy.predictor import Predictor
from .deploy.runtimes.selection import GATED, accuracy_gate, candidates, gated_field, recorded_interval
from .errors import BundleError, MipdEdgeError
from .files import PathLike
from .situation import Interactions, Situation


def probe_image(size: int) -> np.ndarray:
    """A deterministic BGR test card: gray, a bright block and a gradient (any image would
    do; the check is that every graph runs and answers finite numbers)."""
    image = np.full((size, size * 4 // 3, 3), 114, np.uint8)
    image[size // 4: size * 3 // 4, size // 3: size * 2 // 3] = (40, 160, 220)
    image[:, :, 0] = np.linspace(0, 255, image.shape[1], dtype=np.uint8)[None]
    return image


def check_bundle(bundle: PathLike, device: str = "CPU") -> dict[str, Any]:
    """A report of the checks; raises ``BundleError`` naming the first thing that is wrong."""
    bundle = Path(bundle)
    start = time.perf_counter()
    manifest = read_manifest(bundle, verify=False)
    validated = time.perf_counter()
    verify_files(bundle, manifest)
    hashed = time.perf_counter()
    sizes = [(bundle / name).stat().st_size for name in manifest.files]
    report: dict[str, Any] = {
        "bundle": str(bundle), "files": len(sizes), "megabytes": round(sum(sizes) / 1e6, 2),
        "validate_ms": round((validated - start) * 1e3, 2), "hash_ms": round((hashed - validated) * 1e3, 2),
        "runs": []}
    pairs = [pair for precision in PRECISIONS for pair in candidates(bundle, manifest, device, "auto", precision)[0]]
    if not pairs:
        raise BundleError(f"{bundle}: no installed backend here can run this bundle on {device}")
    report["gates"] = gate_report(manifest)
    image = probe_image(manifest.image_size)
    failures = []
    for backend, precision in pairs:
        run = {"backend": backend, "precision": precision}
        try:
            t = time.perf_counter()
            with Predictor(bundle, backend=backend, precision=precision, device=device) as predictor:
                run["load_ms"] = round((time.perf_counter() - t) * 1e3, 1)
                result = predictor(image)
                run["inference_ms"] = round(predictor.timings["total_ms"], 2)
            run.update(answer(result))
        except MipdEdgeError as exc:
            run["error"] = str(exc)
            failures.append(f"{backend} {precision}: {exc}")
        report["runs"].append(run)
    if failures:
        raise BundleError(f"{bundle}: " + "; ".join(failures))
    return report


def gate_report(manifest) -> dict[str, Any]:
    """Per gated precision the bundle measured: its dev difference to FP32, the difference's 95%
    interval where recorded, and the gate's verdict (what ``auto`` will do with it)."""
    out = {}
    for precision in GATED:
        field, keys = gated_field(manifest, precision)
        delta = (manifest.metrics or {}).get(field)
        if not isinstance(delta, dict):
            continue
        interval = recorded_interval(manifest, precision)
        out[precision] = {"minus_fp32": {k: delta.get(k) for k in keys},
                          "ci95": {k: interval.get(k) for k in keys} if isinstance(interval, dict) else None,
                          "verdict": accuracy_gate(manifest, precision) or "inside the gate: auto may use it"}
    return out


def answer(result: Union[Situation, Interactions]) -> dict[str, Any]:
    """What a probe inference answered, with a BundleError if any score is not a number."""
    situations = result.situations
    scores = [c.score for s in situations for c in s.candidates] + \
        [r.score for s in situations for r in s.roles.values()]
    if not all(math.isfinite(v) for v in scores):
        raise BundleError(
            f"the model answers non-finite scores, e.g. {[v for v in scores if not math.isfinite(v)][:3]}"
        )
    return {"answer": str(result), "situations": len(situations)}


__all__ = ["check_bundle"]
