"""Training speed: the teacher and a student trained before and after the speed settings,
side by side in one run on the same data, with where the time goes.

    python benchmarks/training_speed.py [--out runs/training-speed] [--teacher-epochs 5] [--student-epochs 8]

"before" trains with NCHW convolutions and the per-tensor AdamW (the settings up to this
version), "after" with the current defaults (channels-last convolutions, fused AdamW).
Both run the same seed on the quickstart's data (2,400 SynthSitu training images, 128 px),
teacher first, then a student (method ``none``); each is evaluated on test. The script
also profiles a few training steps (share of convolutions, matrix products, the optimizer),
counts the floating-point work of one step and sets the achieved rate against this
machine's FP32 matrix-product rate: what is left to gain at the same model and data.
Writes ``training_speed.json`` and prints the tables. A rerun reuses finished runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from mipd_edge.cli import setup_logging
from mipd_edge.machine import bf16_capable, device_info, library_versions
from mipd_edge.pipeline import PRESETS, Pipeline, stage
from mipd_edge.tables import render_table
from mipd_edge.train.config import TrainConfig

PARTS = ("runs", "profile", "autocast")
SETTINGS = {"before": {"channels_last": False, "fused_optimizer": False},
            "after": {"channels_last": True, "fused_optimizer": True}}


def summary(history: list[dict]) -> dict:
    """Median training images/s over epochs, mean dev-evaluation seconds, whole epochs' seconds."""
    return {"images_per_second": float(np.median([h["images_per_second"] for h in history])),
            "eval_seconds_per_epoch": float(np.mean([h["eval_seconds"] for h in history])),
            "train_seconds": float(sum(h["train_seconds"] for h in history)),
            "epoch_seconds": float(sum(h["train_seconds"] + h["eval_seconds"] for h in history))}


def run_setting(pipe: Pipeline, name: str, kind: str, epochs: int, overrides: dict) -> dict:
    """One teacher or student training with a setting; its speed and test metrics (cached by the stage)."""
    from mipd_edge.context import RunContext
    from mipd_edge.train.distill import distill
    from mipd_edge.train.teacher_train import train_teacher

    cfg = replace(TrainConfig(method="none", epochs=epochs, image_size=pipe.cfg.input_size, seed=pipe.cfg.seed),
                  **overrides)
    out = pipe.workdir / f"{kind}-{name}"

    def train() -> dict:
        started = time.perf_counter()
        fn = train_teacher if kind == "teacher" else distill
        result = fn(pipe.data, out, cfg, run=RunContext(progress=pipe.progress, overwrite=True))  # timed from scratch
        return {**summary(result["history"]), "stage_seconds": time.perf_counter() - started,
                "best_selection_score": result["best_selection_score"], "weights_sha256": result["weights_sha256"]}

    speed = stage(pipe.workdir, f"{kind}-{name}", {"data": pipe.data_params(), "train": cfg.to_json()}, train)
    metrics = pipe.evaluate_model(out, f"{kind}-{name}")
    return {**speed, "test": {s: metrics[s]["top1"] for s in ("all", "seen", "rare", "unseen")},
            "test_top5_verb": {s: metrics[s]["top5"]["verb"] for s in ("all", "seen", "rare", "unseen")}}


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9


