"""``mipd-edge benchmark``: latency, throughput, memory and accuracy per backend x precision.

Every row runs in its own process, so its load time is what a user waits for, its peak
memory is its own, and a backend that crashes costs its row rather than the run. Raw
inference and the whole Predictor call are timed alternately on the same images, and the
rows of one batch size are timed in interleaved rounds, so neither the Predictor's
overhead nor a speed-up is skewed by a slow phase of a shared machine. Speed-ups are
against the PyTorch eager FP32 row of the same run: numbers from another machine or
another run are never mixed in. Nothing here imports torch unless a torch row runs.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing
import resource
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .benchmark_report import add_ratios, format_number, write_results
from .data.split import dataset_split
from .deploy.backends import BACKENDS, Backend, register_backend
from .deploy.bundle import PRECISIONS, BundleManifest, bundle_digest, graph_format, read_manifest
from .deploy.runtimes.selection import offers, runs_here
from .errors import MipdEdgeError
from .files import WEIGHTS_FILE, PathLike
from .machine import device_info, library_versions

log = logging.getLogger(__name__)

SETTLE_S = 0.25  # pause between two rows' timing slices: the last one's worker threads stop spinning
SLICE_WARMUP = 3  # untimed iterations at the start of each slice


@dataclass
class BenchmarkSettings:
    backends: tuple[str, ...] = field(default_factory=lambda: tuple(BACKENDS))  # every backend of the table
    precisions: tuple[str, ...] = PRECISIONS
    batches: tuple[int, ...] = (1, 8)
    device: str = "CPU"
    threads: Optional[int] = None
    data: Optional[str] = None  # a SWiG-format dataset for accuracy (and real images to time)
    split: str = "test"
    seconds: float = 3.0  # per timed series, after warm-up
    warmup: int = 10
    min_iterations: int = 30
    rounds: int = 6  # the timed series of the rows of one batch size, interleaved in this many slices
    accuracy_images: Optional[int] = None  # the first N images of the split; None: all
    settle_s: float = SETTLE_S  # pause before each row's timing slice


@dataclass
class Row:
    backend: str
    precision: str
    batch: int
    status: str = "ok"
    model: str = "student"
    variant: Optional[str] = None  # how the row's INT8 graphs were made, where the bundles hold several kinds
    bundle: Optional[str] = None
    load_s: Optional[float] = None
    latency_ms: Optional[dict] = None
    throughput_fps: Optional[float] = None
    predictor_ms: Optional[dict] = None
    size_mb: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    speedup_vs_torch_fp32: Optional[float] = None
    metrics: Optional[dict] = None
    notes: list[str] = field(default_factory=list)


# -- what a bundle offers ---------------------------------------------------------------------------

def int8_engine(manifest: BundleManifest, backend: str) -> Optional[str]:
    """What made the INT8 graphs a backend runs from a bundle (NNCF, or ONNX Runtime's static quantizer)."""
    engines = (manifest.quantization or {}).get("engines") or {}
    return engines.get(graph_format(backend, "int8", manifest.graphs))


def find_bundles(bundles: Sequence[Path], manifests: dict[Path, BundleManifest], backend: str, precision: str,
                 device: str) -> list[tuple[Optional[Path], str, Optional[str]]]:
    """(bundle, why not, variant) for ``backend`` x ``precision``: the first bundle that can run
    it, and for INT8 one more per other way its graphs were made (NNCF Q/DQ beside ONNX
    Runtime's static Q/DQ); or one entry with no bundle and the reason."""
    reason = runs_here(backend, precision, device)
    if reason is not None:
        return [(None, reason, None)]
    found: dict[Optional[str], Path] = {}
    for bundle in bundles:
        if offers(bundle, manifests[bundle], backend, precision):
            variant = int8_engine(manifests[bundle], backend) if precision == "int8" else None
            found.setdefault(variant, bundle)
    if found:
        several = len(found) > 1
        return [(bundle, "", variant if several else None) for variant, bundle in found.items()]
    fmt = graph_format(backend, precision)
    what = f"{fmt} graphs" if fmt else WEIGHTS_FILE
    hints = {"int8": "mipd-edge quantize", "fp16": "mipd-edge export --precision fp16"}
    hint = hints.get(precision, "mipd-edge export")
    return [(None, f"no bundle here has {what} for {precision} ({hint})", None)]


def size_on_disk_mb(bundle: Path, manifest: BundleManifest, backend: str, precision: str) -> float:
    fmt = graph_format(backend, precision, manifest.graphs)
    if fmt is None:
        files = [bundle / manifest.weights]
    else:
        files = []
        for graph in manifest.graphs[fmt].values():
            path = bundle / graph
            files += [path] + [p for p in (path.with_suffix(".bin"), Path(f"{path}.data")) if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


# -- one row, in its own process ----------------------------------------------------------------------

def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "n": int(a.size)}


def benchmark_images(settings: BenchmarkSettings, task: str, count: int) -> list[np.ndarray]:
    """Real images of the split of the bundle's task's dataset when there is one; otherwise
    fixed-seed noise images."""
    if settings.data:
        from .data.layouts import dataset_layout

        images = dataset_layout(task).images(settings.data, settings.split)
        return [images[i % len(images)]() for i in range(count)]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (192, 256, 3), dtype=np.uint8) for _ in range(count)]


