"""Distillation on unlabeled footage (``mipd-edge distill --unlabeled``) on SynthSitu, over data draws.

    python benchmarks/unlabeled.py [--draws 0 1 2] [--pool 2000] [--pool-sizes 500 8000]
                                   [--variant-draws 0 1 2] [--variants NAME ...] [--workdir runs/unlabeled]
                                   [--results FILE] [--report]

Per data draw N (``WORKDIR/drawN``: SynthSitu generator seed N, so the world's images, the
verb split, the teacher's own sample (seed N + 1000), its rationales and the footage (seed
N + 2000, a generator stream of its own) are all drawn anew): the teacher, then students mipd,
kd and none under the strict open-vocabulary protocol and each with ``--pool`` unlabeled
images beside (rows ``<method>+unlabeled``); once every draw has those, on ``--variant-draws``
what else was tried (``VARIANTS``: no soft labels on the unlabeled images; the glance through a
projection head instead of meeting the teacher's feature directly), then ``mipd+unlabeled`` at
each of ``--pool-sizes``. Every student trains at training seed 0 for 24 epochs, as in the
committed component ablation. Each run is a pipeline stage: a rerun reuses what finished and
resumes an interrupted student from its last checkpoint; the results file (and its plot) is
rewritten after every run, so a partial run is readable; ``--report`` rewrites them from what
finished.

Results: the component ablation's shape, ``rows`` -> row -> ``seeds`` -> draw -> the metrics of
``mipd-edge eval`` per split (here a "seed" is a data draw), with ``teacher`` per draw;
``pool_sizes`` -> method -> pool size -> draw -> the same metrics; ``variants`` like ``rows``;
``cost`` per draw (the teacher's features per 1,000 images, labeled images/s in training with and
without footage); ``goals`` as means over the draws; each run's machine and training history.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from stream_smoothing import provenance

from mipd_edge.cli import setup_logging
from mipd_edge.context import RunContext
from mipd_edge.files import read_json, write_json
from mipd_edge.pipeline import FOOTAGE_SEED_OFFSET, Pipeline, student_name
from mipd_lab.components import (
    RECIPE_24_EPOCHS,
    format_components,
    format_seeds,
    summarise,
    this_machine,
    training_history,
)

log = logging.getLogger(__name__)

METHODS = ("mipd", "kd", "none")  # in the order they train
CURVE_METHOD = "mipd"  # the method measured at every pool size


# what else was tried, on the draws --variant-draws names: name -> (methods, training config overrides)
VARIANTS = {"no-soft": (("kd", "mipd"), {"unlabeled_soft": False}),
            "glance-head": ((CURVE_METHOD,), {"unlabeled_glance": "head"})}


def row_name(method: str, pool: int) -> str:
    return method if pool == 0 else f"{method}+unlabeled"


def model_name(method: str, pool: int, variant: str = "") -> str:
    name = student_name(method) if pool == 0 else f"student-{method}-unlabeled{pool}"
    return f"{name}-{variant}" if variant else name


def phases(methods: Sequence[str], pool: int, pool_sizes: Sequence[int],
           variants: Sequence[str] = tuple(VARIANTS)) -> list[list[tuple[str, int, str]]]:
    """What trains, as (method, pool size, variant), phase by phase, each phase over every draw
    before the next: each method strict and with the main pool side by side (the goals' rows, so
    that every draw has them first), the variants (which may change the recipe the curve is
    measured with), then the pool-size curve."""
    return [[(m, n, "") for m in methods for n in (0, pool)],
            [(m, pool, v) for v in variants for m in VARIANTS[v][0]],
            [(CURVE_METHOD, n, "") for n in pool_sizes if n != pool]]


def unseen_top1(metrics: dict) -> float:
    return metrics["unseen"]["top1"]["verb"]


def goals(rows: dict, pool: int) -> dict:
    """The issue's goals as means over the draws: unlabeled images lift a method's unseen top-1
    by at least 10 points, a student keeps at least 60% of its teacher's unseen top-1, and seen
    top-1 falls by at most a point."""
    def mean(row: str, split: str) -> float:
        return float(np.mean([m[split]["top1"]["verb"] for m in rows[row]["seeds"].values()]))

    out: dict[str, Any] = {}
    for method in METHODS:
        strict, more = rows.get(method, {"seeds": {}}), rows.get(row_name(method, pool), {"seeds": {}})
        draws = sorted(set(strict["seeds"]) & set(more["seeds"]))
        if not draws:
            continue
        gain = float(np.mean([unseen_top1(more["seeds"][d]) - unseen_top1(strict["seeds"][d]) for d in draws]))
        seen = float(np.mean([more["seeds"][d]["seen"]["top1"]["verb"] - strict["seeds"][d]["seen"]["top1"]["verb"]
                              for d in draws]))
        out[row_name(method, pool)] = {"draws": draws, "unseen_gain": gain, "seen_change": seen,
                                       "met": gain >= 10 and seen >= -1}
    if "teacher" in rows and rows["teacher"]["seeds"]:
        teacher = mean("teacher", "unseen")
        kept = {row: mean(row, "unseen") / teacher for row in rows if row != "teacher" and rows[row]["seeds"]}
        out["share_of_teacher_unseen"] = {"teacher_unseen_top1": teacher, "rows": kept,
                                          "met": any(v >= 0.6 for v in kept.values())}
    return out


def cost(model: Path, cache: Path) -> dict[str, float]:
    """What a student's unlabeled images cost: the teacher's features per 1,000 (from the pool's
    cache) and the labeled images/s of its training epochs."""
    info = read_json(model / "config.json")
    meta = read_json(cache / "teacher" / info["unlabeled"]["teacher_cache"] / "meta.json")
    computed = meta["computed"]
    return {"teacher_seconds_per_1000": 1000 * computed["seconds"] / computed["images"],
            "unlabeled_images_per_second": images_per_second(model)}


def images_per_second(model: Path) -> float:
    """The labeled images/s of a student's training epochs, on average."""
    epochs = [json.loads(line) for line in (model / "metrics.jsonl").read_text().splitlines()]
    return float(np.mean([epoch["images_per_second"] for epoch in epochs]))


