"""``backend="auto"`` and ``precision="auto"``: measure what the bundle offers here, keep the fastest.

A fixed order of preference guesses, and guessed wrong: on an AVX2-only CPU ONNX Runtime
ran a bundle's INT8 graphs 1.8x slower than its FP32 ones, and OpenVINO INT8 gained far
less than on a CPU with VNNI. So on the first load on a machine, every installed backend x
precision that the bundle holds is loaded and timed (a short warm-up, then a few hundred
milliseconds each in interleaved rounds, so a slow phase of a shared machine falls on all
of them alike), and the fastest is kept. INT8 takes part only where the accuracy recorded
in ``bundle.json`` is within the bundle's accuracy gate. The choice is cached, keyed by
the bundle's content, the device, the CPU and its instruction sets, the library versions
and the thread count, so the next load is instant and any change measures again.
Torch-free: the torch backend is imported only if it is a candidate.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ...errors import BundleError, MipdEdgeError
from ...files import atomic_write_bytes, default_cache_dir
from ...machine import bf16_capable, cpu_features, cpu_id, cpu_name, library_versions
from ..backends import BACKENDS, backends_for, installed, unsupported
from ..bundle import PRECISIONS, BundleManifest, bundle_digest, graph_format
from . import load_runtime, runtime_class
from .base import Runtime

log = logging.getLogger(__name__)

DEFAULT_MAX_DROP = 1.0  # points of dev top-1 verb and grounded value INT8 may lose (DESIGN section 7)
SECONDS = 0.3  # timed per candidate, after its warm-up
ROUNDS = 3
WARMUP = 3  # untimed iterations per candidate, and per round


# -- what a bundle offers ---------------------------------------------------------------------------

def offers(bundle: Path, manifest: BundleManifest, backend: str, precision: str) -> bool:
    """Whether the bundle holds what ``backend`` needs to run ``precision``."""
    fmt = graph_format(backend, precision, manifest.graphs)
    if fmt is None:
        return (Path(bundle) / manifest.weights).is_file()
    # an fp16 bundle's float graphs are fp16 (OpenVINO IR); an fp32 or int8 bundle's are fp32
    floats = "fp16" if manifest.precision == "fp16" else "fp32"
    wanted = "fp32" if precision == "bf16" else precision  # bf16 computes the FP32 graphs
    return fmt in manifest.graphs and (precision == "int8" or backend == "tensorrt" or floats == wanted)


def runs_here(backend: str, precision: str, device: str) -> Optional[str]:
    """Why ``backend`` cannot run ``precision`` on ``device`` on this machine, or None: the backend
    table's rule, then this CPU's (bf16 only where it is native, never emulated)."""
    reason = unsupported(backend, precision, device)
    if reason is None and precision == "bf16" and not bf16_capable():
        reason = "bf16 needs a CPU with AVX512_BF16 or AMX-BF16 (this one has neither)"
    return reason


def recorded_interval(manifest: BundleManifest, precision: str) -> Optional[Mapping[str, Any]]:
    """The 95% interval of ``precision`` - FP32 that quantization recorded, if any (unchecked)."""
    recorded = (manifest.metrics or {}).get("gate")
    intervals = recorded.get("ci95") if isinstance(recorded, Mapping) else None
    return intervals.get(precision) if isinstance(intervals, Mapping) else None


def _pair(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)
            and all(np.isfinite(value)) and value[0] <= value[1])


GATED = ("int8", "bf16")  # the precisions auto uses only within the bundle's accuracy gate


def gated_field(manifest: BundleManifest, precision: str) -> tuple[str, tuple[str, ...]]:
    """Where ``bundle.json``'s metrics record ``precision`` - FP32, and the keys the gate reads."""
    field_name, keys = manifest.task.gated_metrics  # situations: dev verb top-1 and grounded value; HOI: mAP
    return field_name.replace("int8", precision, 1), keys


