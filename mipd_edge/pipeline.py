"""The end-to-end pipeline on SynthSitu, as resumable stages: data, teacher, rationales,
students, evaluation, bundles, benchmark. ``mipd-edge quickstart`` runs it, and so do the
ablations in ``benchmarks/``.

Each stage writes into the work directory and records the parameters it ran with; a
rerun with the same parameters reuses the stage, so an interrupted run resumes where it
stopped and a changed setting redoes only what depends on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .config import QuantizeConfig, RationaleConfig
from .context import RunContext
from .files import read_json, write_json

if TYPE_CHECKING:
    from .deploy.bundle import BundleManifest

log = logging.getLogger(__name__)

# the teacher's own SynthSitu sample has the students' generator seed plus this: same world,
# other images (a foundation model never saw the benchmark's)
TEACHER_SEED_OFFSET = 1000
# and unlabeled footage of the same world this (a generator stream of its own besides)
FOOTAGE_SEED_OFFSET = 2000


@dataclass(frozen=True)
class PipelineConfig:
    seed: int = 0
    train: int = 2400
    dev: int = 480
    test: int = 960
    image_size: int = 192  # SynthSitu images (long side)
    input_size: int = 128  # network input
    teacher_epochs: int = 8
    student_epochs: int = 12
    methods: tuple[str, ...] = ("none", "mipd")
    student: str = "edge-s"
    model: dict = field(default_factory=dict)  # architecture overrides, for teacher and students alike
    extra: dict = field(default_factory=dict)  # more TrainConfig overrides for the students
    calib_size: int = 300
    cpu_autocast: str = "auto"  # training arithmetic on CPUs, teacher and students (TrainConfig.cpu_autocast)
    benchmark_batches: tuple[int, ...] = (1, 8)
    benchmark_seconds: float = 2.0
    benchmark_settle_s: Optional[float] = None  # the pause before each timing slice; None: the benchmark's own


PRESETS = {
    # `mipd-edge quickstart`: the whole SDK (its time is in the documentation's results)
    "default": PipelineConfig(teacher_epochs=5, student_epochs=8, methods=("none", "kd", "mipd")),
    # `mipd-edge quickstart --fast`: a first look, a few times faster; its students learn little
    "fast": PipelineConfig(train=360, dev=96, test=144, teacher_epochs=2, student_epochs=3, calib_size=32,
                           benchmark_batches=(1,), benchmark_seconds=0.5),
    # the tiny run tests use: quarter-width networks at 64 px, to check the plumbing, not the method
    "quick": PipelineConfig(train=160, dev=48, test=48, image_size=96, input_size=64, teacher_epochs=2,
                            student_epochs=2, calib_size=32, benchmark_batches=(1,), benchmark_seconds=0.1,
                            benchmark_settle_s=0.02,
                            model={"width": 0.25, "d_model": 64, "heads": 2, "enc_layers": 1, "dec_layers": 1,
                                   "ffn": 128}),
}


def teacher_name(seed: Optional[int] = None) -> str:
    return "teacher" if seed is None else f"teacher-seed{seed}"


def rationales_file(workdir: Path, judgment: str = "teacher") -> tuple[str, Path]:
    """The stage name and file, in work folder ``workdir``, of the rationales whose negatives ``judgment`` chose."""
    name = "rationales" if judgment == "teacher" else f"rationales-{judgment}"
    return name, workdir / f"{name}.jsonl"


def student_name(method: str, variant: str = "full", seed: Optional[int] = None) -> str:
    return f"student-{method if variant == 'full' else variant}" + ("" if seed is None else f"-seed{seed}")


def comparable(params: Any) -> Any:
    """Stage parameters as compared: a training config (any ``train`` mapping) by what it
    sets apart from the defaults, so that a new option, which arrives at its default, does
    not redo stages that finished before it existed."""
    if isinstance(params, list):
        return [comparable(v) for v in params]
    if not isinstance(params, dict):
        return params
    return {k: config_overrides(v) if k == "train" and isinstance(v, dict) else comparable(v)
            for k, v in params.items()}


def config_overrides(train: dict) -> dict:
    from .train.config import TrainConfig

    defaults = TrainConfig().to_json()
    out = {}
    for key, value in train.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict) and key != "model":
            value = {k: v for k, v in value.items() if k not in default or v != default[k]}
            if value:
                out[key] = value
        elif key not in defaults or value != default:
            out[key] = value
    return out


def stage(workdir: Path, name: str, params: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` unless a previous run with the same ``params`` finished it."""
    marker = workdir / ".stages" / f"{name}.json"
    if marker.is_file():
        done = read_json(marker)
        if comparable(done.get("params")) == comparable(params):
            log.info("stage %s: reusing the finished run in %s", name, workdir)
            return done.get("result")
    log.info("stage %s: running", name)
    result = fn()
    write_json(marker, {"params": params, "result": result})
    (workdir / ".stages" / f"{name}.running.json").unlink(missing_ok=True)
    return result