class Results:
    """The results file, rewritten (with its plot) after every run; runs finished before are
    recorded again from their stages, so the file always matches the work folder."""

    def __init__(self, path: Path, setup: dict, pool: int, report: bool = False):
        """``report``: the file is rewritten from finished runs, and keeps the provenance of the
        sitting that trained them."""
        self.path, self.pool = path, pool
        old = read_json(path) if path.is_file() else {}
        started = datetime.datetime.now(datetime.timezone.utc)
        made = old["provenance"] if report and "provenance" in old else provenance("unlabeled.py", started)
        self.out: dict[str, Any] = {"provenance": made, "setup": setup, "rows": {},
                                    "pool_sizes": {CURVE_METHOD: {}}, "cost": {}, "variants": {},
                                    "machines": old.get("machines", {}), "training": {}}

    def add(self, draw: int, run: tuple[str, int, str], model: Path, metrics: dict) -> None:
        """Record one finished run of a draw: ``run`` is (method, pool size, variant); the teacher is
        ("teacher", 0, "")."""
        (method, pool, variant), out, d = run, self.out, str(draw)
        if variant:
            key = f"{row_name(method, pool)} ({variant})"
            out["variants"].setdefault(key, {"seeds": {}})["seeds"][d] = metrics
        elif method == "teacher" or pool in (0, self.pool):
            key = "teacher" if method == "teacher" else row_name(method, pool)
            out["rows"].setdefault(key, {"seeds": {}})["seeds"][d] = metrics
        else:
            key = f"{row_name(method, pool)}-{pool}"
        if method == CURVE_METHOD and not variant:
            out["pool_sizes"][CURVE_METHOD].setdefault(str(pool), {})[d] = metrics
            draw_cost = out["cost"].setdefault(d, {})
            if pool == 0:
                draw_cost["strict_images_per_second"] = images_per_second(model)
            elif pool == self.pool:
                draw_cost.update(cost(model, RunContext().cache))
        out["machines"].setdefault(key, {}).setdefault(d, this_machine())
        if method != "teacher":
            out["training"].setdefault(key, {})[d] = training_history(model)
        out["summary"] = summarise(out["rows"])
        out["goals"] = goals(out["rows"], self.pool)
        write_json(self.path, out)
        plot_footage(out, self.path.with_suffix(".png"))


