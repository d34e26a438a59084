"""The component ablation of MIPD: which part of it helps, over several training seeds.

Every row trains students on the same SynthSitu data with the same honest teacher and
rationales; only the students' training seed (batch order, initialisation, NMPA's prompts)
changes between seeds. The teacher row trains the teacher itself at each seed (students
always distil from the seed-0 teacher). Each run is a pipeline stage, so an interrupted
ablation resumes where it stopped, and the results file is rewritten after every run.

Results: ``{"setup": {...}, "rows": {ROW: {"seeds": {"0": M, ...}}}, "summary": {...},
"goals": {...}, "machines": {ROW: {"0": ...}}, "training": {ROW: {"0": [...]}}}``, M being
exactly what ``mipd-edge eval --splits`` writes. A long ablation runs over several sittings,
and the sittings' machines differ (training on another CPU's kernels is not bit-for-bit the
same run), so every run records the machine that trained it and its per-epoch history (run
folders do not outlive a machine; the results file does).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mipd_edge.errors import MipdEdgeError
from mipd_edge.files import read_json, write_json
from mipd_edge.pipeline import Pipeline, PipelineConfig, student_name, teacher_name
from mipd_edge.tables import render_table

from .variants import variant_overrides

log = logging.getLogger(__name__)

# the ablation's pipeline: 48 epochs, the recipe benchmarks/convergence.py adopted over three
# data draws (9 to 12 points of grounded value and 3 to 5 of verb top-1 above 24 epochs for
# none, kd and mipd alike)
ABLATION = PipelineConfig(student_epochs=48)
# the recipe before it: the committed component ablation's rows, the footage benchmark and the
# baseline the convergence benchmark measures recipes against were trained 24 epochs
RECIPE_24_EPOCHS = replace(ABLATION, student_epochs=24)

# row -> (method, mipd variant, what it measures); variants are variants.py's MIPD_VARIANTS
ROWS: dict[str, tuple[str, str, str]] = {
    "none": ("none", "full", "no distillation"),
    "kd": ("kd", "full", "plain KD: teacher global and region features, soft labels"),
    "glimpse-positive": ("mipd", "glimpse-positive",
                         "scene prompt aligned with positive glimpses only; scene knowledge"),
    "glimpse": ("mipd", "glimpse", "+ glimpse negatives"),
    "gaze-positive": ("mipd", "gaze-positive", "instance prompt aligned with positive gazes only; instance knowledge"),
    "gaze": ("mipd", "gaze", "+ gaze negatives"),
    "mipd": ("mipd", "full", "full MIPD (ours)"),
    "no-scene-prompt": ("mipd", "no-scene-prompt", "full MIPD, no context tokens in the scene prompt"),
    "no-instance-prompt": ("mipd", "no-instance-prompt", "full MIPD, no context tokens in the instance prompt"),
    "random-negatives": ("mipd", "random-negatives", "full MIPD, random instead of teacher-judged negatives"),
    "anchored": ("mipd", "anchored",
                 "full MIPD, knowledge anchored in the teacher's space (its features, corrected by the prompts)"),
    "with-teacher-features": ("mipd", "with-teacher-features", "full MIPD plus plain KD's feature terms"),
    "scene-head": ("mipd", "scene-head", "full MIPD, scene knowledge reached through a projection of the glance"),
    "teacher-glance": ("mipd", "teacher-glance",
                       "the glance from the teacher's feature (KD's terms), the roles from instance knowledge"),
    "gaze-on-nouns": ("mipd", "gaze-on-nouns", "full MIPD, instance knowledge pulling the noun embeddings directly"),
    "authors": ("mipd", "authors", "the authors' formulation (caicch/Ov-GSR)"),
    "authors-knowledge": ("mipd", "authors-knowledge", "the authors' knowledge and distillation, our GSR losses"),
    "teacher": ("teacher", "full", "the teacher itself (trained on its own sample, all verbs)"),
}
# the rows the goals compare run first, so that a partial ablation already answers them
PRIORITY = ("none", "kd", "mipd", "authors")
# (setting, metric) pairs summarised per split
SUMMARY_METRICS = (("top1", "verb"), ("top5", "verb"), ("top1", "value"), ("top1", "grnd_value"),
                   ("gt_verb", "grnd_value"))
SPLITS = ("all", "seen", "rare", "unseen")


def run_order(rows: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """Every (row, seed): the goal rows at every seed first, then the rest, seed by seed."""
    first = [r for r in PRIORITY if r in rows]
    rest = [r for r in rows if r not in first]
    return [(r, s) for group in (first, rest) for s in seeds for r in group]


def model_name(pipe: Pipeline, row: str, seed: int) -> str:
    """The pipeline's name of a row's model at a seed."""
    method, variant, _ = ROWS[row]
    return teacher_name(None if seed == pipe.cfg.seed else seed) if method == "teacher" else \
        student_name(method, variant, seed)


def train_and_evaluate(pipe: Pipeline, row: str, seed: int) -> tuple[Path, dict]:
    """The model folder and test metrics of one row at one seed (the pipeline reuses what
    earlier runs finished)."""
    method, variant, _ = ROWS[row]
    if method == "teacher":
        model = pipe.make_teacher(None if seed == pipe.cfg.seed else seed)
    else:
        model = pipe.make_student(method, seed, variant_overrides(variant), student_name(method, variant, seed))
    return model, pipe.evaluate_model(model, model.name)


def this_machine() -> dict:
    """What a run's numbers depend on beyond its configuration: the CPU's kernels and torch."""
    import torch

    from mipd_edge.machine import cpu_features, cpu_id, cpu_name

    return {"cpu": cpu_name(), "cpu_id": cpu_id(), "cpu_features": cpu_features(), "torch": torch.__version__}


# what each epoch's record keeps of the dev metrics: (setting, metric) over all dev images
HISTORY_METRICS = (("top1", "verb"), ("top1", "value"), ("top1", "grnd_value"), ("gt_verb", "value"),
                   ("gt_verb", "grnd_value"))


def training_history(model_dir: Path) -> list[dict]:
    """Per epoch: the losses, the selection score and the dev metrics that tell verbs, nouns and
    boxes apart (from the run's ``metrics.jsonl``)."""
    history = []
    for line in (model_dir / "metrics.jsonl").read_text().splitlines():
        epoch = json.loads(line)
        dev = epoch["dev"]["all"]
        history.append({"epoch": epoch["epoch"], "loss": round(epoch["loss"], 4),
                        "losses": {k: round(v, 4) for k, v in epoch["losses"].items()},
                        "selection_score": round(epoch["selection_score"], 3), "best": epoch["best"],
                        "dev": {f"{setting}_{metric}": round(dev[setting][metric], 3)
                                for setting, metric in HISTORY_METRICS if setting in dev}})
    return history


def run_components(pipe: Pipeline, rows: Sequence[str], seeds: Sequence[int], results: Path,
                   plot: Optional[Path] = None, provenance: Optional[Mapping[str, Any]] = None) -> dict:
    """Run the ablation, rewriting ``results`` (and ``plot``) after every run; ``provenance``
    (the command line, date, machine and libraries) is kept in the file as given."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise MipdEdgeError(f"unknown ablation rows {unknown}; known: {list(ROWS)}")
    pipe.make_data()
    pipe.make_teacher()
    out = {"setup": setup(pipe, rows, seeds), "rows": {r: {"seeds": {}} for r in rows}}
    if provenance is not None:
        out["provenance"] = dict(provenance)
    kept = kept_results(results, out["setup"], rows)
    out["rows"].update(kept["rows"])
    # the file's rows in the ablation's reading order, whichever a sitting ran
    out["rows"] = {r: out["rows"][r] for r in sorted(out["rows"], key=lambda r: list(ROWS).index(r) if r in ROWS
                                                     else len(ROWS))}
    out["machines"], out["training"] = kept["machines"], kept["training"]
    order = run_order(rows, seeds)
    # what earlier sittings finished first (reused from their stages, so the file has them at once)
    finished = [o for o in order if pipe.evaluated(model_name(pipe, *o))]
    for row, seed in finished + [o for o in order if o not in finished]:
        log.info("ablation: %s, seed %d", row, seed)
        model_dir, out["rows"][row]["seeds"][str(seed)] = train_and_evaluate(pipe, row, seed)
        # a run finished in this work folder earlier was trained here too, unless the file says otherwise
        if (row, seed) not in finished or str(seed) not in out["machines"].get(row, {}):
            out["machines"].setdefault(row, {})[str(seed)] = this_machine()
        out["training"].setdefault(row, {})[str(seed)] = training_history(model_dir)
        out["summary"] = summarise(out["rows"])
        out["goals"] = goals(out["rows"])
        write_json(results, out)
        if plot is not None:
            plot_components(out, plot)
    return out


def kept_results(results: Path, new_setup: Mapping[str, Any], rows: Sequence[str]) -> dict:
    """What an earlier results file measured on the same data with the same teacher and
    student settings: rows this run does not redo, and the seeds already measured of rows it
    does (each is replaced when this run reaches it, by its finished stage's numbers), so the
    file never loses a result while a long run works through its order; with each run's
    machine and training history (a file from before they were recorded: its setup's machine)."""
    kept: dict[str, dict] = {"rows": {}, "machines": {}, "training": {}}
    if not results.is_file():
        return kept
    old = read_json(results)
    same = ("data", "teacher_data", "teacher", "student", "student_epochs", "input_size")
    if any(old.get("setup", {}).get(k) != new_setup[k] for k in same):
        return kept
    for name in old["rows"]:
        if name not in rows and name in old["setup"].get("rows", {}):
            new_setup["rows"][name] = old["setup"]["rows"][name]
    kept["rows"] = {name: {**row, "seeds": dict(row["seeds"])} for name, row in old["rows"].items()}
    device = old["setup"].get("device", {})
    recorded = {k: device[k] for k in ("cpu", "cpu_features") if k in device}
    kept["machines"] = {name: {seed: old.get("machines", {}).get(name, {}).get(seed, recorded) for seed in row["seeds"]}
                        for name, row in old["rows"].items() if row["seeds"]}
    kept["training"] = {name: dict(seeds) for name, seeds in old.get("training", {}).items()}
    return kept


def setup(pipe: Pipeline, rows: Sequence[str], seeds: Sequence[int]) -> dict:
    from mipd_edge.machine import device_info

    c = pipe.cfg
    return {"data": pipe.data_params(), "teacher_data": pipe.teacher_data_params(),
            "teacher": {"epochs": c.teacher_epochs, "seed": c.seed, "trained_on": "teacher_data (disjoint images)"},
            "student": c.student, "student_epochs": c.student_epochs, "input_size": c.input_size,
            "seeds": list(seeds), "seed_meaning": "students' training seed; data, teacher and rationales fixed",
            "rows": {r: {"method": ROWS[r][0], "variant": ROWS[r][1], "what": ROWS[r][2]} for r in rows},
            "device": device_info(), "device_meaning": "the latest sitting's machine; each run's is in machines"}


def values(row: Mapping[str, Any], split: str, setting: str, metric: str) -> list[float]:
    return [m[split][setting][metric] for m in row["seeds"].values() if setting in m[split]]


def summarise(rows: Mapping[str, Mapping]) -> dict:
    """Per row, split and metric: mean, min and max over the seeds that have run."""
    out: dict[str, Any] = {}
    for name, row in rows.items():
        if not row["seeds"]:
            continue
        out[name] = {"seeds": len(row["seeds"])}
        for split in SPLITS:
            for setting, metric in SUMMARY_METRICS:
                v = values(row, split, setting, metric)
                if v:
                    out[name].setdefault(split, {})[f"{setting}_{metric}"] = {
                        "mean": float(np.mean(v)), "min": float(min(v)), "max": float(max(v))}
    return out


def goals(rows: Mapping[str, Mapping]) -> dict:
    """Issue 16's goals, where the rows they compare have run: full MIPD against none (means)
    and against kd (every MIPD seed above every kd seed)."""
    def mean(row: str, split: str, setting: str = "top1", metric: str = "verb") -> float:
        return float(np.mean(values(rows[row], split, setting, metric)))

    have = {r for r, row in rows.items() if row["seeds"]}
    out: dict[str, Any] = {}
    if {"mipd", "none"} <= have:
        gain = {s: mean("mipd", s) - mean("none", s) for s in ("unseen", "rare", "seen")}
        out["mipd_vs_none"] = {"gain_top1_verb": gain, "targets": {"unseen": 15.0, "rare": 5.0, "seen": -2.0},
                               "met": gain["unseen"] >= 15 and gain["rare"] >= 5 and gain["seen"] >= -2}
    if {"mipd", "kd"} <= have:
        above = {s: min(values(rows["mipd"], s, "top1", "verb")) > max(values(rows["kd"], s, "top1", "verb"))
                 for s in ("unseen", "rare")}
        grounded = mean("mipd", "all", metric="grnd_value") - mean("kd", "all", metric="grnd_value")
        out["mipd_vs_kd"] = {"every_seed_above_every_kd_seed": above, "grnd_value_gain": grounded,
                             "met": all(above.values()) and grounded >= 0}
    return out


def cell(summary: Mapping[str, Any], split: str, key: str) -> str:
    s = summary.get(split, {}).get(key)
    if s is None:
        return "-"
    return f"{s['mean']:.1f}" if s["min"] == s["max"] else f"{s['mean']:.1f} [{s['min']:.1f}, {s['max']:.1f}]"


def format_components(results: Mapping[str, Any], markdown: bool = False) -> str:
    """Mean [min, max] over seeds: verb top-1 and top-5 per split, value and grounded value."""
    columns = [(s, "top1_verb", f"{s} top-1") for s in ("seen", "rare", "unseen")] + \
              [(s, "top5_verb", f"{s} top-5") for s in ("seen", "rare", "unseen")] + \
              [("all", "top1_value", "value"), ("all", "top1_grnd_value", "grnd value")]
    table = [["row", "seeds"] + [c[2] for c in columns]]
    for name, summary in results["summary"].items():
        table.append([name, str(summary["seeds"])] + [cell(summary, s, k) for s, k, _ in columns])
    return render_table(table, markdown)


# (header, split, setting, metric) of the per-seed table; "gold verb" = the `gt_verb` setting,
# where roles are scored with the image's true verb, so nouns and boxes are read apart from verbs
SEED_COLUMNS = (("seen top-1", "seen", "top1", "verb"), ("rare top-1", "rare", "top1", "verb"),
                ("unseen top-1", "unseen", "top1", "verb"), ("value", "all", "top1", "value"),
                ("grnd value", "all", "top1", "grnd_value"), ("gold-verb value", "all", "gt_verb", "value"),
                ("gold-verb grnd value", "all", "gt_verb", "grnd_value"))


def machine_label(machine: Mapping[str, Any]) -> str:
    """A run's machine in a few words: its CPU (and family, where recorded) and widest vector instructions."""
    cpu = " ".join(w for w in machine.get("cpu", "?").replace("(R)", "").split() if w != "Processor")
    family = (machine.get("cpu_id") or {}).get("family")
    features = machine.get("cpu_features", [])
    vector = "AVX-512" if any(f.startswith("avx512") for f in features) else "AVX2" if "avx2" in features else ""
    return f"{cpu}{f' family {family}' if family is not None else ''} {vector}".strip()


def format_seeds(results: Mapping[str, Any], markdown: bool = False) -> str:
    """Every seed of every row on its own line, with the machine that trained it: what the means
    hide (one weak seed), and the gold-verb columns that tell a noun or box problem from a verb one."""
    table = [["row", "seed"] + [c[0] for c in SEED_COLUMNS] + ["machine"]]
    machines = results.get("machines", {})
    for name, row in results["rows"].items():
        for seed, m in sorted(row["seeds"].items()):
            machine = machines.get(name, {}).get(seed)
            table.append([name, seed] + [f"{m[split][setting][metric]:.1f}" if setting in m[split] else "-"
                                         for _, split, setting, metric in SEED_COLUMNS]
                         + [machine_label(machine) if machine else "-"])
    return render_table(table, markdown)


def plot_components(results: Mapping[str, Any], path: Path) -> Optional[Path]:
    """One bar group per row (seen / rare / unseen verb top-1, grounded value), error bars =
    the range over seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("plot skipped: matplotlib is not installed (pip install matplotlib)")
        return None
    summary = results["summary"]
    names = list(summary)
    bars = [("seen", "top1_verb", "seen verb top-1"), ("rare", "top1_verb", "rare verb top-1"),
            ("unseen", "top1_verb", "unseen verb top-1"), ("all", "top1_grnd_value", "grounded value (all)")]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names) + 2), 4.5))
    width = 0.8 / len(bars)
    for j, (split, key, label) in enumerate(bars):
        stats = [summary[n].get(split, {}).get(key, {"mean": np.nan, "min": np.nan, "max": np.nan}) for n in names]
        mean = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["min"] for s in stats], [s["max"] - s["mean"] for s in stats]])
        ax.bar(np.arange(len(names)) + (j - (len(bars) - 1) / 2) * width, mean, width, yerr=err, capsize=2,
               label=label, color=f"C{j}")
    seeds = [summary[n]["seeds"] for n in names]
    ax.set_xticks(np.arange(len(names)), [f"{n}\n({k} seed{'' if k == 1 else 's'})" for n, k in zip(names, seeds)],
                  fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("% (SynthSitu test)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    ax.set_title("MIPD component ablation: mean over seeds, error bars = min to max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