def timed_pair(raw, whole, seconds: float, min_iterations: int, raw_ms: list[float], whole_ms: list[float]) -> None:
    """Alternate the two calls until both have ``min_iterations`` more samples and ``seconds``
    are up (``whole`` None: ``raw`` alone)."""
    end, target = time.perf_counter() + seconds, len(raw_ms) + min_iterations
    while len(raw_ms) < target or time.perf_counter() < end:
        t0 = time.perf_counter()
        raw()
        t1 = time.perf_counter()
        raw_ms.append((t1 - t0) * 1e3)
        if whole is not None:
            whole()
            whole_ms.append((time.perf_counter() - t1) * 1e3)


def async_throughput(runtime, inputs: dict[str, dict[str, np.ndarray]], batch: int, seconds: float) -> float:
    """Images per second through encoder + decoder on the backend's asynchronous path.

    The encoder's results come back on the backend's threads; the decoder is submitted
    from this thread, so no callback ever blocks inside a backend's queue.
    """
    finished, lock = [0], threading.Lock()
    encoded: list[dict[str, np.ndarray]] = []
    decoder_rest = {k: v for k, v in inputs["decoder"].items() if k != "memory"}

    def on_encoded(out: dict[str, np.ndarray]) -> None:
        with lock:
            encoded.append(out)

    def on_decoded(_out: dict[str, np.ndarray]) -> None:
        with lock:
            finished[0] += 1

    def submit_decoders() -> None:
        with lock:
            ready, encoded[:] = list(encoded), []
        for out in ready:
            runtime.run_async("decoder", {"memory": out["memory"], **decoder_rest}, on_decoded)

    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        runtime.run_async("encoder", inputs["encoder"], on_encoded)
        submit_decoders()
    runtime.wait()
    submit_decoders()
    runtime.wait()
    return finished[0] * batch / (time.perf_counter() - start)


