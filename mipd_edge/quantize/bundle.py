"""``mipd-edge quantize``: an FP32 bundle, then INT8 encoder graphs beside the FP32 ones.

The bundle keeps both precisions (``onnx`` / ``onnx-int8``, ``openvino`` /
``openvino-int8``) so a Predictor can run either, and records the verification of the
INT8 graphs against torch and the dev metrics of FP32 and INT8 side by side.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..config import ExportConfig, QuantizeConfig
from ..context import RunContext
from ..data.split import dataset_split, training_verbs
from ..deploy.bundle import GRAPH_FORMATS, BundleManifest, graph_files, read_manifest, write_manifest
from ..deploy.predictor import Predictor
from ..deploy.preprocess import Preprocess
from ..deploy.runtimes import installed, load_runtime
from ..deploy.runtimes.selection import DEFAULT_MAX_DROP, gated_field
from ..errors import BundleError, MipdEdgeError
from ..evaluation import evaluate_predictor, score_predictor
from ..export import reference_outputs, verification_images, write_bundle
from ..export_formats import onnx_to_openvino
from ..files import WEIGHTS_FILE, PathLike, atomic_output, check_output
from ..machine import bf16_capable
from ..metrics import paired_interval
from ..models.store import load_student, read_model_info
from ..vocabulary import Vocabulary
from .calibration import calibration_images

log = logging.getLogger(__name__)

MIN_GLANCE_COSINE = 0.9  # below this the INT8 encoder no longer means the same thing


def copy_fp32_bundle(source: Path, model_dir: Path, out: Path, formats: Sequence[str],
                     dynamic_batch: bool) -> BundleManifest:
    manifest = read_manifest(source)
    missing = sorted(set(formats) - set(manifest.graphs))
    problems = [reason for failed, reason in (
        (manifest.precision != "fp32", "it is not FP32"),
        (bool(missing), f"it lacks the {missing} graphs"),
        (manifest.dynamic_batch != dynamic_batch, "its batch mode differs"),
        (not filecmp.cmp(source / manifest.weights, model_dir / WEIGHTS_FILE, shallow=False),
         f"its weights are not those of {model_dir}")) if failed]
    if problems:
        raise MipdEdgeError(f"cannot start the INT8 bundle from {source}: {'; '.join(problems)}")
    shutil.copytree(source, out, dirs_exist_ok=True)
    log.info("FP32 graphs copied from %s (exported and verified from the same weights)", source)
    return manifest


def quantize_bundle(model_dir: PathLike, data_dir: PathLike, out: PathLike, cfg: QuantizeConfig = QuantizeConfig(),
                    run: RunContext = RunContext()) -> BundleManifest:
    """The student's FP32 bundle plus INT8 encoder graphs, calibrated on ``data_dir``'s
    training images (or ``cfg.calib_dir``'s). The default recipe (``method="auto"``) is
    post-training quantization, and quantization-aware training where PTQ loses more than the
    accuracy gate on dev; ``bundle.json`` records which recipe made the graphs and why.
    ``cfg.from_bundle``, an FP32 bundle already exported from the same weights with the same
    formats and batch mode, is copied instead of exported and verified a second time.
    ``cfg.evaluate=False`` skips the FP32 / INT8 dev metrics, for an untrained model timed for
    comparison only: its INT8 graphs are then outside any accuracy gate, so ``auto`` never
    picks them."""
    model_dir, data_dir, out = Path(model_dir), Path(data_dir), Path(out)
    check_output(out, run.overwrite, "bundle folder")
    if cfg.max_drop is not None and ("openvino" not in cfg.formats or cfg.method == "qat"):
        raise MipdEdgeError("--max-drop (accuracy control) works on the OpenVINO graphs, with post-training "
                            "quantization (--method auto or ptq)")
    with atomic_output(out) as tmp:  # complete and verified, or not there at all
        return write_int8_bundle(model_dir, data_dir, tmp, cfg, run.progress)


@dataclass(frozen=True)
class Int8Job:
    """What every INT8 recipe works from: the student, its data, calibration, and the check against torch."""

    model_dir: Path
    data_dir: Path
    cfg: QuantizeConfig
    info: dict[str, Any]
    calibration: np.ndarray
    reference: dict
    progress: bool


def write_int8_bundle(model_dir: Path, data_dir: Path, out: Path, cfg: QuantizeConfig,
                      progress: bool) -> BundleManifest:
    """``quantize_bundle``'s work, into a folder ``out`` that does not exist yet."""
    if cfg.from_bundle is None:
        manifest = write_bundle(model_dir, out, ExportConfig(cfg.formats, "fp32", cfg.dynamic_batch), data_dir)
    else:
        manifest = copy_fp32_bundle(Path(cfg.from_bundle), model_dir, out, cfg.formats, cfg.dynamic_batch)
    preprocess = Preprocess.from_json(manifest.preprocess)
    info = read_model_info(model_dir)
    task = manifest.task.name
    calibration = calibration_images(data_dir, task, preprocess, cfg.calib_size, progress=progress,
                                     zero_shot=info["data"].get("zero_shot"), folder=cfg.calib_dir)
    model, _ = load_student(model_dir)
    vocabulary = Vocabulary.load(out / manifest.vocabulary)
    reference = reference_outputs(model, verification_images(data_dir, task, preprocess), vocabulary)
    job = Int8Job(model_dir, data_dir, cfg, info, calibration, reference, progress)
    if cfg.method != "auto" or cfg.max_drop is not None or not cfg.evaluate:
        method = "ptq" if cfg.method == "auto" else cfg.method
        manifest = make_int8(method, out, manifest, job)
        why = (f"asked for (--method {cfg.method})" if cfg.method != "auto" else
               "accuracy control asked for (--max-drop)" if cfg.max_drop is not None else
               "post-training quantization, not evaluated (no accuracy gate to try QAT against)")
        return record_recipe(out, manifest, method, why, {})
    return auto_recipe(out, manifest, job)


def auto_recipe(out: Path, manifest: BundleManifest, job: Int8Job) -> BundleManifest:
    """PTQ, kept where it loses at most the accuracy gate on dev (its point estimate); else QAT,
    made in a copy of the bundle, and whichever of the two loses less is kept. Measured on the
    quickstart's students, PTQ alone lost from 0.1 to 3.1 dev verb points between runs, and QAT
    brings HOI students' loss from up to 1.9 mAP to within 0.1."""
    gate = DEFAULT_MAX_DROP
    tried: dict[str, Any] = {}
    try:
        manifest = make_int8("ptq", out, manifest, job)
        tried["ptq"] = ptq_loss = int8_loss(manifest)
    except BundleError as exc:  # its graphs disagree with FP32: QAT is all that is left
        tried["ptq"] = ptq_loss = {"failed": str(exc)}
    worst_ptq = None if "failed" in ptq_loss else max(ptq_loss.values())
    if worst_ptq is not None and worst_ptq <= gate:
        return record_recipe(out, manifest, "ptq", f"PTQ: INT8 - FP32 on dev is {-worst_ptq:+.2f} points at worst, "
                             f"within the {gate:g}-point gate", tried)
    log.info("PTQ %s; trying quantization-aware training", f"loses {worst_ptq:.2f} points on dev (gate {gate:g})"
             if worst_ptq is not None else "failed its check against FP32")
    qat_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.qat-", dir=out.parent))
    try:
        shutil.copytree(out, qat_dir, dirs_exist_ok=True)
        try:
            qat = make_int8("qat", qat_dir, read_manifest(qat_dir), job)
        except BundleError as exc:
            if worst_ptq is None:
                raise
            tried["qat"] = {"failed": str(exc)}
            return record_recipe(out, manifest, "ptq", f"PTQ {-worst_ptq:+.2f} points on dev at worst, beyond "
                                 f"the {gate:g}-point gate; QAT failed its check against FP32: PTQ kept", tried)
        tried["qat"] = int8_loss(qat)
        worst_qat = max(tried["qat"].values())
        if worst_ptq is not None and worst_ptq <= worst_qat:
            why = (f"INT8 - FP32 on dev at worst: PTQ {-worst_ptq:+.2f} points, beyond the {gate:g}-point gate, "
                   f"QAT {-worst_qat:+.2f}: PTQ kept, the smaller loss")
            return record_recipe(out, manifest, "ptq", why, tried)
        shutil.rmtree(out)
        os.replace(qat_dir, out)
        before = (f"PTQ {-worst_ptq:+.2f} points, beyond the {gate:g}-point gate" if worst_ptq is not None
                  else "PTQ failed its check against FP32")
        return record_recipe(out, qat, "qat", f"INT8 - FP32 on dev at worst: {before}; QAT {-worst_qat:+.2f}", tried)
    finally:
        shutil.rmtree(qat_dir, ignore_errors=True)


def int8_loss(manifest: BundleManifest) -> dict[str, float]:
    """Points INT8 loses against FP32 on each gated dev metric (negative: it gains)."""
    field, keys = gated_field(manifest, "int8")
    return {k: round(-float(manifest.metrics[field][k]), 3) for k in keys}


def record_recipe(out: Path, manifest: BundleManifest, method: str, why: str, tried: dict[str, Any]) -> BundleManifest:
    manifest.quantization["recipe"] = {"method": method, "why": why, **({"tried": tried} if tried else {})}
    write_manifest(out, manifest)
    log.info("INT8 recipe: %s (%s)", method, why)
    return manifest


def make_int8(method: str, out: Path, manifest: BundleManifest, job: Int8Job) -> BundleManifest:
    """``method``'s INT8 encoder graphs in ``out`` (replacing any there), each checked against
    FP32 torch, then measured against FP32 on dev where the job evaluates."""
    cfg = job.cfg
    remove_int8(out, manifest)
    gate = DEFAULT_MAX_DROP if cfg.max_drop is None else float(cfg.max_drop)
    report: dict[str, Any] = {"method": method, "calibration_images": len(job.calibration),
                              "calibration_source": cfg.calib_dir or "the training split", "encoder": "int8",
                              "decoder": "fp32", "accuracy_gate": gate}
    manifest.quantization = report
    try:
        engines = report["engines"] = (post_training(out, manifest, job, report) if method == "ptq"
                                       else quantization_aware(out, manifest, job, report))
        manifest.precision = "int8"
        # one format at a time: each backend runs the one just added (ONNX Runtime prefers its own
        # layout), so each graph is the one checked
        for backend, fmt in (("openvino", "openvino-int8"), ("onnxruntime", "onnx-int8"),
                             ("onnxruntime", "onnxruntime-int8")):
            if fmt not in engines:
                continue
            manifest.graphs[fmt] = graph_files(fmt)
            with load_runtime(backend, out, manifest, precision="int8") as runtime:
                try:
                    manifest.verification[fmt] = agreement(runtime, job.reference, fmt)
                except BundleError as exc:
                    if fmt != "onnxruntime-int8":
                        raise
                    # ONNX Runtime's own layout is a faster copy of onnx-int8, which it runs instead
                    log.warning("ONNX Runtime's INT8 layout is left out (it runs onnx-int8): %s", exc)
                    (out / manifest.graphs.pop(fmt)["encoder"]).unlink()
                    engines.pop(fmt)
    except BaseException:
        remove_int8(out, manifest)  # no half-made graph stays behind for another recipe to find
        raise
    write_manifest(out, manifest)
    if cfg.evaluate:
        manifest.metrics = compare_precisions(out, manifest, job.data_dir, job.info, cfg.eval_split, job.progress)
        write_manifest(out, manifest)
    return manifest


def remove_int8(out: Path, manifest: BundleManifest) -> None:
    """Every INT8 encoder graph out of the bundle folder and its manifest (the FP32 decoder they
    share stays)."""
    for fmt in [f for f, g in GRAPH_FORMATS.items() if g.precision == "int8"]:
        manifest.graphs.pop(fmt, None)
        manifest.verification.pop(fmt, None)
        encoder = out / graph_files(fmt)["encoder"]
        for path in (encoder, encoder.with_suffix(".bin")):
            path.unlink(missing_ok=True)


def post_training(out: Path, manifest: BundleManifest, job: Int8Job, report: dict[str, Any]) -> dict[str, str]:
    """NNCF PTQ of the OpenVINO encoder (with accuracy control where ``max_drop`` asks) and of
    the ONNX encoder (Q/DQ, the graph TensorRT reads), and ONNX Runtime's own static layout,
    the faster one on its CPU kernels. Returns format -> what made it."""
    from .ptq import quantize_onnx_nncf, quantize_onnx_ort, quantize_openvino

    engines = {}
    if "openvino" in job.cfg.formats:
        target = out / graph_files("openvino-int8")["encoder"]
        if job.cfg.max_drop is None:
            quantize_openvino(out / manifest.graphs["openvino"]["encoder"], target, job.calibration)
            engines["openvino-int8"] = "nncf PTQ"
        else:
            from .accuracy import quantize_openvino_with_accuracy_control

            report["accuracy_control"] = quantize_openvino_with_accuracy_control(
                out, manifest, target, job.calibration, job.data_dir, job.cfg.max_drop, job.info)
            engines["openvino-int8"] = "nncf PTQ with accuracy control"
    if "onnx" in job.cfg.formats:
        source = out / manifest.graphs["onnx"]["encoder"]
        quantize_onnx_nncf(source, out / graph_files("onnx-int8")["encoder"], job.calibration)
        engines["onnx-int8"] = "nncf PTQ, Q/DQ"
        quantize_onnx_ort(source, out / graph_files("onnxruntime-int8")["encoder"], job.calibration)
        engines["onnxruntime-int8"] = "onnxruntime static Q/DQ (u8 activations, 7-bit s8 weights)"
    return engines


def quantization_aware(out: Path, manifest: BundleManifest, job: Int8Job, report: dict[str, Any]) -> dict[str, str]:
    """NNCF QAT of the encoder against its own FP32 outputs, exported as one Q/DQ ONNX graph
    (converted for OpenVINO; TensorRT reads it as it is), and ONNX Runtime's own layout of the
    QAT weights: its static quantizer over the QAT graph with the quantizers folded out
    (``grid.py``), since ONNX Runtime runs NNCF's layout slower than FP32. Returns format -> what
    made it."""
    from .grid import grid_float_graph
    from .ptq import quantize_onnx_ort
    from .qat import QatConfig, quantize_aware_training

    cfg = job.cfg
    model, _ = load_student(job.model_dir)
    train_images = calibration_images(job.data_dir, manifest.task.name, Preprocess.from_json(manifest.preprocess),
                                      max(cfg.calib_size, 1000), seed=1, progress=job.progress,
                                      zero_shot=job.info["data"].get("zero_shot"), folder=cfg.calib_dir)
    onnx_int8 = out / graph_files("onnx-int8")["encoder"]
    report["qat"] = quantize_aware_training(model, job.calibration, train_images, onnx_int8, QatConfig(cfg.qat_epochs),
                                            dynamic_batch=cfg.dynamic_batch, progress=job.progress)
    engines = {}
    if "openvino" in cfg.formats:
        onnx_to_openvino(onnx_int8, out / graph_files("openvino-int8")["encoder"], fp16=False)
        engines["openvino-int8"] = "nncf QAT, Q/DQ converted"
    if "onnx" in cfg.formats:
        engines["onnx-int8"] = "nncf QAT, Q/DQ"
        grid = onnx_int8.with_suffix(".grid.onnx")
        try:
            grid_float_graph(onnx_int8, grid)
            quantize_onnx_ort(grid, out / graph_files("onnxruntime-int8")["encoder"], job.calibration)
        finally:
            grid.unlink(missing_ok=True)
        engines["onnxruntime-int8"] = "onnxruntime static Q/DQ of the QAT weights (u8 activations, 7-bit s8 weights)"
    else:
        onnx_int8.unlink()
    return engines


def agreement(runtime, reference: dict, what: str) -> dict[str, Any]:
    """How close INT8 is to FP32 torch: output differences, glance cosine, top-1 agreement."""
    inputs, expected = reference["encoder"]
    got = [runtime.run("encoder", {"images": inputs["images"][i:i + 1]}) for i in range(len(inputs["images"]))]
    glance = np.concatenate([g["glance"] for g in got])
    memory = np.concatenate([g["memory"] for g in got])
    cos = (glance * expected["glance"]).sum(-1) / (
        np.linalg.norm(glance, axis=-1) * np.linalg.norm(expected["glance"], axis=-1)
    )
    result = {"glance_cosine_mean": float(cos.mean()), "glance_cosine_min": float(cos.min()),
              "memory_max_abs_diff": float(np.abs(memory - expected["memory"]).max()),
              "tolerance": {"glance_cosine_mean": MIN_GLANCE_COSINE}, "images": len(cos)}
    if result["glance_cosine_mean"] < MIN_GLANCE_COSINE:
        raise BundleError(f"{what}: the INT8 encoder disagrees with FP32 (mean glance cosine "
                          f"{result['glance_cosine_mean']:.3f} < {MIN_GLANCE_COSINE}); quantization failed")
    log.info("%s agrees with FP32 torch: mean glance cosine %.4f", what, result["glance_cosine_mean"])
    return result


def comparison_backend(graphs: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The backend the precisions are compared on: OpenVINO where the bundle has its INT8 graphs
    (each precision name sets its arithmetic there: ``runtimes/openvino.py``)."""
    if installed("openvino") and "openvino-int8" in graphs:
        return "openvino", {}
    return "onnxruntime", {}


@dataclass(frozen=True)
class GateRun:
    """One precision's measurement: the metrics reported, the gated ones (``BundleTask.gated_metrics``'
    keys among them), how many images gave them, and each image's part of them (what the
    difference's bootstrap interval resamples; its form is the task's own)."""

    reported: dict[str, Any]
    gated: dict[str, Any]
    images: int
    per_image: Any = None


def situation_gate(predictor: Predictor, data_dir: Path, info: dict[str, Any], split: str,
                   progress: bool) -> GateRun:
    """GSR metrics on the split; gated: top-1 on the training verbs' images against a
    vocabulary of training verbs only (model selection may see nothing of an unseen verb)."""
    splits = dataset_split(data_dir, required=False)
    if splits is None:  # no open-vocabulary split: every verb is a training verb, one pass serves both
        reported, per_image = score_predictor(predictor, data_dir, split, progress=progress)
        return GateRun(reported, reported["all"]["top1"], reported["all"]["images"], per_image)
    reported = evaluate_predictor(predictor, data_dir, split, splits=splits, progress=progress)
    for verb in splits["unseen"]:
        if verb in predictor.vocabulary.frames:
            predictor.vocabulary.remove_verb(verb)
    gate, per_image = score_predictor(predictor, data_dir, split, progress=progress, verbs=training_verbs(splits))
    return GateRun(reported, gate["all"]["top1"], gate["all"]["images"], per_image)


def interaction_gate(predictor: Predictor, data_dir: Path, info: dict[str, Any], split: str,
                     progress: bool) -> GateRun:
    """mAP on the images the HOI student was selected on (held-out training images, no unseen
    class), scored against the seen verbs; ``split`` is a situation dataset's notion."""
    from ..data.hico import image_dir
    from ..evaluation import hoi_detections
    from ..hoi_metrics import evaluate_hoi, image_matches
    from .calibration import hoi_selection

    _, seen, dev = hoi_selection(predictor.manifest, data_dir, info)
    for verb in [v for v in predictor.vocabulary.verbs if v not in seen]:
        predictor.vocabulary.remove_verb(verb)
    detections = hoi_detections(predictor, dev, image_dir(data_dir, "trainval"), progress=progress)
    metrics = evaluate_hoi(dev, detections, predictor.space)
    return GateRun({k: metrics[k] for k in ("full", "mean_max_recall", "classes", "ap")}, {"full": metrics["full"]},
                   len(dev), image_matches(dev, detections, predictor.space))


