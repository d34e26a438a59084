"""Students that converge: training recipes against the 24-epoch recipe, over data draws.

    python benchmarks/convergence.py [--draws 0 1 2] [--methods none kd mipd] [--recipes NAME ...]
                                     [--workdir runs/unlabeled] [--results FILE] [--report]

The committed component ablation's students end 24 epochs with their noun loss still falling
and their gold-verb grounded value below the teacher's. Each recipe of ``RECIPES`` changes what
might hold them back (the learning rate, the warm-up, the noun loss's weight, the number of
epochs) and trains ``--methods`` on every draw of ``--draws`` beside that 24-epoch recipe. The draws are those of
``benchmarks/unlabeled.py`` (its ``--workdir``: SynthSitu generator seed N, the world, teacher
and rationales drawn anew), so its strict students are this benchmark's baseline and nothing is
trained twice. Every student trains at training seed 0. Runs are recipe by recipe, every draw
and method of one before the next, each a resumable pipeline stage; the results file (and its
plot) is rewritten after every run.

Results: ``rows`` -> ``<method>`` (the 24-epoch recipe) or ``<method> (<recipe>)`` ->
``seeds`` -> draw -> the metrics of ``mipd-edge eval`` per split; ``verdicts`` per recipe: the
change of grounded value and of verb top-1 against the 24-epoch recipe, per method as means
over the draws, and whether it is worth adopting (grounded value +2 or more for every method,
verb top-1 no lower).
"""

from __future__ import annotations

import argparse
import datetime
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from stream_smoothing import provenance

from mipd_edge.cli import setup_logging
from mipd_edge.files import read_json, write_json
from mipd_edge.pipeline import Pipeline, student_name
from mipd_edge.tables import render_table
from mipd_edge.train.config import LossWeights
from mipd_lab.components import RECIPE_24_EPOCHS, summarise, this_machine, training_history

log = logging.getLogger(__name__)

# recipe -> training config overrides; each changes one thing of the 24-epoch recipe
RECIPES: dict[str, dict[str, Any]] = {
    "lr-5e-4": {"lr": 5e-4},
    "lr-2e-3": {"lr": 2e-3},
    "noun-x2": {"loss": LossWeights(noun=2.0)},
    "warmup-2": {"warmup_epochs": 2.0},
    "epochs-48": {"epochs": 48},
}
METHODS = ("none", "kd", "mipd")
ADOPT_GAIN = 2.0  # grounded value points a recipe must add, for every method, to be adopted
ADOPT_DRAWS = 3  # data draws every method must have for a verdict of adoption


def row_name(method: str, recipe: str) -> str:
    return f"{method} ({recipe})" if recipe else method


def model_name(method: str, recipe: str) -> str:
    return f"{student_name(method)}-{recipe}" if recipe else student_name(method)


def metric(metrics: dict, split: str, setting: str, name: str) -> float:
    return metrics[split][setting][name]


def verdicts(rows: dict, recipes: Sequence[str], methods: Sequence[str] = METHODS,
             min_draws: int = ADOPT_DRAWS) -> dict:
    """Per recipe and method, the mean change over the draws both recipes have of grounded value
    (top-1 verb; and with the gold verb, the nouns and boxes alone) and of verb top-1. A recipe
    is adopted only with every one of ``methods`` on ``min_draws`` draws or more: fewer draws
    make a screen, not evidence."""
    out: dict[str, Any] = {}
    for recipe in recipes:
        changes: dict[str, Any] = {}
        for method in methods:
            empty = {"seeds": {}}
            base, new = rows.get(method, empty)["seeds"], rows.get(row_name(method, recipe), empty)["seeds"]
            draws = sorted(set(base) & set(new))
            if not draws:
                continue

            def change(setting: str, name: str, split: str = "all") -> float:
                return float(np.mean([metric(new[d], split, setting, name) - metric(base[d], split, setting, name)
                                      for d in draws]))
            changes[method] = {"draws": draws, "grnd_value": change("top1", "grnd_value"),
                               "gt_verb_grnd_value": change("gt_verb", "grnd_value"), "verb": change("top1", "verb")}
        if changes:
            out[recipe] = {"methods": changes, "adopt": len(changes) == len(methods) and all(
                len(c["draws"]) >= min_draws and c["grnd_value"] >= ADOPT_GAIN and c["verb"] >= 0
                for c in changes.values())}
    return out


