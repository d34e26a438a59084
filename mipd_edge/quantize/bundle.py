"""``mipd-edge quantize``: an FP32 bundle, then INT8 encoder graphs beside the FP32 ones.

The bundle keeps both precisions (``onnx`` / ``onnx-int8``, ``openvino`` /
``openvino-int8``) so a Predictor can run either, and records the verification of the
INT8 graphs against torch and the dev metrics of FP32 and INT8 side by side.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..config import ExportConfig, QuantizeConfig
from ..context import RunContext
from ..data.split import dataset_split, training_verbs
from ..deploy.bundle import BundleManifest, format_of, graph_files, graph_format, read_manifest, write_manifest
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
    training images. ``cfg.from_bundle``, an FP32 bundle already exported from the same
    weights with the same formats and batch mode, is copied instead of exported and verified
    a second time. ``cfg.evaluate=False`` skips the FP32 / INT8 dev metrics, for an untrained
    model timed for comparison only: its INT8 graphs are then outside any accuracy gate, so
    ``auto`` never picks them."""
    model_dir, data_dir, out = Path(model_dir), Path(data_dir), Path(out)
    check_output(out, run.overwrite, "bundle folder")
    if cfg.max_drop is not None and ("openvino" not in cfg.formats or cfg.method != "ptq"):
        raise MipdEdgeError("--max-drop (accuracy control) works on the OpenVINO graphs with --method ptq")
    with atomic_output(out) as tmp:  # complete and verified, or not there at all
        return write_int8_bundle(model_dir, data_dir, tmp, cfg, run.progress)