def plot_footage(results: dict, path: Path) -> None:
    """Left: seen and unseen top-1 of each method, strict and with footage (bars: mean over the
    draws, ticks: each draw). Right: unseen top-1 against the number of unlabeled images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, pool = results["rows"], results["setup"]["pool"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    methods = [m for m in ("none", "kd", "mipd") if m in rows]
    bars = [(split, more) for split in ("seen", "unseen") for more in (False, True)]
    width = 0.8 / len(bars)
    for j, (split, more) in enumerate(bars):
        x = np.arange(len(methods)) + (j - (len(bars) - 1) / 2) * width
        draws = [[m[split]["top1"]["verb"] for m in rows.get(row_name(name, pool if more else 0),
                                                                 {"seeds": {}})["seeds"].values()] for name in methods]
        label = f"{split}, {'+ ' + format(pool, ',') + ' unlabeled' if more else 'strict'}"
        left.bar(x, [np.mean(v) if v else np.nan for v in draws], width, label=label,
                 color=f"C{0 if split == 'seen' else 1}", alpha=1.0 if more else 0.45)
        for xi, v in zip(x, draws):
            left.plot([xi] * len(v), v, "k_", markersize=6)
    if "teacher" in rows:
        left.axhline(np.mean([m["unseen"]["top1"]["verb"] for m in rows["teacher"]["seeds"].values()]),
                     color="C1", linestyle=":", label="teacher, unseen")
    left.set_xticks(np.arange(len(methods)), methods)
    left.set_ylabel("verb top-1, SynthSitu test (%)")
    left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    left.grid(True, axis="y", alpha=0.3)
    curve = results["pool_sizes"][CURVE_METHOD]
    for draw in sorted({d for sizes in curve.values() for d in sizes}):
        points = sorted((int(n), m[draw]["unseen"]["top1"]["verb"]) for n, m in curve.items() if draw in m)
        right.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"draw {draw}")
    sizes = sorted(int(n) for n in curve)
    right.set_xscale("symlog", linthresh=500)
    right.set_xticks(sizes, [format(n, ",") for n in sizes])
    right.minorticks_off()
    right.set_xlabel("unlabeled images")
    right.set_ylabel(f"{CURVE_METHOD}: unseen verb top-1 (%)")
    right.legend(fontsize=8)
    right.grid(True, alpha=0.3)
    fig.suptitle("Distillation with unlabeled footage of the deployment domain", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_draw(pipe: Pipeline, plan: Sequence[tuple[str, int, str]], results: Results, train: bool = True) -> None:
    """One data draw: its data, teacher and every student of ``plan``, each recorded as it
    finishes; without ``train``, only the runs that finished before are recorded."""
    draw = pipe.cfg.seed
    if train or pipe.evaluated("teacher"):
        pipe.make_data()
        teacher = pipe.make_teacher()
        results.add(draw, ("teacher", 0, ""), teacher, pipe.evaluate_model(teacher, "teacher"))
    for method, pool, variant in plan:
        name = model_name(method, pool, variant)
        if not train and not pipe.evaluated(name):
            continue
        log.info("unlabeled: draw %d, %s with %d unlabeled images %s", draw, method, pool, variant)
        overrides = VARIANTS[variant][1] if variant else None
        model = pipe.make_student(method, seed=0, overrides=overrides, name=name, unlabeled=pool)
        results.add(draw, (method, pool, variant), model, pipe.evaluate_model(model, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", nargs="+", type=int, default=[0, 1, 2], help="SynthSitu generator seeds")
    parser.add_argument("--pool", type=int, default=2000, help="unlabeled images of the <method>+unlabeled rows")
    parser.add_argument("--pool-sizes", nargs="*", type=int, default=[500, 8000],
                        help=f"more pool sizes, for {CURVE_METHOD}+unlabeled (none: no curve)")
    parser.add_argument("--workdir", default="runs/unlabeled")
    parser.add_argument("--variant-draws", nargs="*", type=int, default=[0, 1, 2],
                        help=f"draws that also train the variants ({', '.join(VARIANTS)})")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which variants train (none: no variant)")
    parser.add_argument("--results", default="benchmarks/results/unlabeled-footage.json")
    parser.add_argument("--report", action="store_true",
                        help="rewrite the results from the finished runs, training nothing")
    args = parser.parse_args()
    setup_logging()
    setup = {"draws": args.draws, "seed_meaning": "SynthSitu generator seed (a data draw); students at training seed 0",
             "pool": args.pool, "pool_sizes": sorted({0, args.pool, *args.pool_sizes}),
             "footage_seed": f"draw + {FOOTAGE_SEED_OFFSET}", "student_epochs": RECIPE_24_EPOCHS.student_epochs,
             "teacher_epochs": RECIPE_24_EPOCHS.teacher_epochs, "input_size": RECIPE_24_EPOCHS.input_size,
             "data": {k: getattr(RECIPE_24_EPOCHS, k) for k in ("train", "dev", "test", "image_size")}}
    results = Results(Path(args.results), setup, args.pool, report=args.report)
    main_rows, variants, curve = phases(METHODS, args.pool, args.pool_sizes, args.variants)
    for plan, draws in ((main_rows, args.draws), (variants, args.variant_draws), (curve, args.draws)):
        for draw in draws:
            pipe = Pipeline(Path(args.workdir) / f"draw{draw}", replace(RECIPE_24_EPOCHS, seed=draw))
            run_draw(pipe, plan, results, train=not args.report)
    print("\nUnlabeled footage on SynthSitu test (mean [min, max] over data draws)")
    print(format_components(results.out))
    print("\nEvery draw")
    print(format_seeds(results.out))
    print(json.dumps(results.out["goals"], indent=1))
    print(f"written: {args.results}")


if __name__ == "__main__":
    main()
