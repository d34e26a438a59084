"""The ``mipd-edge`` command. Each sub-command is a thin layer over one library call."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from .config import (
    ClusterConfig,
    ExportConfig,
    QuantizeConfig,
    RationaleConfig,
    ServeConfig,
    SmoothingConfig,
    add_config_options,
    config_of_args,
    given_options,
    split_list,
)
from .context import RunContext
from .data.synthsitu.generate import FootageConfig, SynthConfig
from .data.synthsitu.hoi import SynthHoiConfig
from .deploy.backends import BACKENDS
from .deploy.bundle import PRECISIONS
from .errors import MipdEdgeError, StreamError
from .methods import METHODS
from .text import DEFAULT_TEXT_ENCODER

if TYPE_CHECKING:
    from .deploy.bundle import BundleManifest

log = logging.getLogger("mipd_edge")
# third-party loggers that talk on import (optional CUDA kernels, torch.compile notes)
QUIET_LOGGERS = ("torchao", "torch.utils._pytree", "sentence_transformers", "httpx",
                 "torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript", "nncf",
                 "torch.utils.cpp_extension")  # "No CUDA runtime is found": said on every CPU-only import


def _output(args: argparse.Namespace, what: str, option: str = "out") -> Optional[str]:
    """The output path of ``--OPTION`` (``--out`` by default) if writing it loses nothing, else
    an error naming --overwrite; None when the option was not given."""
    from .files import check_output

    path = getattr(args, option)
    if path:
        check_output(path, args.overwrite, what)
    return path


def cmd_data_synth(args: argparse.Namespace) -> None:
    _output(args, "dataset folder")
    if args.task == "hoi":
        from .data.synthsitu.hoi import generate_hoi

        m = generate_hoi(args.out, config_for_task(args, SynthHoiConfig, SynthConfig))
        print(f"SynthSitu-HOI written to {args.out}: {m['trainval']} trainval / {m['test']} test images, "
              f"{m['verbs']} verbs, {m['classes']} HOI classes, {m['seconds']:.1f} s")
        return
    from .data.synthsitu import generate

    m = generate(args.out, config_for_task(args, SynthConfig, SynthHoiConfig))
    print(f"SynthSitu written to {args.out}: {m['train']} train / {m['dev']} dev / {m['test']} test images, "
          f"{m['verbs']} verbs, {m['nouns']} nouns, {m['seconds']:.1f} s")


def cmd_data_footage(args: argparse.Namespace) -> None:
    from .data.synthsitu.generate import generate_footage

    _output(args, "footage folder")
    m = generate_footage(args.out, config_of_args(FootageConfig, args))
    print(f"SynthSitu footage written to {args.out}: {m['images']} unlabeled images, {m['seconds']:.1f} s")


def config_for_task(args: argparse.Namespace, cls: type, other: type):
    """``cls`` from the flags, refusing a flag that only ``other`` (the other task's config) has."""
    mine = {f.name for f in dataclasses.fields(cls)}
    foreign = sorted(set(given_options(args, other)) - mine)
    if foreign:
        raise MipdEdgeError(f"--{foreign[0].replace('_', '-')} is not an option of a --task {args.task} dataset")
    return config_of_args(cls, args)


def cmd_data_split(args: argparse.Namespace) -> None:
    from .data.split import read_verb_list, split_from_files, split_of_dataset, write_split
    from .data.swig import read_annotations, read_space

    _output(args, "split file")
    space = read_space(args.space)
    if args.from_files:
        split = split_from_files(args.from_files)
        unknown = sorted(set(split["seen"] + split["rare"] + split["unseen"]) - set(space.frames))
        if unknown:
            raise MipdEdgeError(f"{args.from_files}: verbs not in {args.space}: {unknown[:5]}")
        write_split(args.out, split)
        print(f"split written to {args.out}: {len(split['seen'])} seen, {len(split['rare'])} rare "
              f"(at most {split['params']['rare_images']} images each), {len(split['unseen'])} unseen verbs "
              f"(from {', '.join(split['params']['source'])})")
        return
    if not args.train:
        raise MipdEdgeError("data split needs --train (or --from-files)")
    train = read_annotations(args.train, space)
    unseen = read_verb_list(args.unseen_verbs) if args.unseen_verbs else None
    split = split_of_dataset(space.frames, {a.verb for a in train.values()}, args.unseen_frac, args.rare_frac,
                             args.rare_images, args.seed, unseen=unseen)
    write_split(args.out, split)
    print(f"split written to {args.out}: {len(split['seen'])} seen, {len(split['rare'])} rare "
          f"(at most {args.rare_images} images each), {len(split['unseen'])} unseen verbs")


def cmd_eval(args: argparse.Namespace) -> None:
    from .data.layouts import dataset_task, space_task

    _output(args, "metrics file")
    task = space_task(args.space) if args.space else dataset_task(Path(args.annotations).parent)
    metrics = (eval_interactions if task == "hoi" else eval_situations)(args)
    if args.out:
        from .files import write_json

        write_json(args.out, metrics)
        print(f"metrics written to {args.out}")


def eval_situations(args: argparse.Namespace) -> dict:
    from .data.swig import read_annotations, read_space
    from .files import read_json
    from .metrics import evaluate, format_table

    hoi_only = [f"--{k.replace('_', '-')}" for k in ("zero_shot", "train_annotations", "max_per_image")
                if getattr(args, k) is not None]
    if hoi_only:
        raise MipdEdgeError(f"{hoi_only[0]} scores HOI detections; {args.annotations} holds situations")
    if not args.space:
        raise MipdEdgeError("scoring situations needs --space (the dataset's imsitu_space.json)")
    space = read_space(args.space)
    annotations = read_annotations(args.annotations, space)
    predictions = read_json(args.predictions, "predictions file")
    if not isinstance(predictions, dict):
        raise MipdEdgeError(f"{args.predictions}: predictions are an object keyed by image name")
    metrics = evaluate(annotations, space, predictions, args.splits)
    print(format_table(metrics))
    return metrics


def eval_interactions(args: argparse.Namespace) -> dict:
    from .data.hico import HoiSpace, find_space, rare_classes, read_hoi_annotations
    from .files import read_json
    from .hoi_metrics import evaluate_hoi

    if args.splits:
        raise MipdEdgeError(f"--splits scores situations; {args.annotations} holds interactions (use --zero-shot)")
    space = HoiSpace.load(args.space) if args.space else find_space(Path(args.annotations).parent)
    annotations = read_hoi_annotations(args.annotations, space)
    train = read_hoi_annotations(args.train_annotations, space) if args.train_annotations else None
    rare = rare_classes(space, train) if space.rare is not None or train is not None else frozenset()
    metrics = evaluate_hoi(annotations, read_json(args.predictions, "predictions file"), space, rare,
                           args.zero_shot, args.ap, args.max_per_image, args.mode)
    rows = [("Full", "full"), ("Rare", "rare"), ("Non-rare", "non_rare")]
    if args.zero_shot:
        rows += [("Unseen", "unseen"), ("Seen", "seen")]
    print(f"{space.name} mAP / mean max recall ({metrics['ap']} AP, mode {metrics['mode']}, {metrics['classes']} "
          f"classes with ground truth{', zero-shot ' + args.zero_shot if args.zero_shot else ''})")
    for name, key in rows:
        values = (metrics[key], metrics["mean_max_recall"][key])
        print(f"  {name:<9} " + " / ".join("     -" if v is None else f"{v:6.2f}" for v in values))
    return metrics


def _train_config(args: argparse.Namespace, **forced):
    """The training config: defaults, then ``--config FILE``, then the flags; ``forced`` last."""
    from .train.config import TrainConfig

    cfg = config_of_args(TrainConfig, args)
    model = {"backbone": getattr(args, "backbone", None),
             "backbone_weights": getattr(args, "backbone_weights", None)}
    if model["backbone_weights"]:  # the model records where its weights came from, wherever it is run
        model["backbone_weights"] = str(Path(model["backbone_weights"]).resolve())
    model = {k: v for k, v in model.items() if v is not None}
    return dataclasses.replace(cfg, **({"model": {**cfg.model, **model}} if model else {}), **forced)


def _run(args: argparse.Namespace) -> RunContext:
    return RunContext(overwrite=args.overwrite, resume=getattr(args, "resume", False),
                      cache_dir=getattr(args, "cache_dir", None))


def cmd_train_teacher(args: argparse.Namespace) -> None:
    from .train.teacher_train import train_teacher

    result = train_teacher(args.data, args.out, _train_config(args, method="none"), _run(args))
    print(f"teacher written to {args.out} (best dev selection score {result['best_selection_score']:.2f})")


def cmd_teacher_cache(args: argparse.Namespace) -> None:
    from .files import default_cache_dir
    from .models.teacher import load_teacher
    from .text import load_text_encoder
    from .train.data import training_view
    from .train.teacher_cache import teacher_cache

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    encoder = load_text_encoder(args.text_encoder, cache_dir=cache_dir / "text")
    _, train_set, vocab = training_view(args.data, encoder)
    cache = teacher_cache(load_teacher(args.teacher, text_encoder=encoder), train_set, vocab, cache_dir / "teacher")
    print(f"teacher features for {len(cache.names)} training images: {cache_dir / 'teacher' / cache.key}")


def cmd_rationales(args: argparse.Namespace) -> None:
    from .train.rationales import generate_rationales

    stats = generate_rationales(args.data, args.teacher, args.out, config_of_args(RationaleConfig, args), _run(args))
    print(f"rationales: {stats['written']} written, {stats['failed']} failed, {stats['done_before']} already done "
          f"-> {args.out}")


def cmd_distill(args: argparse.Namespace) -> None:
    from .train.distill import distill
    from .train.task import TrainingInputs

    inputs = TrainingInputs(args.teacher, args.rationales, args.pairs, args.zero_shot, unlabeled=args.unlabeled)
    result = distill(args.data, args.out, _train_config(args), inputs, _run(args))
    print(f"student written to {args.out} (best dev selection score {result['best_selection_score']:.2f})")


def cmd_predict_dataset(args: argparse.Namespace) -> None:
    from .files import write_json

    _output(args, "predictions file")
    if (Path(args.model) / "bundle.json").is_file():
        from .deploy.predictor import Predictor
        from .evaluation import dataset_predictions

        with Predictor(args.model, backend=args.backend) as predictor:
            preds = dataset_predictions(predictor, args.data, args.split, progress=True)
    else:
        from .models.inference import predict_with_model

        preds = predict_with_model(args.model, args.data, args.split)
    write_json(args.out, preds, indent=None)
    print(f"predictions for {len(preds)} {args.split} images -> {args.out}")


def cmd_hoi_pairs(args: argparse.Namespace) -> None:
    from .train.hoi import write_hoi_pairs

    out = write_hoi_pairs(args.data, _output(args, "pairs folder"), args.zero_shot, unlabelled=args.unlabelled)
    print(f"pair situations (SWiG format) -> {out}; next: mipd-edge rationales --data {out} --teacher T "
          f"--out {Path(out).parent / 'rationales.jsonl'}")


def cmd_export(args: argparse.Namespace) -> None:
    cfg = config_of_args(ExportConfig, args)
    if cfg.precision == "int8":
        from .quantize import quantize_bundle

        if not args.data:
            raise MipdEdgeError("--precision int8 needs --data (calibration images); see also `mipd-edge quantize`")
        manifest = quantize_bundle(args.model, args.data, args.out,
                                   QuantizeConfig(formats=cfg.formats, dynamic_batch=cfg.dynamic_batch), _run(args))
    else:
        from .export import export_bundle

        manifest = export_bundle(args.model, args.out, cfg, args.data, _run(args))
    _print_bundle(args.out, manifest)


def cmd_quantize(args: argparse.Namespace) -> None:
    from .quantize import quantize_bundle

    manifest = quantize_bundle(args.model, args.data, args.out, config_of_args(QuantizeConfig, args), _run(args))
    _print_bundle(args.out, manifest)
    recipe = manifest.quantization["recipe"]
    print(f"INT8 by {recipe['method'].upper()}: {recipe['why']}")
    m = manifest.metrics
    if m is None:
        return
    if "int8_minus_fp32_map" in m:
        print(f"\n{m['split']} mAP through {m['backend']} (seen classes and verbs: the accuracy gate), FP32 vs "
              f"INT8: {m['fp32']['full']:6.2f}  {m['int8']['full']:6.2f}  ({m['int8_minus_fp32_map']['full']:+.2f}"
              f"{_interval(m['gate'].get('ci95', {}).get('int8', {}).get('full'))})")
        return
    print(f"\n{m['split']} metrics through {m['backend']} (top-1 on training verbs: the accuracy gate), FP32 vs INT8 "
          f"(the difference's 95% interval, {m['gate']['images']} images):")
    ci = m["gate"].get("ci95", {}).get("int8", {})
    for key in ("verb", "grnd_value"):
        print(f"  {key:11s} {m['gate']['fp32'][key]:6.2f}  {m['gate']['int8'][key]:6.2f}  "
              f"({m['int8_minus_fp32_top1'][key]:+.2f}{_interval(ci.get(key))})")


def _print_bundle(out: str, manifest: BundleManifest) -> None:
    print(f"bundle written to {out}: graphs {', '.join(manifest.graphs)}, precision {manifest.precision}")
    for fmt, check in manifest.verification.items():
        worst = max(check["max_abs_diff"].values()) if "max_abs_diff" in check else None
        detail = (f"max |diff| vs torch {worst:.2g} (tolerance {check['tolerance']})" if worst is not None
                  else f"mean glance cosine vs FP32 {check['glance_cosine_mean']:.4f}")
        print(f"  verified {fmt}: {detail}")


def _predictor(args: argparse.Namespace):
    from .deploy.predictor import Predictor

    predictor = Predictor(args.model, backend=args.backend, device=args.device, precision=args.precision,
                          threads=args.threads)
    print(f"running on {predictor.selection.describe()}")
    return predictor


def cmd_predict(args: argparse.Namespace) -> None:
    from .deploy.draw import write_image
    from .deploy.streams import ImageSource
    from .files import atomic_output, clean_temporaries

    source = ImageSource(args.source)  # a missing source or an empty folder is an error here
    cluster = config_of_args(ClusterConfig, args)
    save = Path(args.save) if args.save else None
    if save:
        if cluster.ray:
            raise MipdEdgeError("--save draws the copies in this process; it does not go with --ray")
        if save.exists() and not save.is_dir():
            raise MipdEdgeError(f"--save {save} is a file; it takes a folder for the annotated copies")
        _output(args, "folder for annotated copies", "save")
        if save.is_dir():
            clean_temporaries(save)  # once here, not once per copy written
        if any(save.resolve() == p.resolve().parent for p in source.paths):
            raise MipdEdgeError(f"--save {save} is the folder of the source images: the annotated copies would "
                                "replace the originals; choose another folder")
    _output(args, "JSON lines file", "json")
    answers = _folder_answers(args, cluster, source.paths, keep=bool(save))
    with contextlib.ExitStack() as files:
        lines = open(files.enter_context(atomic_output(args.json)), "w", encoding="utf-8") if args.json else None
        if lines:
            files.callback(lines.close)
        count = skipped = 0
        for answer in answers:
            if answer.error:
                print(f"{answer.source}: skipped ({answer.error})", file=sys.stderr)
                skipped += 1
                continue
            count += 1
            print(f"{answer.source}: {answer.text}  [{answer.ms:.1f} ms]")
            if save:
                write_image(save / Path(answer.source).name, answer.answer.plot(answer.image), overwrite=True,
                            clean=False)
            if lines:
                lines.write(answer.line + "\n")
        if count == 0:
            raise MipdEdgeError(f"no image of {args.source} could be recognised ({skipped} skipped)")
    print(f"{count} images" + (f", {skipped} skipped" if skipped else "") +
          (f", annotated copies in {save}" if save else ""))


def _folder_answers(args: argparse.Namespace, cluster: ClusterConfig, paths: Sequence[Path], keep: bool):
    """The files' answers, in their order: from this process, or from Ray Data's workers (``--ray``)."""
    if not cluster.ray:
        from .deploy.folder import answer_files

        return answer_files(_predictor(args), paths, keep)
    from .serve.cluster import predict_on_ray, quiet_ray

    quiet_ray()
    spec = _predictor_spec(args)
    print(f"running on Ray: {cluster.ray_workers} workers, each with its own Predictor "
          f"({spec.backend} backend, {spec.precision} precision)")
    return predict_on_ray(spec, paths, cluster)


def _predictor_spec(args: argparse.Namespace):
    """What Ray's replicas and workers build their Predictors from; the bundle is checked here
    first, so that a bad one fails before Ray starts."""
    from .deploy.bundle import read_manifest
    from .serve.cluster import PredictorSpec

    read_manifest(args.model)
    return PredictorSpec(str(args.model), args.backend, args.device, args.precision, args.threads)


def cmd_stream(args: argparse.Namespace) -> None:
    from .deploy.streams import StreamSet, open_source
    from .deploy.streams.sources import named_sources, read_sources_file

    specs = list(args.source or []) + (read_sources_file(args.sources) if args.sources else [])
    if not specs:
        raise MipdEdgeError("give a source: --source SPEC (as often as there are sources) or --sources FILE")
    sources = named_sources(specs)
    writers = _stream_writers(args, list(sources))  # refuses occupied outputs before any work
    opened: dict = {}
    try:
        predictor = _predictor(args)
        for name, spec in sources.items():
            opened[name] = open_source(spec, max_retries=args.retries)
    except BaseException:
        for name, writer in writers.items():
            writer.close(keep=False)
        for source in opened.values():
            source.close()
        raise
    streams = StreamSet(predictor, args.max_frames, smoothing=config_of_args(SmoothingConfig, args))
    for name, source in opened.items():
        writers[name].fps = source.fps or writers[name].fps
        streams.add(name, source, writers[name])
    stats = streams.run()
    s = stats.to_json()
    stopped = f" (stopped by {stats.stopped_by})" if stats.stopped_by else ""
    print(f"{s['frames']} frames in {s['seconds']:.1f} s ({s['fps']:.1f} FPS){stopped}, {s['skipped']} skipped; "
          f"mean ms per frame: {s['mean_ms']}" + (f"; video: {args.save}" if args.save else ""))
    if len(sources) > 1:
        for name, source in s["sources"].items():
            print(f"  {name}: {source['status']}, {source['frames']} frames, {source['skipped']} skipped, "
                  f"{source['reconnects']} reconnections, {source['mean_latency_ms']} ms from frame to answer")
    if stats.failed:
        raise StreamError("; ".join(f"{name}: {why}" for name, why in stats.failed.items()))


def _stream_writers(args: argparse.Namespace, names: list[str]) -> dict:
    """Each source's outputs: with one source, ``--save`` / ``--json`` are the files; with several
    they are folders, holding ``NAME.mp4`` / ``NAME.jsonl`` per source."""
    from .deploy.streams import StreamWriter

    def path(option: Optional[str], name: str, suffix: str) -> Optional[Path]:
        if option is None or len(names) == 1:
            return Path(option) if option else None
        if Path(option).is_file():
            raise MipdEdgeError(f"{option} is a file; with several sources it names a folder (one file per source)")
        return Path(option) / f"{name}{suffix}"

    writers: dict = {}
    try:
        for name in names:
            writers[name] = StreamWriter(path(args.save, name, ".mp4"), path(args.json, name, ".jsonl"), args.show,
                                         overwrite=args.overwrite, title=name)
    except BaseException:
        for writer in writers.values():
            writer.close(keep=False)
        raise
    return writers


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve.server import read_admin_token, serve

    cfg = config_of_args(ServeConfig, args)
    cluster = config_of_args(ClusterConfig, args)
    if cluster.ray:
        _serve_on_ray(args, cfg, cluster)
        return
    token = read_admin_token(cfg.admin_token)  # a bad token source fails before the model loads
    predictor = _predictor(args)
    print(f"serving {args.model} on http://{cfg.host}:{cfg.port} (API and its schema: /docs; metrics: /metrics; "
          f"vocabulary edits {'with the admin token' if token else 'off'}); Ctrl-C or SIGTERM stops it", flush=True)
    serve(predictor, cfg, token)


def _serve_on_ray(args: argparse.Namespace, cfg: ServeConfig, cluster: ClusterConfig) -> None:
    from .serve.cluster import quiet_ray, serve_on_ray

    quiet_ray()
    if cfg.admin_token:
        raise MipdEdgeError("--admin-token does not go with --ray: each replica holds its own vocabulary, and an "
                            "edit would reach one of them (serve one process to edit the vocabulary live)")
    spec = _predictor_spec(args)
    print(f"serving {args.model} on Ray Serve at http://{cfg.host}:{cfg.port}, {cluster.min_replicas} to "
          f"{cluster.max_replicas} replicas (API and its schema: /docs; vocabulary edits off); Ctrl-C or SIGTERM "
          "stops it", flush=True)
    serve_on_ray(spec, cfg, cluster)


def cmd_check(args: argparse.Namespace) -> None:
    from .check import check_bundle

    report = check_bundle(args.bundle, args.device)
    print(f"{report['bundle']}: manifest valid ({report['validate_ms']:.1f} ms), {report['files']} files "
          f"({report['megabytes']:.1f} MB) match their SHA-256 ({report['hash_ms']:.0f} ms)")
    for run in report["runs"]:
        print(f"  {run['backend']:<12} {run['precision']:<5} loads in {run['load_ms']:.0f} ms, answers {run['answer']} "
              f"(first call, {run['inference_ms']:.1f} ms)")
    for precision, gate in report["gates"].items():
        print(f"  {precision} - FP32 on dev: {_gate_numbers(gate)}; {gate['verdict']}")
    print("ok")


def _gate_numbers(gate: dict) -> str:
    """``verb -0.42 [-1.10, +0.31], grnd_value ...``: a recorded difference and its 95% interval."""
    ci = gate.get("ci95") or {}
    return ", ".join(f"{k} {v:+.2f}{_interval(ci.get(k))}"
                     for k, v in gate["minus_fp32"].items() if isinstance(v, (int, float)))


def _interval(pair: Optional[Sequence[float]]) -> str:
    """`` [-1.10, +0.31]``, or nothing where no interval was recorded."""
    return " [{:+.2f}, {:+.2f}]".format(*pair) if pair else ""


def cmd_benchmark(args: argparse.Namespace) -> None:
    from .benchmark import BenchmarkSettings, run_benchmark
    from .benchmark_report import format_results

    settings = BenchmarkSettings(backends=tuple(split_list(args.backends)),
                                 precisions=tuple(split_list(args.precisions)), batches=_batch_sizes(args.batch),
                                 device=args.device, threads=args.threads, data=args.data, split=args.split,
                                 seconds=args.seconds, accuracy_images=args.accuracy_images)
    from .files import check_output

    out = Path(args.out)
    folder = out.parent if out.suffix == ".json" else out
    check_output(folder, args.overwrite, "benchmark folder")
    results = run_benchmark(args.model, settings, folder, args.reference or ())
    print(format_results(results))
    print(f"\nwritten: {folder}/results.json, results.csv, latency_vs_accuracy.png")


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in split_list(text))
    except ValueError:
        raise MipdEdgeError(f"--batch takes a comma list of integers, got {text!r}") from None