class RowMeasurement:
    """One backend x precision x batch, loaded once in its own process: timed in rounds
    (``time``), then throughput, accuracy and peak memory (``finish``).

    A ``latency_only`` row (a comparison model with untrained weights, which may take
    seconds per image) times raw inference alone, with one warm-up call instead of
    ``settings.warmup`` and throughput from its latency."""

    def __init__(self, bundle: str, backend: str, precision: str, batch: int, settings: BenchmarkSettings,
                 with_accuracy: bool, latency_only: bool = False):
        from .deploy.predictor import Predictor
        logging.basicConfig(level=logging.WARNING)
        options: dict[str, Any] = {}
        if backend == "torch":  # fp32 is the eager baseline; fp16 (CUDA) takes the runtime's compiled fast path
            options["compiled"] = None if precision == "fp16" else False
        start = time.perf_counter()
        self.predictor = predictor = Predictor(bundle, backend=backend, device=settings.device, precision=precision,
                                               threads=settings.threads, **options)
        self.row = row = Row(backend, precision, batch, bundle=bundle, load_s=time.perf_counter() - start)
        self.settings, self.with_accuracy, self.latency_only = settings, with_accuracy, latency_only
        row.size_mb = size_on_disk_mb(Path(bundle), predictor.manifest, backend, precision)
        if not predictor.batch_free and batch > 1:
            row.notes.append("batch-1 encoder graph: the batch runs image by image (export --dynamic-batch)")
        if backend == "torch":
            row.notes.append("torch.compile + CUDA graphs" if predictor.runtime.compiled else "eager")
        if backend == "openvino":
            hint = predictor.runtime.graphs["encoder"].compiled.get_property("INFERENCE_PRECISION_HINT")
            row.notes.append(f"OpenVINO inference precision {hint.get_type_name()}")
        self.images = benchmark_images(settings, predictor.task, batch)
        self.x, _ = predictor.prepare(self.images)
        self.decoder_inputs = predictor.runtime.example_inputs(batch)["decoder"]
        self.graphs = predictor.graphs()
        self.raw_ms: list[float] = []
        self.whole_ms: list[float] = []
        self.warm(1 if latency_only else settings.warmup)

    def raw(self) -> None:
        """The two graphs the Predictor runs (with the vocabulary matching where the backend
        compiles it into them), as the backend runs them, on a prepared batch."""
        encoder, decoder = self.graphs
        memory = self.predictor.encode(self.x, encoder)["memory"]
        self.predictor.runtime.run(decoder, {**self.decoder_inputs, "memory": memory})

    def whole(self) -> None:
        self.predictor.predict(self.images)

    def warm(self, iterations: int) -> None:
        for _ in range(iterations):
            self.raw()
            if not self.latency_only:
                self.whole()

    def time(self, seconds: float, min_iterations: int) -> None:
        """One slice of the timed series; its first iterations (caches and clocks still on
        the row before) are not timed."""
        self.warm(1 if self.latency_only else SLICE_WARMUP)
        timed_pair(self.raw, None if self.latency_only else self.whole, seconds, min_iterations, self.raw_ms,
                   self.whole_ms)

    def finish(self) -> dict[str, Any]:
        row, predictor, settings, batch = self.row, self.predictor, self.settings, self.row.batch
        row.latency_ms = percentiles(self.raw_ms)
        row.predictor_ms = percentiles(self.whole_ms) if self.whole_ms else None
        inputs = {"encoder": {"images": self.x}, "decoder": self.decoder_inputs}
        if (predictor.batch_free or batch == 1) and not self.latency_only:
            row.throughput_fps = async_throughput(predictor.runtime, inputs, batch, settings.seconds)
        else:
            row.throughput_fps = batch * 1e3 / row.latency_ms["mean"]
            row.notes.append("throughput from sequential latency" + (
                "" if self.latency_only else " (a batch-1 graph cannot take the batch at once)"))
        if self.with_accuracy and settings.data:
            row.metrics = ACCURACY[predictor.task](predictor, settings)
        predictor.close()
        row.peak_mem_mb = peak_memory_mb()
        return asdict(row)


def situation_accuracy(predictor, settings: BenchmarkSettings) -> dict[str, Any]:
    """GSR metrics of a situation bundle on the settings' split (its first ``accuracy_images``)."""
    from .evaluation import evaluate_predictor

    return evaluate_predictor(predictor, settings.data, settings.split,
                              splits=dataset_split(settings.data, required=False), limit=settings.accuracy_images)


def hoi_accuracy(predictor, settings: BenchmarkSettings) -> dict[str, Any]:
    """HICO-DET mAP of an HOI bundle on the dataset's test images (the first ``accuracy_images``),
    with the zero-shot split its student was trained for."""
    from .data.hico import find_space, image_dir, rare_classes, read_hoi_annotations
    from .evaluation import evaluate_hoi_predictor

    data = Path(settings.data)
    space = find_space(data)
    test = read_hoi_annotations(data / "test_hico.json", space)[:settings.accuracy_images]
    train = read_hoi_annotations(data / "trainval_hico.json", space) if space.rare is None else None
    metrics = evaluate_hoi_predictor(predictor, test, image_dir(data, "test"), rare=rare_classes(space, train),
                                     zero_shot=predictor.manifest.provenance.get("zero_shot"))
    metrics.pop("per_class")
    return metrics


ACCURACY = {"gsr": situation_accuracy, "hoi": hoi_accuracy}  # per task: what a row's accuracy is


def with_backends(backends: Sequence[Backend]) -> None:
    """In a row's process (started afresh): the parent's backend table, backends registered
    at run time included."""
    for backend in backends:
        register_backend(backend)