def accuracy_gate(manifest: BundleManifest, precision: str = "int8") -> Optional[str]:
    """Why running ``precision`` (INT8 graphs, or the FP32 graphs in bf16) is outside the
    bundle's accuracy gate, or None if it is inside.

    The gate is what quantization recorded (accuracy control's ``--max-drop``, else DESIGN's
    1 point), checked against the dev metrics it recorded for FP32 and that precision. Where it
    recorded the difference's 95% bootstrap interval, the gate decides on the interval: the
    precision is left out only when even the interval's better end loses more than the gate,
    so a small dev set's noise alone never rejects it (and the interval says how sure it is)."""
    gate = (manifest.quantization or {}).get("accuracy_gate")
    gate = DEFAULT_MAX_DROP if not isinstance(gate, (int, float)) else float(gate)
    field_name, keys = gated_field(manifest, precision)
    delta = (manifest.metrics or {}).get(field_name)
    if not isinstance(delta, Mapping) or not all(isinstance(delta.get(k), (int, float)) for k in keys):
        return (f"its {precision} accuracy against FP32 is not recorded in bundle.json"
                + (" (mipd-edge quantize records it on a CPU with bf16)" if precision == "bf16" else ""))
    interval = recorded_interval(manifest, precision)
    if isinstance(interval, Mapping) and all(_pair(interval.get(k)) for k in keys):
        lost = {k: -float(interval[k][1]) for k in keys if -float(interval[k][1]) > gate}
        if lost:
            return "even the better end of its 95% interval loses " + ", ".join(
                f"{v:.2f} points of {k}" for k, v in lost.items()) + f" against FP32 (gate: {gate:g})"
        return None
    lost = {k: -float(delta[k]) for k in keys if -float(delta[k]) > gate}
    if lost:
        return "it loses " + ", ".join(f"{v:.2f} points of {k}" for k, v in lost.items()) + \
               f" against FP32 (gate: {gate:g})"
    return None


def candidates(bundle: Path, manifest: BundleManifest, device: str, backend: str = "auto",
               precision: str = "auto") -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The (backend, precision) pairs that could serve this bundle here, in the table's order
    (``deploy/backends.py``; all are measured, so the order breaks no ties), and why each other
    pair was left out."""
    backends = backends_for(device) if backend == "auto" else (backend,)
    precisions = PRECISIONS if precision == "auto" else (precision,)
    gates = {p: accuracy_gate(manifest, p) for p in GATED}
    chosen, left_out = [], {}
    for b in backends:
        for p in precisions:
            reason = runs_here(b, p, device)
            if reason is None and not offers(bundle, manifest, b, p):
                reason = "the bundle does not hold it"
            if reason is None and p in GATED and precision == "auto" and gates[p] is not None:
                reason = f"{p.upper()} left out: {gates[p]}"
            if reason is None:
                chosen.append((b, p))
            else:
                left_out[f"{b} {p}"] = reason
    return chosen, left_out


# -- measuring -------------------------------------------------------------------------------------

def time_runtimes(runtimes: Mapping[tuple[str, str], Runtime], seconds: float = SECONDS, rounds: int = ROUNDS,
                  warmup: int = WARMUP) -> dict[tuple[str, str], float]:
    """Median ms of one image through encoder + decoder (input normalisation included where the
    backend does it outside its graph), timed in ``rounds`` interleaved slices per runtime."""
    def one_call(runtime: Runtime, fitted: list[np.ndarray], decoder: dict) -> None:
        runtime.run("encoder", {"images": runtime.encoder_input(fitted)})
        runtime.run("decoder", decoder)

    work = {}
    for key, runtime in runtimes.items():
        fitted = [np.zeros((runtime.preprocess.size, runtime.preprocess.size, 3), np.uint8)]
        work[key] = (runtime, fitted, runtime.example_inputs(1)["decoder"])
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in runtimes}
    for _ in range(rounds):
        for key, args in work.items():
            for _ in range(warmup):
                one_call(*args)
            end = time.perf_counter() + seconds / rounds
            while True:
                t0 = time.perf_counter()
                one_call(*args)
                t1 = time.perf_counter()
                samples[key].append((t1 - t0) * 1e3)
                if t1 >= end:
                    break
    return {key: float(np.median(s)) for key, s in samples.items()}


@dataclass
class Selection:
    """What ``auto`` chose and why: the measured times, what was left out, whether it came
    from the cache. ``runtime`` is the loaded winner."""

    backend: str
    precision: str
    times_ms: dict[str, float] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    key: Optional[str] = None
    runtime: Optional[Runtime] = field(default=None, repr=False)

    @property
    def measured(self) -> bool:
        return bool(self.times_ms)

    def describe(self) -> str:
        how = ("the cached measurement" if self.cached else "measurement") if self.measured else "the only candidate"
        times = ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(self.times_ms.items(), key=lambda kv: kv[1]))
        return f"{self.backend} {self.precision} (by {how}{': ' + times if times else ''})"

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "times_ms": self.times_ms,
                "left_out": self.left_out, "cached": self.cached, "key": self.key}


def cache_key(bundle: Path, device: str, threads: Optional[int], pairs: list[tuple[str, str]],
              options: Mapping[str, Any]) -> str:
    """Everything a measured choice depends on: change any of it and ``auto`` measures again."""
    versions = library_versions()
    facts = {"bundle": bundle_digest(bundle), "device": device.upper(), "threads": threads, "cpu": cpu_name(),
             "cpu_id": cpu_id(), "cpu_features": cpu_features(), "candidates": [list(p) for p in pairs],
             "options": {k: repr(v) for k, v in sorted(options.items())},
             "versions": {k: versions.get(k) for k in ("mipd-edge", "onnxruntime", "onnxruntime-gpu", "openvino",
                                                       "torch", "tensorrt", "numpy")}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _accepted(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a backend's runtime takes (backend-specific ones, e.g. OpenVINO's ``hint``,
    reach only that backend when several are measured)."""
    params = inspect.signature(runtime_class(backend).__init__).parameters
    return {k: v for k, v in options.items() if k in params}