def write_int8_bundle(model_dir: Path, data_dir: Path, out: Path, cfg: QuantizeConfig,
                      progress: bool) -> BundleManifest:
    """``quantize_bundle``'s work, into a folder ``out`` that does not exist yet."""
    method, calib_size, qat_epochs, max_drop = cfg.method, cfg.calib_size, cfg.qat_epochs, cfg.max_drop
    formats, ort_static, dynamic_batch = cfg.formats, cfg.ort_static, cfg.dynamic_batch
    if cfg.from_bundle is None:
        manifest = write_bundle(model_dir, out, ExportConfig(formats, "fp32", dynamic_batch), data_dir)
    else:
        manifest = copy_fp32_bundle(Path(cfg.from_bundle), model_dir, out, formats, dynamic_batch)
    preprocess = Preprocess.from_json(manifest.preprocess)
    info = read_model_info(model_dir)
    zero_shot = info["data"].get("zero_shot")  # HOI: the classes calibration must not see
    task = manifest.task.name
    calibration = calibration_images(data_dir, task, preprocess, calib_size, progress=progress, zero_shot=zero_shot)
    # how much INT8 may lose against FP32 on dev (points of verb top-1 and grounded value) for
    # `auto` to run it: accuracy control's --max-drop, else DESIGN's 1 point
    gate = DEFAULT_MAX_DROP if max_drop is None else float(max_drop)
    report: dict[str, Any] = {"method": method, "calibration_images": len(calibration), "encoder": "int8",
                              "decoder": "fp32", "accuracy_gate": gate}
    onnx_int8, openvino_int8 = (out / graph_files(format_of(family, "int8"))["encoder"]
                                for family in ("onnx", "openvino"))
    if method == "ptq":
        from .ptq import quantize_onnx_nncf, quantize_onnx_ort, quantize_openvino

        if "openvino" in formats:
            target = openvino_int8
            if max_drop is None:
                quantize_openvino(out / manifest.graphs["openvino"]["encoder"], target, calibration)
            else:
                from .accuracy import quantize_openvino_with_accuracy_control

                report["accuracy_control"] = quantize_openvino_with_accuracy_control(
                    out, manifest, target, calibration, data_dir, max_drop, info)
        if "onnx" in formats:
            engine = quantize_onnx_ort if ort_static else quantize_onnx_nncf
            engine(out / manifest.graphs["onnx"]["encoder"], onnx_int8, calibration)
            report["onnx_engine"] = "onnxruntime static QDQ (u8/s8)" if ort_static else "nncf QDQ"
    else:
        from .qat import QatConfig, quantize_aware_training

        model, _ = load_student(model_dir)
        train_images = calibration_images(data_dir, task, preprocess, max(calib_size, 1000), seed=1,
                                          progress=progress, zero_shot=zero_shot)
        report["qat"] = quantize_aware_training(model, calibration, train_images, onnx_int8, QatConfig(qat_epochs),
                                                dynamic_batch=dynamic_batch, progress=progress)
        if "openvino" in formats:
            onnx_to_openvino(onnx_int8, openvino_int8, fp16=False)
        if "onnx" not in formats:
            onnx_int8.unlink()
    for family in formats:
        manifest.graphs[format_of(family, "int8")] = graph_files(format_of(family, "int8"))
    manifest.precision = "int8"
    manifest.quantization = report

    model, _ = load_student(model_dir)
    vocabulary = Vocabulary.load(out / manifest.vocabulary)
    reference = reference_outputs(model, verification_images(data_dir, task, preprocess), vocabulary)
    for backend in ("onnxruntime", "openvino"):
        fmt = graph_format(backend, "int8")
        if fmt in manifest.graphs:
            with load_runtime(backend, out, manifest, precision="int8") as runtime:
                manifest.verification[fmt] = agreement(runtime, reference, fmt)
    write_manifest(out, manifest)
    if cfg.evaluate:
        manifest.metrics = compare_precisions(out, manifest, data_dir, info, cfg.eval_split, progress)
        write_manifest(out, manifest)
    return manifest


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
    keys among them), and how many images gave them."""

    reported: dict[str, Any]
    gated: dict[str, Any]
    images: int
    per_image: Optional[dict[str, tuple[str, dict[str, float]]]] = None  # name -> (verb, top-1 scores)


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
    from ..evaluation import evaluate_hoi_predictor
    from .calibration import hoi_selection

    _, seen, dev = hoi_selection(predictor.manifest, data_dir, info)
    for verb in [v for v in predictor.vocabulary.verbs if v not in seen]:
        predictor.vocabulary.remove_verb(verb)
    metrics = evaluate_hoi_predictor(predictor, dev, image_dir(data_dir, "trainval"), progress=progress)
    return GateRun({k: metrics[k] for k in ("full", "mean_max_recall", "classes", "ap")}, {"full": metrics["full"]},
                   len(dev))


@dataclass(frozen=True)
class PrecisionGate:
    """How a task's FP32 and INT8 graphs are measured on what model selection may see (the
    accuracy gate ``auto`` reads)."""

    measure: Callable[..., GateRun]
    verbs: str  # what the gate sees, as recorded
    split: Optional[str] = None  # the split it is reported as (None: the one asked for)


PRECISION_GATES: dict[str, PrecisionGate] = {
    "gsr": PrecisionGate(situation_gate, "training (seen and rare) verbs, their images and vocabulary only"),
    "hoi": PrecisionGate(interaction_gate, "seen verbs, held-out training images (no unseen class)",
                         "dev (held-out training images)"),
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
            fp32, other = runs["fp32"].per_image, runs[precision].per_image
            interval = paired_interval({n: s for n, (_, s) in fp32.items()}, {n: s for n, (_, s) in other.items()},
                                       {n: v for n, (v, _) in fp32.items()}, keys)
            out["gate"].setdefault("ci95", {})[precision] = interval
        log.info("%s %s: %s - FP32 = %s", out["split"], backend, precision.upper(),
                 ", ".join(f"{v:+.2f} {k}" + (" [{:+.2f}, {:+.2f}]".format(*interval[k]) if interval else "")
                           for k, v in delta.items()))
    return out


__all__ = ["quantize_bundle"]