def row_worker(conn, backends: Sequence[Backend], *args: Any) -> None:
    """A row's process: load, then answer ``time`` requests until ``finish``."""
    try:
        with_backends(backends)
        measurement = RowMeasurement(*args)
        conn.send(("ready", None))
        while True:
            command, arg = conn.recv()
            if command == "time":
                measurement.time(*arg)
                conn.send(("timed", None))
            else:
                conn.send(("done", measurement.finish()))
                return
    except Exception as exc:  # any failure of one backend is that row's result, not the run's
        conn.send(("error", f"failed: {type(exc).__name__}: {exc}"))


class RowProcess:
    """The coordinator's handle on a row's process; a crash or an error becomes the row's status."""

    def __init__(self, bundle: str, backend: str, precision: str, batch: int, settings: BenchmarkSettings,
                 with_accuracy: bool, latency_only: bool = False):
        self.key, self.bundle, self.result = (backend, precision, batch), bundle, None
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=row_worker, daemon=True, args=(
            child, tuple(BACKENDS.values()), bundle, backend, precision, batch, settings, with_accuracy, latency_only))
        self.process.start()
        child.close()
        self.ask(None, "ready")

    @property
    def alive(self) -> bool:
        return self.result is None

    def ask(self, command: Optional[tuple], expect: str) -> Any:
        """Send a command (None: only wait) and return the answer, or end the row with the reason it failed."""
        try:
            if command is not None:
                self.conn.send(command)
            answer, value = self.conn.recv()
        except (EOFError, OSError):
            answer, value = "error", "crashed (the backend killed its process)"
        if answer == "error":
            log.warning("%s %s batch %d %s", *self.key, value)
            self.result = asdict(Row(*self.key, status=value, bundle=self.bundle))
            self.process.join(5)
        return value if answer == expect else None

    def finish(self) -> dict[str, Any]:
        if self.alive:
            self.result = self.ask(("finish", None), "done") or self.result
        self.process.join(30)
        return self.result