def situation_interval(fp32: GateRun, other: GateRun, keys: Sequence[str]) -> dict[str, list[float]]:
    """Paired bootstrap over the images, resampled within each verb (``metrics.paired_interval``)."""
    return paired_interval({n: s for n, (_, s) in fp32.per_image.items()},
                           {n: s for n, (_, s) in other.per_image.items()},
                           {n: v for n, (v, _) in fp32.per_image.items()}, keys)


def interaction_interval(fp32: GateRun, other: GateRun, keys: Sequence[str]) -> dict[str, list[float]]:
    """Paired bootstrap of the full mAP over the images (``hoi_metrics.paired_map_interval``)."""
    from ..hoi_metrics import paired_map_interval

    return {"full": paired_map_interval(fp32.per_image, other.per_image)}


@dataclass(frozen=True)
class PrecisionGate:
    """How a task's FP32 and INT8 graphs are measured on what model selection may see (the
    accuracy gate ``auto`` reads)."""

    measure: Callable[..., GateRun]
    interval: Callable[[GateRun, GateRun, Sequence[str]], dict[str, list[float]]]  # precision - FP32, 95%
    verbs: str  # what the gate sees, as recorded
    split: Optional[str] = None  # the split it is reported as (None: the one asked for)


PRECISION_GATES: dict[str, PrecisionGate] = {
    "gsr": PrecisionGate(situation_gate, situation_interval,
                         "training (seen and rare) verbs, their images and vocabulary only"),
    "hoi": PrecisionGate(interaction_gate, interaction_interval,
                         "seen verbs, held-out training images (no unseen class)", "dev (held-out training images)"),
}