def training_mode(workdir: Path, name: str, params: Any, out: Path, progress: bool = True) -> RunContext:
    """How a training stage starts: from its last checkpoint where an interrupted run with the
    same parameters left one, else afresh over whatever an earlier run left in the pipeline's
    own folder."""
    running = workdir / ".stages" / f"{name}.running.json"
    same = running.is_file() and comparable(read_json(running).get("params")) == comparable(params)
    write_json(running, {"params": params})
    resume = same and (out / "checkpoints" / "last.safetensors").is_file()
    if resume:
        log.info("stage %s: resuming from %s", name, out / "checkpoints")
    return RunContext(progress=progress, resume=resume, overwrite=not resume)


class Pipeline:
    def __init__(self, workdir: Path, cfg: PipelineConfig, progress: bool = True):
        self.workdir, self.cfg, self.progress = Path(workdir), cfg, progress
        self.data = self.workdir / "data"
        self.teacher = self.workdir / "teacher"
        self.teacher_data = self.workdir / "teacher-data"
        self.rationales = self.rationales_file()[1]

    def data_params(self) -> dict:
        c = self.cfg
        return {"seed": c.seed, "train": c.train, "dev": c.dev, "test": c.test, "image_size": c.image_size}

    def make_data(self) -> dict:
        from .data.synthsitu import SynthConfig, generate

        return stage(self.workdir, "data", self.data_params(),
                     lambda: generate(self.data, SynthConfig(**self.data_params()), self.progress))

    def train_config(self, method: str, epochs: int, student: bool = True):
        from .train.config import TrainConfig

        base = TrainConfig(method=method, epochs=epochs, image_size=self.cfg.input_size, seed=self.cfg.seed,
                           student=self.cfg.student, model=self.cfg.model, cpu_autocast=self.cfg.cpu_autocast)
        return replace(base, **self.cfg.extra) if student else base

    def teacher_data_params(self) -> dict:
        return {**self.data_params(), "seed": self.cfg.seed + TEACHER_SEED_OFFSET, "test": 0}

    def make_teacher(self, seed: Optional[int] = None) -> Path:
        """The teacher, trained on its own SynthSitu sample (``teacher-data``): the same world
        as the students' data, none of its images. Students distil from ``teacher``; another
        training ``seed`` (``teacher-seedN``) only measures how much the teacher itself varies."""
        from .data.synthsitu import SynthConfig, generate
        from .train.teacher_train import train_teacher

        stage(self.workdir, "teacher-data", self.teacher_data_params(),
              lambda: generate(self.teacher_data, SynthConfig(**self.teacher_data_params()), self.progress))
        cfg = self.train_config("none", self.cfg.teacher_epochs, student=False)
        if seed is not None:
            cfg = replace(cfg, seed=seed)
        name = teacher_name(seed)
        out = self.workdir / name
        params = {"data": self.teacher_data_params(), "train": cfg.to_json()}
        stage(self.workdir, name, params, lambda: training_summary(
            train_teacher(self.teacher_data, out, cfg, training_mode(self.workdir, name, params, out, self.progress))))
        return out

    def rationales_file(self, judgment: str = "teacher") -> tuple[str, Path]:
        return rationales_file(self.workdir, judgment)

    def make_rationales(self, judgment: str = "teacher") -> dict:
        from .train.rationales import generate_rationales

        name, path = self.rationales_file(judgment)
        params = {"data": self.data_params(), "teacher": self.stage_params("teacher"),
                  **({} if judgment == "teacher" else {"judgment": judgment})}

        def run() -> dict:
            path.unlink(missing_ok=True)  # the teacher changed: judge everything again
            return generate_rationales(self.data, self.teacher, path, RationaleConfig(judgment=judgment),
                                       run=RunContext(progress=self.progress))
        return stage(self.workdir, name, params, run)

    def footage_params(self, images: int) -> dict:
        c = self.cfg
        return {"seed": c.seed + FOOTAGE_SEED_OFFSET, "images": images, "image_size": c.image_size}

    def make_footage(self, images: int) -> Path:
        """``images`` unlabeled images of the same world (``footage-N``); a pool is the first
        ``images`` of any larger one."""
        from .data.synthsitu.generate import FootageConfig, generate_footage

        out = self.workdir / f"footage-{images}"
        params = self.footage_params(images)
        stage(self.workdir, out.name, params, lambda: generate_footage(out, FootageConfig(**params), self.progress))
        return out

    def make_student(self, method: str, seed: Optional[int] = None, overrides: Optional[dict[str, Any]] = None,
                     name: Optional[str] = None, unlabeled: int = 0) -> Path:
        """A student of ``method`` in ``student-METHOD`` (``name`` if given), at another training
        ``seed`` if given, with ``overrides`` of its training config (which may name another
        method); the same data and teacher either way. ``unlabeled``: it also learns from the
        teacher on that many unlabeled images (``make_footage``)."""
        from .methods import method_info
        from .train.distill import distill
        from .train.task import TrainingInputs

        cfg = replace(self.train_config(method, self.cfg.student_epochs), **(overrides or {}))
        if seed is not None:
            cfg = replace(cfg, seed=seed)
        name = name or student_name(method, seed=seed)
        out = self.workdir / name
        rationales_stage, rationales = self.rationales_file(cfg.mipd.judgment)
        needs = method_info(cfg.method)
        teacher = needs.teacher or unlabeled > 0
        if needs.rationales:
            self.make_rationales(cfg.mipd.judgment)
        footage = self.make_footage(unlabeled) if unlabeled else None
        params = {"data": self.data_params(), "train": cfg.to_json(),
                  "teacher": self.stage_params("teacher") if teacher else None,
                  "rationales": self.stage_params(rationales_stage) if needs.rationales else None,
                  **({"unlabeled": self.footage_params(unlabeled)} if unlabeled else {})}
        inputs = TrainingInputs(self.teacher if teacher else None, rationales if needs.rationales else None,
                                unlabeled=footage)
        stage(self.workdir, name, params, lambda: training_summary(
            distill(self.data, out, cfg, inputs, training_mode(self.workdir, name, params, out, self.progress))))
        return out

    def evaluated(self, name: str) -> bool:
        """Whether the model ``name`` has a finished test evaluation here."""
        return (self.workdir / ".stages" / f"eval-{name}.json").is_file()

    def evaluate_model(self, model_dir: Path, name: str) -> dict:
        """Test-split metrics of a trained model (student or teacher), with the Ov splits."""
        def run() -> dict:
            from .data.split import dataset_split
            from .data.swig import SituDataset
            from .metrics import evaluate
            from .models.inference import predict_with_model

            preds = predict_with_model(model_dir, self.data, "test", self.progress)
            test = SituDataset(self.data, "test")
            write_json(model_dir / "test-predictions.json", preds, indent=None)
            metrics = evaluate(test.annotations, test.space, preds, dataset_split(self.data))
            write_json(model_dir / "test-metrics.json", metrics)
            return metrics
        return stage(self.workdir, f"eval-{name}", {"model": self.stage_params(name)}, run)

    def make_bundles(self, method: str = "mipd") -> tuple[Path, Path]:
        """The student as an FP32 bundle and as an INT8 one by the default recipe (``mipd-edge
        quantize``: NNCF PTQ, QAT where PTQ loses more than the gate; ONNX Runtime's own INT8
        layout beside NNCF's Q/DQ graph)."""
        from .export import export_bundle
        from .quantize import quantize_bundle

        source = self.workdir / f"student-{method}"
        fp32, int8 = self.workdir / "bundle-fp32", self.workdir / "bundle-int8"
        params = {"student": self.stage_params(f"student-{method}")}
        stage(self.workdir, "bundle-fp32", params,
              lambda: manifest_summary(export_bundle(source, fp32, run=RunContext(overwrite=True), data=self.data)))
        cfg = QuantizeConfig(calib_size=self.cfg.calib_size, from_bundle=str(fp32))
        stage(self.workdir, "bundle-int8", {**params, "calib": cfg.calib_size, "formats": list(cfg.formats),
                                            "recipe": cfg.method},
              lambda: manifest_summary(quantize_bundle(source, self.data, int8, cfg,
                                                       run=RunContext(progress=self.progress, overwrite=True))))
        return fp32, int8

    def make_demo(self, bundle: Path) -> dict:
        """A SynthSitu video streamed through a bundle with overlays: ``demo.mp4``, and its stream statistics."""
        from .data.synthsitu.video import write_demo_video
        from .deploy.predictor import Predictor
        from .deploy.streams import StreamWriter, open_source, run_stream

        out = self.workdir / "demo.mp4"

        def run() -> dict:
            source_video = write_demo_video(self.data, self.workdir / "demo-source.mp4")
            with Predictor(bundle) as predictor:
                source = open_source(source_video)
                writer = StreamWriter(out, self.workdir / "demo.jsonl", fps=source.fps, overwrite=True)
                return {**run_stream(predictor, source, writer).to_json(), "backend": predictor.backend}
        return {"path": str(out), **stage(self.workdir, "demo", {"bundle": self.stage_params(bundle.name)}, run)}

    def make_frames(self, bundle: Path, per_split: int = 2) -> list[dict]:
        """Annotated test images (PNG) from seen, rare and unseen verbs, through a bundle."""
        from .data.split import SPLITS, dataset_split
        from .data.swig import SituDataset
        from .deploy.draw import write_image
        from .deploy.predictor import Predictor

        folder = self.workdir / "frames"

        def run() -> list[dict]:
            folder.mkdir(parents=True, exist_ok=True)
            splits, test = dataset_split(self.data), SituDataset(self.data, "test")
            frames = []
            with Predictor(bundle) as predictor:
                for split in SPLITS:
                    picks = [i for i, n in enumerate(test.names) if test.annotations[n].verb in splits[split]]
                    for i in picks[:per_split]:
                        sample = test[i]
                        situation = predictor(sample.image)
                        path = folder / f"{len(frames):02d}-{split}-{sample.annotation.verb}.png"
                        write_image(path, situation.plot(sample.image, zoom=3.0), overwrite=True)
                        frames.append({"file": path.name, "split": split, "gold": sample.annotation.verb,
                                       "predicted": situation.verb, "backend": predictor.backend})
            return frames
        return stage(self.workdir, "frames", {"bundle": self.stage_params(bundle.name)}, run)

    def run_benchmark(self, bundles: list[Path], references: Sequence[Path] = ()) -> dict:
        """``mipd-edge benchmark`` on the bundles, with accuracy on the test split, and latency-only
        rows of the comparison bundles: ``benchmark/``. bf16 is a row where the CPU computes in it."""
        from .benchmark import BenchmarkSettings, run_benchmark
        from .machine import bf16_capable

        precisions = ("fp32", "bf16", "int8") if bf16_capable() else ("fp32", "int8")
        settings = BenchmarkSettings(precisions=precisions, batches=self.cfg.benchmark_batches,
                                     data=str(self.data), seconds=self.cfg.benchmark_seconds)
        if self.cfg.benchmark_settle_s is not None:
            settings = replace(settings, settle_s=self.cfg.benchmark_settle_s)
        params = {"bundles": [self.stage_params(b.name) for b in bundles],
                  "references": [self.stage_params(r.name) for r in references],
                  "settings": {"batches": list(settings.batches), "seconds": settings.seconds,
                               "precisions": list(precisions)}}
        stage(self.workdir, "benchmark", params,
              lambda: run_benchmark(bundles, settings, self.workdir / "benchmark", references)["summary"])
        return read_json(self.workdir / "benchmark" / "results.json")

    def stage_params(self, name: str) -> Any:
        marker = self.workdir / ".stages" / f"{name}.json"
        return read_json(marker)["params"] if marker.is_file() else None

    def compare_methods(self) -> dict[str, dict]:
        """The teacher and one student per method of the config, each evaluated on test."""
        self.make_data()
        results: dict[str, dict] = {}
        from .methods import method_info

        needs_teacher = any(method_info(m).teacher for m in self.cfg.methods)
        if needs_teacher:
            self.make_teacher()
        if any(method_info(m).rationales for m in self.cfg.methods):
            self.make_rationales()
        for method in self.cfg.methods:
            results[method] = self.evaluate_model(self.make_student(method), f"student-{method}")
        if needs_teacher:
            results["teacher"] = self.evaluate_model(self.teacher, "teacher")
        return results


def manifest_summary(manifest: BundleManifest) -> dict:
    return {"graphs": sorted(manifest.graphs), "verification": manifest.verification, "metrics": manifest.metrics,
            "recipe": (manifest.quantization or {}).get("recipe")}


def training_summary(result: dict) -> dict:
    return {"best_selection_score": result["best_selection_score"], "epochs": len(result["history"])}