def measure_rows(jobs: Sequence[tuple[str, str, str, int, bool, bool]],
                 settings: BenchmarkSettings) -> list[dict[str, Any]]:
    """Rows (bundle, backend, precision, batch, with accuracy, latency only) of one batch size,
    each in its own process, loaded one after another, then timed in interleaved rounds
    (every row a slice of ``settings.seconds`` per round), so a slow phase of a shared
    machine falls on every row alike and their ratios hold; throughput, accuracy and memory
    follow one row at a time. A latency-only row needs one call per slice, not
    ``min_iterations``: a model that takes seconds per call would hold up the run."""
    rows = []
    for bundle, backend, precision, batch, with_accuracy, latency_only in jobs:
        log.info("benchmark: loading %s %s batch %d (%s)", backend, precision, batch, bundle)
        rows.append((RowProcess(bundle, backend, precision, batch, settings, with_accuracy, latency_only),
                     latency_only))
    rounds = max(1, settings.rounds)
    for _ in range(rounds):
        for row, latency_only in rows:
            if row.alive:
                time.sleep(settings.settle_s)
                least = 1 if latency_only else -(-settings.min_iterations // rounds)
                row.ask(("time", (settings.seconds / rounds, least)), "timed")
    results = []
    for row, _ in rows:
        results.append(row.finish())
        _log_row(results[-1])
    return results


def peak_memory_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` starts afresh with the process image;
    ``ru_maxrss`` (the fallback off Linux) keeps the parent's peak across fork and exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the run ----------------------------------------------------------------------------------------

def run_benchmark(bundles: Sequence[PathLike], settings: BenchmarkSettings, out_dir: Optional[PathLike] = None,
                  references: Sequence[PathLike] = ()) -> dict[str, Any]:
    """Every backend x precision x batch of ``settings`` that the bundles and this machine allow.

    ``references`` are bundles of models to compare the edge student with (the ``reference``
    size a user would otherwise run, the authors' student): each gets a row per backend x
    precision it holds, labelled with its model name. An untrained one is timed only (each of
    its timing slices may hold a single call, since such a model can take seconds per image).
    """
    paths = [Path(b) for b in bundles]
    if not paths:
        raise MipdEdgeError("benchmark needs at least one bundle")
    manifests = {p: read_manifest(p) for p in paths}
    unknown = set(settings.backends) - set(BACKENDS)
    if unknown:
        raise MipdEdgeError(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    unknown = set(settings.precisions) - set(PRECISIONS)
    if unknown:
        raise MipdEdgeError(f"unknown precisions {sorted(unknown)}; choose from {', '.join(PRECISIONS)}")
    if not settings.batches or any(not isinstance(b, int) or b < 1 for b in settings.batches):
        raise MipdEdgeError(f"batch sizes must be positive integers, got {list(settings.batches)}")
    plan = [(b, p) for b in BACKENDS if b in settings.backends for p in PRECISIONS if p in settings.precisions]
    if ("torch", "fp32") not in plan:  # the row every ratio is against
        plan.insert(0, ("torch", "fp32"))
    found = [(b, p, *entry) for b, p in plan for entry in find_bundles(paths, manifests, b, p, settings.device)]
    compared = []  # (model name, bundle, backend, precision, untrained)
    for ref in map(Path, references):
        manifest = read_manifest(ref)
        untrained = manifest.provenance.get("method") == "untrained"
        name = manifest.model.get("name", ref.name)
        compared += [(name, ref, b, p, untrained) for b, p in plan
                     if runs_here(b, p, settings.device) is None and offers(ref, manifest, b, p)]
    rows: list[dict[str, Any]] = []
    for i, batch in enumerate(settings.batches):  # the rows that ratios compare are timed together
        jobs = [(str(bundle), b, p, batch, i == 0, False) for b, p, bundle, _, _ in found if bundle is not None]
        jobs += [(str(ref), b, p, batch, i == 0 and not untrained, untrained) for _, ref, b, p, untrained in compared]
        measured = iter(measure_rows(jobs, settings))
        for b, p, bundle, reason, variant in found:
            row = next(measured) if bundle is not None else asdict(Row(b, p, batch, status=reason))
            row["variant"] = variant
            rows.append(row)
        for name, _, _, _, untrained in compared:
            row = next(measured)
            row["model"] = name
            if untrained:
                row["notes"].append(f"untrained weights of the {name} architecture: latency only")
            rows.append(row)
    models = ["student"] + list(dict.fromkeys(name for name, *_ in compared))
    rows.sort(key=lambda r: (models.index(r["model"]), list(BACKENDS).index(r["backend"]),
                             PRECISIONS.index(r["precision"]), r.get("variant") or "", r["batch"]))
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "device": device_info(), "versions": library_versions(),
               "bundle": {"paths": [str(p) for p in paths], "sha256": {str(p): bundle_digest(p) for p in paths},
                          "graphs": {str(p): sorted(manifests[p].graphs) for p in paths},
                          "model": manifests[paths[0]].model.get("name"),
                          "image_size": manifests[paths[0]].image_size,
                          "references": {name: str(ref) for name, ref, *_ in compared}},
               "settings": asdict(settings), "rows": rows}
    results["auto"] = auto_choices(paths, settings)
    add_ratios(results)
    if out_dir is not None:
        write_results(results, Path(out_dir))
    return results


def _auto_choice(backends: Sequence[Backend], bundle: str, device: str, threads: Optional[int]) -> dict[str, Any]:
    from .deploy.runtimes.selection import select_runtime

    with_backends(backends)
    selection = select_runtime(Path(bundle), read_manifest(bundle), device, threads=threads,
                               options={"canvas_input": True}, use_cache=False)
    selection.runtime.close()
    return selection.to_json()


def auto_choices(bundles: Sequence[Path], settings: BenchmarkSettings) -> dict[str, Any]:
    """What ``Predictor(bundle)`` (backend and precision auto) picks here for each bundle,
    measured afresh in a process of its own."""
    choices: dict[str, Any] = {}
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        for bundle in bundles:
            try:
                choices[str(bundle)] = pool.apply(_auto_choice, (tuple(BACKENDS.values()), str(bundle), settings.device,
                                                                settings.threads))
            except Exception as exc:  # reported, like a row that fails
                choices[str(bundle)] = {"error": f"{type(exc).__name__}: {exc}"}
    return choices


def _log_row(row: dict[str, Any]) -> None:
    if row["status"] == "ok":
        log.info("  %s %s batch %d: p50 %.2f ms, Predictor p50 %s ms, %.1f images/s", row["backend"], row["precision"],
                 row["batch"], row["latency_ms"]["p50"], format_number((row["predictor_ms"] or {}).get("p50"), 2),
                 row["throughput_fps"])


__all__ = ["BenchmarkSettings", "run_benchmark"]