def compare_precisions(bundle: Path, manifest: BundleManifest, data_dir: Path, info: dict[str, Any], split: str,
                       progress: bool) -> dict[str, Any]:
    """The FP32 and INT8 graphs measured through the same Predictor code, each task's way, and
    their difference on the metrics the task's accuracy gate holds (``BundleTask.gated_metrics``).
    On a CPU with bf16 units, the FP32 graphs computed in bf16 on OpenVINO are measured too, so
    that ``auto`` may use bf16 within the same gate."""
    gate = PRECISION_GATES[manifest.task.name]
    backend, options = comparison_backend(list(manifest.graphs))
    out: dict[str, Any] = {"split": gate.split or split, "backend": backend}
    precisions = ("fp32", "int8") + (("bf16",) if backend == "openvino" and bf16_capable() else ())
    runs = {}
    for precision in precisions:
        with Predictor(bundle, backend=backend, precision=precision, **options) as predictor:
            runs[precision] = gate.measure(predictor, data_dir, info, split, progress)
            out[precision] = runs[precision].reported
    out["gate"] = {"verbs": gate.verbs, "images": runs["fp32"].images, **{p: run.gated for p, run in runs.items()}}
    for precision in precisions[1:]:
        field, keys = gated_field(manifest, precision)
        out[field] = delta = {k: runs[precision].gated[k] - runs["fp32"].gated[k] for k in keys}
        interval = {}
        if runs["fp32"].per_image is not None:  # every image scored: the difference's 95% interval
            interval = gate.interval(runs["fp32"], runs[precision], keys)
            out["gate"].setdefault("ci95", {})[precision] = interval
        log.info("%s %s: %s - FP32 = %s", out["split"], backend, precision.upper(),
                 ", ".join(f"{v:+.2f} {k}" + (" [{:+.2f}, {:+.2f}]".format(*interval[k]) if interval else "")
                           for k, v in delta.items()))
    return out


__all__ = ["quantize_bundle"]