def _read_cache(path: Path, pairs: list[tuple[str, str]]) -> Optional[dict[str, Any]]:
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no cache, or a damaged one: measure again
    if not isinstance(cached, dict) or (cached.get("backend"), cached.get("precision")) not in pairs:
        return None
    return cached


def select_runtime(bundle: Path, manifest: BundleManifest, device: str = "CPU", backend: str = "auto",
                   precision: str = "auto", threads: Optional[int] = None,
                   options: Optional[Mapping[str, Any]] = None, use_cache: bool = True) -> Selection:
    """Load the runtime for ``backend`` x ``precision``, measuring where either is ``"auto"``
    (the choice cached under ``$MIPD_EDGE_CACHE/auto`` unless ``use_cache`` is off)."""
    options = dict(options or {})
    if backend != "auto" and backend not in BACKENDS:
        raise BundleError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    if precision != "auto" and precision not in PRECISIONS:
        raise BundleError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if backend != "auto" and precision != "auto":
        reason = runs_here(backend, precision, device) if installed(backend) else None
        if reason is not None:
            raise BundleError(f"{backend} cannot run {precision} on {device} here: {reason}")
        return Selection(backend, precision, runtime=load_runtime(backend, bundle, manifest, device, precision,
                                                                  threads, **options))
    pairs, left_out = candidates(bundle, manifest, device, backend, precision)
    if not pairs:
        if backend != "auto" and not installed(backend):
            load_runtime(backend, bundle, manifest, device, None, threads)  # raises, naming the extra to install
        raise BundleError(f"nothing installed here can run {bundle} on {device} with backend={backend}, "
                          f"precision={precision}: " + "; ".join(f"{k}: {v}" for k, v in left_out.items()))
    if len(pairs) == 1:
        (b, p), = pairs
        return Selection(b, p, left_out=left_out, runtime=load_runtime(b, bundle, manifest, device, p, threads,
                                                                       **_accepted(b, options)))
    key = cache_key(bundle, device, threads, pairs, options)
    path = default_cache_dir() / "auto" / f"{key}.json"
    cached = _read_cache(path, pairs) if use_cache else None
    if cached is not None:
        b, p = cached["backend"], cached["precision"]
        selection = Selection(b, p, cached.get("times_ms", {}), left_out, True, key,
                              load_runtime(b, bundle, manifest, device, p, threads, **_accepted(b, options)))
        log.info("auto: %s", selection.describe())
        return selection
    runtimes: dict[tuple[str, str], Runtime] = {}
    try:
        for b, p in pairs:
            try:
                runtimes[(b, p)] = load_runtime(b, bundle, manifest, device, p, threads, **_accepted(b, options))
            except MipdEdgeError as exc:  # one backend failing to load leaves the others to choose from
                left_out[f"{b} {p}"] = f"failed to load: {exc}"
                log.warning("auto: %s %s left out: %s", b, p, exc)
        if not runtimes:
            raise BundleError(f"no backend could load {bundle}: " + "; ".join(f"{k}: {v}" for k, v in left_out.items()))
        times = time_runtimes(runtimes, SECONDS)
    except BaseException:
        for runtime in runtimes.values():
            runtime.close()
        raise
    best = min(times, key=times.get)
    for pair, runtime in runtimes.items():
        if pair != best:
            runtime.close()
    selection = Selection(*best, {f"{b} {p}": round(t, 4) for (b, p), t in times.items()}, left_out, False, key,
                          runtimes[best])
    if use_cache:
        atomic_write_bytes(path, json.dumps(selection.to_json(), indent=1).encode())
    log.info("auto: %s", selection.describe())
    return selection