def plot_convergence(results: dict, path: Path) -> None:
    """Dev gold-verb grounded value per epoch (nouns and boxes, the verb given), one panel per
    method: a line per recipe, averaged over the draws it trained (the legend says which)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in METHODS if m in results["training"]]
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False)
    for ax, method in zip(axes[0], methods):
        for i, recipe in enumerate([""] + list(RECIPES)):
            runs = results["training"].get(row_name(method, recipe), {})
            if not runs:
                continue
            curves = [[e["dev"]["gt_verb_grnd_value"] for e in history] for history in runs.values()]
            length = min(len(c) for c in curves)
            draws = f"{len(runs)} draws" if len(runs) > 1 else f"draw {next(iter(runs))}"
            ax.plot(range(1, length + 1), np.mean([c[:length] for c in curves], axis=0), color=f"C{i}",
                    linewidth=2.0 if not recipe else 1.2, label=f"{recipe or '24 epochs'} ({draws})")
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("dev grounded value, gold verb (%)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Students' nouns and boxes over training, by recipe (mean over data draws)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_verdicts(results: dict, markdown: bool = False) -> str:
    """Per recipe and method, the mean changes against the 24-epoch recipe and the verdict."""
    table = [["recipe", "method", "draws", "grnd-value", "gold-verb grnd-value", "verb top-1", "adopt"]]
    for recipe, v in results["verdicts"].items():
        for method, c in v["methods"].items():
            table.append([recipe, method, ",".join(c["draws"])]
                         + [f"{round(c[k], 1) + 0.0:+.1f}" for k in ("grnd_value", "gt_verb_grnd_value", "verb")]
                         + ["yes" if v["adopt"] else "no"])
    return render_table(table, markdown=markdown, left=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", nargs="+", type=int, default=[0, 1, 2], help="SynthSitu generator seeds")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--workdir", default="runs/unlabeled",
                        help="the draws' work folders (benchmarks/unlabeled.py's)")
    parser.add_argument("--results", default="benchmarks/results/convergence.json")
    parser.add_argument("--report", action="store_true", help="rewrite the results from the finished runs only")
    args = parser.parse_args()
    setup_logging()
    path = Path(args.results)
    old = read_json(path) if path.is_file() else {}
    made = provenance("convergence.py", datetime.datetime.now(datetime.timezone.utc))
    out: dict[str, Any] = {"provenance": old.get("provenance", made) if args.report else made,
                           "setup": {"draws": args.draws, "methods": args.methods, "recipes": {
                               r: {k: v if not isinstance(v, LossWeights) else vars(v) for k, v in RECIPES[r].items()}
                               for r in args.recipes}, "student_epochs": RECIPE_24_EPOCHS.student_epochs,
                               "seed_meaning": "SynthSitu generator seed (a data draw); students at training seed 0"},
                           "rows": {}, "machines": old.get("machines", {}), "training": {}}
    for recipe in [""] + args.recipes:
        for draw in args.draws:
            pipe = Pipeline(Path(args.workdir) / f"draw{draw}", replace(RECIPE_24_EPOCHS, seed=draw))
            for method in args.methods:
                name, row = model_name(method, recipe), row_name(method, recipe)
                if args.report and not pipe.evaluated(name):
                    continue
                log.info("convergence: draw %d, %s", draw, row)
                pipe.make_data()
                pipe.make_teacher()
                model = pipe.make_student(method, seed=0, overrides=RECIPES.get(recipe), name=name)
                out["rows"].setdefault(row, {"seeds": {}})["seeds"][str(draw)] = pipe.evaluate_model(model, name)
                out["machines"].setdefault(row, {}).setdefault(str(draw), this_machine())
                out["training"].setdefault(row, {})[str(draw)] = training_history(model)
                out["summary"] = summarise(out["rows"])
                out["verdicts"] = verdicts(out["rows"], args.recipes)
                write_json(path, out)
                plot_convergence(out, path.with_suffix(".png"))
    print(format_verdicts(out))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