def cmd_quickstart(args: argparse.Namespace) -> None:
    from .quickstart import run

    command = ["mipd-edge", "quickstart", "--workdir", args.workdir] + (["--fast"] if args.fast else []) + (
        ["--preset", args.preset] if args.preset else []) + (["--seed", str(args.seed)] if args.seed else [])
    run(Path(args.workdir), fast=args.fast, seed=args.seed, preset=args.preset, command=shlex.join(command))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mipd-edge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        p.add_argument("--overwrite", action="store_true",
                       help="replace existing outputs (without it, a command refuses to write over a file or folder)")
        return p

    data = sub.add_parser("data", help="datasets: SynthSitu generation, open-vocabulary splits")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = command("synth", cmd_data_synth, "generate SynthSitu in SWiG format, or (--task hoi) SynthSitu-HOI, several "
                "people per image, in the HICO-DET layout", data_sub)
    p.add_argument("--out", required=True)
    p.add_argument("--task", choices=("gsr", "hoi"), default="gsr", help="situations (gsr) or interactions (hoi)")
    add_config_options(p, SynthConfig)
    add_config_options(p, SynthHoiConfig, skip=tuple(f.name for f in dataclasses.fields(SynthConfig)))

    p = command("footage", cmd_data_footage, "generate unlabeled SynthSitu images (every verb, no annotation): a "
                "stand-in for a deployment's own footage, for distill --unlabeled", data_sub)
    p.add_argument("--out", required=True)
    add_config_options(p, FootageConfig)

    p = command("split", cmd_data_split, "build an open-vocabulary (seen / rare / unseen) verb split", data_sub)
    p.add_argument("--space", required=True)
    p.add_argument("--train", default=None, help="training annotations (SWiG train.json)")
    p.add_argument("--from-files", default=None,
                   help="a folder of a published split's SWiG files (Ov-SWiG: train_L10*.json, "
                        "{dev,test}_L10_unseen*.json, {dev,test}_L20_rare*.json)")
    p.add_argument("--unseen-verbs", default=None, help="the unseen verbs, one per line (or a JSON list)")
    p.add_argument("--out", required=True)
    p.add_argument("--unseen-frac", type=float, default=0.2)
    p.add_argument("--rare-frac", type=float, default=0.2)
    p.add_argument("--rare-images", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)

    p = command("eval", cmd_eval, "score predictions: the GSR metrics of situations, or the HICO-DET mAP (Full / "
                "Rare / Non-rare, Seen / Unseen under a zero-shot split) of interactions, as the dataset's space is")
    p.add_argument("--annotations", required=True, help="a split's annotations (SWiG test.json, or test_hico.json)")
    p.add_argument("--predictions", required=True, help="what predict-dataset writes")
    p.add_argument("--space", default=None, help="the dataset's space (imsitu_space.json, needed for situations; "
                   "hoi_space.json, default: beside the annotations, else HICO-DET's)")
    p.add_argument("--splits", default=None, help="situations: splits.json, for seen / rare / unseen sections")
    p.add_argument("--zero-shot", default=None,
                   help="interactions: rare_first, non_rare_first, unseen_object, unseen_verb (HICO-DET) or the "
                        "dataset's own")
    p.add_argument("--train-annotations", default=None,
                   help="interactions: to count rare classes when the space lists none")
    p.add_argument("--ap", choices=("11point", "auc"), default="11point",
                   help="interactions: 11-point interpolated AP, as HICO-DET's official evaluation (default), or the "
                        "area under the precision envelope (not the official metric)")
    p.add_argument("--mode", choices=("def", "ko"), default="def",
                   help="interactions: def, every test image; ko (known object), per class only the images "
                        "annotated with its object")
    p.add_argument("--max-per-image", type=int, default=None, help="interactions: keep each image's top detections")
    p.add_argument("--out", default=None, help="write the metrics JSON here")

    def config_file(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=None, help="a YAML file of the same fields as the flags (flags win)")

    def training_options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
        from .train.config import CPU_AUTOCAST, UNLABELED_GLANCE, TrainConfig

        p.add_argument("--data", required=True, help="a SWiG-format dataset with splits.json, or an HOI dataset")
        p.add_argument("--out", required=True)
        config_file(p)
        p.add_argument("--resume", action="store_true", help="continue from out/checkpoints/last.safetensors")
        p.add_argument("--cache-dir", default=None, help="default: $MIPD_EDGE_CACHE or ~/.cache/mipd-edge")
        add_config_options(p, TrainConfig, skip=skip, choices={"method": METHODS, "cpu_autocast": CPU_AUTOCAST,
                                                               "unlabeled_glance": UNLABELED_GLANCE})
        p.add_argument("--backbone", default=None,
                       help="the student's backbone: resnet18, resnet34, resnet50, mobilenetv3 or timm:NAME (any timm "
                            "model with stride-16 and stride-32 feature maps)")
        p.add_argument("--backbone-weights", default=None,
                       help="pretrained backbone weights from a local file (safetensors or a torch state dict; "
                            "for timm:NAME, timm's own layout)")

    p = command("train-teacher", cmd_train_teacher, "train the built-in SynthSitu teacher on all verbs")
    training_options(p, skip=("method",))

    p = command("teacher-cache", cmd_teacher_cache, "compute the teacher's features on the training images once")
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--cache-dir", default=None, help="default: $MIPD_EDGE_CACHE or ~/.cache/mipd-edge")

    p = command("rationales", cmd_rationales, "JRG: positive and negative rationales per training image")
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True, help="rationales.jsonl (resumed if it exists)")
    p.add_argument("--cache-dir", default=None, help="default: $MIPD_EDGE_CACHE or ~/.cache/mipd-edge")
    config_file(p)
    add_config_options(p, RationaleConfig)

    p = command("distill", cmd_distill, f"train a student with {', '.join(METHODS)}: a situation student on a "
                "SWiG-format dataset, an interaction student on an HOI dataset; MIPD's parts are switched in "
                "--config's mipd: section")
    training_options(p)
    p.add_argument("--teacher", default=None, help="kd, mipd: the teacher (a folder, or open_clip: / clip: / blip2:)")
    p.add_argument("--rationales", default=None, help="mipd: the rationales (mipd-edge rationales)")
    p.add_argument("--pairs", default=None, help="mipd on interactions: the pair situations (mipd-edge hoi-pairs)")
    p.add_argument("--zero-shot", default=None, help="interactions: drop this split's unseen classes from training")
    p.add_argument("--unlabeled", default=None, metavar="DIR",
                   help="situations: a folder of unlabeled images (the deployment's own footage) on which the student "
                        "also learns from the teacher; needs --teacher")

    p = command("predict-dataset", cmd_predict_dataset, "predict a dataset split with a trained student or a bundle, "
                "in the format `mipd-edge eval` scores")
    p.add_argument("--model", required=True, help="a trained student (or teacher) folder, or a bundle")
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=["train", "dev", "test", "trainval"], default="test",
                   help="situations: train, dev, test; interactions: trainval, test")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="for a bundle")
    p.add_argument("--out", required=True)

    p = command("hoi-pairs", cmd_hoi_pairs, "crop the training interactions of an HOI dataset into one-situation "
                "images (SWiG format): what the teacher, rationales and NMPA of HOI distillation run on")
    p.add_argument("--data", required=True, help="an HOI dataset (trainval_hico.json, images/)")
    p.add_argument("--out", required=True)
    p.add_argument("--zero-shot", default=None, help="the split whose unseen classes training must not see")
    p.add_argument("--unlabelled", action="store_true",
                   help="also crop the unlabelled human-object pairs (for distill with 'mipd: {pairs: all}' in "
                        "--config)")

    p = command("export", cmd_export, "export a trained student to a verified bundle")
    p.add_argument("--model", required=True, help="a trained student directory")
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=None, help="dataset for verification (and calibration for int8)")
    config_file(p)
    add_config_options(p, ExportConfig)

    p = command("quantize", cmd_quantize, "INT8 bundle with NNCF: post-training, QAT or accuracy-controlled")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="calibration from its training split, metrics on dev")
    p.add_argument("--out", required=True)
    config_file(p)
    add_config_options(p, QuantizeConfig)

    def runtime_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                       help="auto: the fastest installed backend x precision the bundle holds, measured here")
        p.add_argument("--device", default="CPU", help="the runtime's device: CPU, CUDA, or OpenVINO's GPU, NPU, AUTO")
        p.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto",
                       help="auto (with --backend auto): the fastest the bundle holds, measured on first use")
        p.add_argument("--threads", type=int, default=None, help="the runtime's CPU threads (default: its own)")

    def runtime_options(p: argparse.ArgumentParser, source: str) -> None:
        p.add_argument("--model", required=True, help="a bundle directory")
        p.add_argument("--source", required=True, help=source)
        runtime_flags(p)
        p.add_argument("--json", default=None, help="write results as JSON lines here")

    p = command("predict", cmd_predict, "recognise situations in an image or a folder of images")
    runtime_options(p, "an image or a folder of images")
    p.add_argument("--save", default=None, help="folder for annotated copies")
    add_config_options(p, ClusterConfig, skip=("min_replicas", "max_replicas"))

    p = command("stream", cmd_stream, "cameras (0), video files or RTSP / HTTP streams, one or many, with overlays")
    p.add_argument("--model", required=True, help="a bundle directory")
    p.add_argument("--source", action="append", default=None,
                   help="a camera index (0), a video file, an rtsp:// or http:// URL, an image folder or one image; "
                        "NAME=SPEC names it; give it once per source")
    p.add_argument("--sources", default=None, help="a file listing sources, one per line (NAME=SPEC or SPEC)")
    runtime_flags(p)
    p.add_argument("--json", default=None,
                   help="write results as JSON lines here (with several sources: a folder, NAME.jsonl per source)")
    p.add_argument("--save", default=None,
                   help="write the annotated video here (mp4, H.264; with several sources: a folder, NAME.mp4 each)")
    p.add_argument("--max-frames", type=int, default=None, help="stop each source after this many frames")
    add_config_options(p, SmoothingConfig, choices={"smooth": ("ema", "vote", "off")})
    p.add_argument("--no-smooth", dest="smooth", action="store_const", const="off",
                   help="each frame's answer as the model gave it (--smooth off)")
    p.add_argument("--retries", type=int, default=10,
                   help="a live source down at start or dropped is reopened this many times in a row, with back-off")
    p.add_argument("--show", action="store_true", help="show a window (needs a display and GUI OpenCV)")

    p = command("serve", cmd_serve, "serve a bundle over HTTP: dynamic batching, Prometheus metrics, OpenAPI at /docs")
    p.add_argument("model", help="a bundle directory")
    runtime_flags(p)
    add_config_options(p, ServeConfig)
    add_config_options(p, ClusterConfig, skip=("ray_workers",))

    p = command("check", cmd_check, "verify a bundle as a device does before it answers (manifest, paths, file "
                "hashes), then run one inference on every installed backend x precision it holds")
    p.add_argument("bundle")
    p.add_argument("--device", default="CPU")

    p = command("benchmark", cmd_benchmark, "latency, throughput, memory and accuracy per backend x precision")
    p.add_argument("--model", required=True, nargs="+", help="one or more bundles (e.g. bundle-fp32 bundle-int8)")
    p.add_argument("--data", default=None, help="a SWiG-format dataset: accuracy columns and real images to time")
    p.add_argument("--split", default="test")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma list (default: every backend)")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--batch", default="1,8", help="comma list of batch sizes")
    p.add_argument("--device", default="CPU", help="CPU, CUDA (torch, onnxruntime, tensorrt) or an OpenVINO device")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seconds", type=float, default=3.0, help="timing per series, after warm-up")
    p.add_argument("--accuracy-images", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--reference", nargs="+", default=None,
                   help="bundles of other models to compare against (the reference size, the authors' student)")
    p.add_argument("--out", default="benchmark", help="a folder (or a results.json path inside one)")

    p = command("quickstart", cmd_quickstart, "run the whole SDK end to end on SynthSitu")
    p.add_argument("--workdir", default="runs/quickstart")
    p.add_argument("--fast", action="store_true",
                   help="a small run for a first look (about 3.5 minutes on 2 cores)")
    p.add_argument("--preset", choices=["default", "fast", "quick"], default=None,
                   help="sizes of the run; 'quick' is the tiny one the tests use")
    p.add_argument("--seed", type=int, default=0)
    return parser


def setup_logging(verbose: bool = False) -> None:
    """The SDK's log lines, with the chattiest libraries quietened (the CLI and the benchmark scripts)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for chatter in QUIET_LOGGERS:
        logging.getLogger(chatter).setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        args.fn(args)
    except MipdEdgeError as exc:
        print(f"mipd-edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mipd-edge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: one line, the traceback in the log with -v
        log.debug("unexpected error", exc_info=True)
        print(f"mipd-edge: unexpected error: {type(exc).__name__}: {exc}"
              + ("" if args.verbose else " (run with -v for the traceback)"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