def training_step(pipe: Pipeline, kind: str, bf16: bool = False) -> Callable[[], None]:
    """One training step of the teacher or the student with the current settings (channels-last,
    fused AdamW) on random batches of the pipeline's data, in bf16 autocast if asked."""
    from mipd_edge.data.split import dataset_split, training_verbs
    from mipd_edge.data.swig import SituDataset
    from mipd_edge.deploy.preprocess import Preprocess
    from mipd_edge.models.student import create_student
    from mipd_edge.models.teacher import TEACHER_CONFIG, TeacherNet
    from mipd_edge.text import load_text_encoder
    from mipd_edge.train.data import GSRTrainSet
    from mipd_edge.train.loop import Objective, TrainStep
    from mipd_edge.train.teacher_train import RegionNounObjective
    from mipd_edge.vocabulary import Vocabulary

    cfg = TrainConfig(method="none", image_size=pipe.cfg.input_size)
    encoder = load_text_encoder(cfg.text_encoder)
    split = dataset_split(pipe.data) if kind == "student" else None
    dataset = SituDataset(pipe.data, "train", ov_split=split)
    verbs = training_verbs(split) if split else list(dataset.space.frames)
    vocab = Vocabulary({v: dataset.space.frames[v] for v in verbs}, dataset.space.nouns, encoder)
    torch.manual_seed(0)
    if kind == "teacher":
        model = TeacherNet(replace(TEACHER_CONFIG, image_size=cfg.image_size, text_dim=encoder.dim, **pipe.cfg.model))
        objective = RegionNounObjective()
    else:
        model = create_student(cfg.student, image_size=cfg.image_size, text_dim=encoder.dim, **pipe.cfg.model)
        objective = Objective()
    step = TrainStep(model, objective, vocab, cfg).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(step.parameters(), lr=cfg.lr, fused=True)
    data = GSRTrainSet(dataset, vocab, Preprocess(cfg.image_size), progress=False)
    rng = np.random.default_rng(0)

    def one() -> None:
        idx = rng.permutation(len(data))[:cfg.batch_size]
        batch = data.batch(idx, rng.random(len(idx)) < 0.5)
        batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = sum(step(batch).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(step.parameters(), cfg.grad_clip)
        optimizer.step()
    return one


def profile_steps(pipe: Pipeline, kind: str, steps: int = 4) -> dict:
    """Where a training step's time goes (torch profiler, self time by operator family) and
    how much arithmetic it does (FLOP counter), with the current settings."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    one = training_step(pipe, kind)
    for _ in range(2):
        one()
    with FlopCounterMode(display=False) as counter:
        one()
    flops = counter.get_total_flops()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    seconds = (time.perf_counter() - start) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            one()
    families = {"convolution (forward and backward)": ("conv",), "matrix products": ("mm", "addmm", "bmm", "linear"),
                "batch norm": ("batch_norm",), "dropout": ("bernoulli", "dropout"),
                "optimizer": ("adam", "optimizer")}
    totals = {k: 0.0 for k in families}
    total = 0.0
    for event in prof.key_averages():
        total += event.self_cpu_time_total
        name = event.key.lower()
        for family, keys in families.items():
            if any(k in name for k in keys):
                totals[family] += event.self_cpu_time_total
                break
    shares = {k: v / total for k, v in totals.items()}
    shares["everything else"] = 1 - sum(shares.values())
    return {"step_seconds": seconds, "gflop_per_step": flops / 1e9, "achieved_gflops": flops / 1e9 / seconds,
            "time_shares": shares, "batch": TrainConfig().batch_size}


def autocast_speed(pipe: Pipeline, steps: int = 5, rounds: int = 3) -> Optional[dict]:
    """Training images/s of the teacher's and the student's step in FP32 and in bf16 autocast
    (``TrainConfig.cpu_autocast``), interleaved round by round in this process, on a CPU with
    bf16 units; None elsewhere (autocast stays off there)."""
    if not bf16_capable():
        return None
    out = {}
    batch = TrainConfig().batch_size
    for kind in ("teacher", "student"):
        steps_of = {"fp32": training_step(pipe, kind), "bf16": training_step(pipe, kind, bf16=True)}
        seconds: dict[str, list[float]] = {name: [] for name in steps_of}
        for one in steps_of.values():
            one()  # warm-up: oneDNN builds its kernels
        for _ in range(rounds):
            for name, one in steps_of.items():
                started = time.perf_counter()
                for _ in range(steps):
                    one()
                seconds[name].append((time.perf_counter() - started) / steps)
        speed = {name: batch / float(np.median(s)) for name, s in seconds.items()}
        out[kind] = {"images_per_second": speed, "bf16_speedup": speed["bf16"] / speed["fp32"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/training-speed")
    parser.add_argument("--teacher-epochs", type=int, default=PRESETS["default"].teacher_epochs)
    parser.add_argument("--student-epochs", type=int, default=PRESETS["default"].student_epochs)
    parser.add_argument("--preset", choices=["default", "quick"], default="default",
                        help="the data and network sizes ('quick': the tiny ones the tests use)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="what to measure: runs (whole trainings before / after), profile, autocast (bf16)")
    args = parser.parse_args()
    setup_logging()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        raise SystemExit(f"training_speed: --parts takes {', '.join(PARTS)}")

    out = Path(args.out)
    pipe = Pipeline(out, PRESETS[args.preset])
    pipe.make_data()
    runs: dict[str, dict] = {}
    if "runs" in parts:
        for kind, epochs in (("teacher", args.teacher_epochs), ("student", args.student_epochs)):
            for name, overrides in SETTINGS.items():  # before and after, one after the other
                runs[f"{kind} {name}"] = run_setting(pipe, name, kind, epochs, {**overrides, "model": pipe.cfg.model})
    peak = matmul_gflops()
    profiles = {kind: profile_steps(pipe, kind) for kind in ("teacher", "student")} if "profile" in parts else {}
    autocast = autocast_speed(pipe) if "autocast" in parts else None
    results = {
        "command": "python benchmarks/training_speed.py" + ("" if parts == set(PARTS) else f" --parts {args.parts}"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(),
        "versions": library_versions(),
        "matmul_gflops": peak,
        "settings": SETTINGS,
        "epochs": {"teacher": args.teacher_epochs, "student": args.student_epochs},
        "runs": runs,
        "speedup": {
            kind: runs[f"{kind} after"]["images_per_second"] / runs[f"{kind} before"]["images_per_second"]
            for kind in ("teacher", "student") if runs
        },
        "profile": profiles,
        "autocast": autocast,
    }
    (out / "training_speed.json").write_text(json.dumps(results, indent=1))
    if autocast:
        print("training images/s, FP32 -> bf16 autocast (steps interleaved): " + ", ".join(
            f"{k} {v['images_per_second']['fp32']:.1f} -> {v['images_per_second']['bf16']:.1f} "
            f"({v['bf16_speedup']:.2f}x)" for k, v in autocast.items()))
    elif "autocast" in parts:
        print("bf16 autocast not measured: this CPU has neither AVX512_BF16 nor AMX-BF16 (training stays FP32)")

    table = [["run", "images/s", "train s", "dev s/epoch", "stage s", "seen", "rare", "unseen", "grnd", "best dev"]]
    for key, r in runs.items():
        t = r["test"]
        table.append([key, f"{r['images_per_second']:.1f}", f"{r['train_seconds']:.0f}",
                      f"{r['eval_seconds_per_epoch']:.1f}", f"{r['stage_seconds']:.0f}", f"{t['seen']['verb']:.1f}",
                      f"{t['rare']['verb']:.1f}", f"{t['unseen']['verb']:.1f}", f"{t['all']['grnd_value']:.1f}",
                      f"{r['best_selection_score']:.2f}"])
    print(f"\nTraining speed on {results['device']['cpu']} ({' '.join(results['device']['cpu_features'])}), "
          f"{results['device'].get('usable_cores')} cores; test top-1 (%)")
    print(render_table(table, markdown=False, left=1))
    print("after / before, training images/s: " + ", ".join(f"{k} {v:.2f}x" for k, v in results["speedup"].items()))
    print(f"\nthis machine's FP32 matrix product: {peak:.0f} GFLOP/s")
    for kind, p in profiles.items():
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(p["time_shares"].items(), key=lambda kv: -kv[1]))
        print(
            f"{kind} step (batch {p['batch']}): {p['gflop_per_step']:.1f} GFLOP in {p['step_seconds'] * 1e3:.0f} ms = "
            f"{p['achieved_gflops']:.0f} GFLOP/s "
            f"({100 * p['achieved_gflops'] / peak:.0f}% of the matrix-product rate); "
            f"time: {shares}"
        )
    print(f"written: {out / 'training_speed.json'}")


if __name__ == "__main__":
    main()
