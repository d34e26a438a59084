"""The documentation's generated parts: tables read from the code's registries and from the
committed result files, so that the README and the docs cannot say something the code or a
measurement does not.

A part sits in a Markdown file between ``<!-- generated: NAME -->`` and ``<!-- /generated -->``.
``python docs/generated.py`` rewrites every part in place; ``tests/test_docs.py`` fails when a
part differs from what this module makes of the files as they are committed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from convergence import METHODS, format_verdicts  # noqa: E402

from mipd_edge.benchmark_report import format_results  # noqa: E402
from mipd_edge.deploy.backends import BACKENDS  # noqa: E402
from mipd_edge.machine import describe_machine  # noqa: E402
from mipd_edge.tables import render_table  # noqa: E402
from mipd_lab.components import format_components, format_seeds  # noqa: E402

PART = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)
# the Markdown files that hold generated parts
FILES = ("README.md", "docs/*.md", "docs/results/*.md")
QUICKSTART = "quickstart-xeon-amx.json"
QUICKSTART_ZEN5 = "quickstart-epyc-zen5.json"  # the same run on the AMD EPYCs with AVX-512
QUICKSTART_ZEN4 = "quickstart-epyc-zen4.json"
INT8_RECIPE = "int8-recipe-epyc-avx512.json"
CALIBRATION = "calibration-size-epyc-avx512.json"
BF16_TRAINING = "bf16-training-epyc-avx512.json"
TRAINING_BF16_SPEED = "training-speed-bf16-epyc-avx512.json"
SERVE_LOAD = "serve-load-epyc-avx512.json"
RAY_AUTOSCALE = "ray-autoscale-epyc-avx512.json"
STREAM_SMOOTHING = "stream-smoothing-epyc-avx512.json"
MULTI_STREAM = "multi-stream-epyc-avx512.json"
HOI_TRACKS = "hoi-tracks-xeon-amx.json"
FOOTAGE = "unlabeled-footage.json"
CONVERGENCE = "convergence.json"
ABLATION_24 = "ablation-components-24-epochs.json"  # every component row, students trained 24 epochs
GOAL_ROWS = "ablation-components-48-epochs.json"  # none, kd, mipd and the teacher, at the adopted 48 epochs
HOI_RECIPE = "hoi-int8-recipe-epyc-avx512.json"

PRECISION_NAMES = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8", "bf16": "BF16"}
MODEL_NAMES = {"prior": "frequency prior (ignores the image)", "teacher": "teacher (its own sample, all verbs)",
               "none": "student, no distillation", "kd": "student, plain KD", "mipd": "student, MIPD"}


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def provenance(name: str) -> str:
    """Where, when, with what and by which command a results file was measured."""
    data = load(name)
    meta = data.get("provenance", {})
    machine = data.get("machine") or data.get("device") or meta.get("machine")
    versions = {**data.get("versions", {}), **meta.get("versions", {})}
    lines = [f"- **Measured**: {data.get('date', meta.get('date', 'not recorded'))}",
             f"- **Machine**: {describe_machine(machine) if isinstance(machine, dict) else machine}",
             "- **Libraries**: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"),
             f"- **Command**: `{data.get('command', meta.get('command'))}`",
             f"- **Results file**: `benchmarks/results/{name}`"]
    return "\n".join(lines)


def backends() -> str:
    """Which backend runs which precision on which device, and the extra that installs it."""
    devices = list(dict.fromkeys(kind for b in BACKENDS.values() for kind in b.devices))
    table = [["backend", "install"] + devices]
    for b in BACKENDS.values():
        table.append([f"`{b.name}`", f"`mipd-edge[{b.extra}]`"]
                     + [", ".join(PRECISION_NAMES.get(p, p) for p in b.devices.get(kind, ())) or "-"
                        for kind in devices])
    return render_table(table, markdown=True, left=2)


def quickstart_row(metrics: Mapping[str, Any]) -> list[str]:
    return [f"{metrics[s]['top1']['verb']:.1f}" for s in ("seen", "rare", "unseen")] + [
        f"{metrics['unseen']['top5']['verb']:.1f}", f"{metrics['all']['top1']['grnd_value']:.1f}"]


def benchmark_row(benchmark: Mapping[str, Any], backend: str, precision: str, batch: int = 1) -> dict[str, Any]:
    return next(r for r in benchmark["rows"] if (r["backend"], r["precision"], r["batch"], r["model"], r["status"])
                == (backend, precision, batch, "student", "ok"))


def quickstart_accuracy() -> str:
    """The quickstart's models on SynthSitu test, and its MIPD student's INT8 bundle on OpenVINO."""
    run = load(QUICKSTART)
    table = [["model", "seen verb", "rare verb", "unseen verb", "unseen verb@5", "grnd-value"]]
    for key in ("prior", "teacher", "none", "kd", "mipd"):
        table.append([MODEL_NAMES[key]] + quickstart_row(run["accuracy"][key]))
    int8 = benchmark_row(run["benchmark"], "openvino", "int8")
    table.append(["student, MIPD, INT8 bundle (OpenVINO)"] + quickstart_row(int8["metrics"]))
    return render_table(table, markdown=True)


def quickstart_speed(name: str = QUICKSTART) -> str:
    """Batch-1 latency of the quickstart's MIPD student per backend and precision (raw inference,
    the whole Predictor call and what the call adds), with its accuracy."""
    bench = load(name)["benchmark"]
    table = [["backend", "precision", "p50 ms", "Predictor ms", "Predictor +", "MB", "verb top-1", "grnd-value",
              "vs PyTorch"]]
    for r in bench["rows"]:
        if r["batch"] != 1 or r["model"] != "student" or r["status"] != "ok":
            continue
        m = r["metrics"]["all"]["top1"] if r.get("metrics") else None
        raw, whole = r["latency_ms"]["p50"], r["predictor_ms"]["p50"]
        table.append([r["backend"], r["precision"] + (f" ({r['variant']})" if r.get("variant") else ""),
                      f"{raw:.2f}", f"{whole:.2f}", f"{100 * (whole / raw - 1):.1f}%", f"{r['size_mb']:.1f}",
                      f"{m['verb']:.1f}" if m else "-", f"{m['grnd_value']:.1f}" if m else "-",
                      f"{r['speedup_vs_torch_fp32']:.2f}x"])
    return render_table(table, markdown=True, left=2)


def quickstart_headline(name: str = QUICKSTART) -> str:
    run = load(name)
    summary, minutes = run["benchmark"]["summary"], run["seconds"] / 60
    auto = {Path(k).name: v for k, v in summary.get("auto", {}).items()}.get("bundle-int8")
    lines = [f"The run took **{int(minutes)} min {round(run['seconds'] - 60 * int(minutes))} s** from an empty "
             f"cache on {describe_machine(run['machine'])} ({run['date'][:10]}, `{run['command']}`)."]
    if "openvino_int8_speedup_vs_torch_fp32" in summary:
        lines.append(f"OpenVINO INT8 answers **{summary['openvino_int8_speedup_vs_torch_fp32']:.2f}x** faster than "
                     f"PyTorch eager FP32 at batch 1; the whole `Predictor` call adds "
                     f"{100 * summary['openvino_int8_predictor_overhead']:.1f}% to raw inference.")
    if auto:
        lines.append(f"On this machine `auto` picks **{auto['picked']}** for `bundle-int8`.")
    return "\n".join(lines)


def quickstart_recipe() -> str:
    """How the quickstart's INT8 graphs were made, from its bundle's record (older runs: PTQ)."""
    recipe = load(QUICKSTART).get("int8_recipe")
    return f"the default recipe chose {recipe['method'].upper()}" if recipe else "PTQ"


def int8_evidence() -> str:
    """What INT8 cost and bought in the committed runs: the quickstart's bundle and its gate, the
    default recipe over data draws, calibration size, PTQ against QAT on HOI students, accuracy
    control on test, and each graph's INT8 speed."""
    bench = load(QUICKSTART)["benchmark"]
    summary, lines = bench["summary"], []
    test = [f"{d['verb']:+.1f} verb top-1 and {d['grnd_value']:+.1f} grounded value on {name}"
            for name, d in (("OpenVINO", summary.get("openvino_int8_minus_fp32_top1")),
                            ("ONNX Runtime", summary.get("onnxruntime_int8_minus_fp32_top1"))) if d]
    auto = {Path(k).name: v for k, v in bench.get("auto", {}).items()}.get("bundle-int8", {})
    gate = auto.get("left_out", {}).get("openvino int8", "")
    verdict = (f"its dev gate left INT8 out ({gate.removeprefix('INT8 left out: ')}), so `auto` runs "
               f"{auto.get('backend')} {auto.get('precision')}" if gate.startswith("INT8 left out")
               else f"it passed its dev gate, and `auto` picks {auto.get('backend')} {auto.get('precision')}")
    lines.append(f"- **The quickstart's MIPD student** ({quickstart_recipe()}): INT8 - FP32 on test is "
                 f"{' and '.join(test)}; {verdict} on the quickstart's machine.")
    data = load(INT8_RECIPE)
    runs = data["seeds"].values()
    worst = min(r["test"][f"{b} int8 - fp32"][k] for r in runs for b in ("openvino", "onnxruntime")
                for k in ("verb", "grnd_value"))
    chosen = [r["recipe"]["method"] for r in runs]
    lines.append(f"- **The default recipe over {len(chosen)} data draws**: PTQ at {chosen.count('ptq')}, QAT at "
                 f"{chosen.count('qat')} (where PTQ lost more than the gate on dev); INT8 - FP32 on test is "
                 f"{worst:+.2f} points at worst (verb top-1 or grounded value, either runtime), and the dev gate's "
                 f"verdict agreed with test at {data['summary']['gate_agrees_with_test']} of {len(chosen)}.")
    curve = {int(n): v["worst_loss"] for n, v in load(CALIBRATION)["summary"].items()}
    sizes = sorted(curve)
    enough = next(n for n in sizes if all(curve[m] <= 1.0 for m in sizes if m >= n))
    lines.append(f"- **Calibration images**: from {enough} on, INT8 loses at most "
                 f"{max(curve[m] for m in sizes if m >= enough):.2f} points on test over the draws; with {sizes[0]}, "
                 f"up to {curve[sizes[0]]:.2f}.")
    hoi = load(HOI_RECIPE)["int8"]["mipd"]["auto"]
    recipe, gate = hoi["quantization"]["recipe"], hoi["gate"]
    tried = ", ".join(f"{m.upper()} {-max(v.values()):+.2f}" for m, v in recipe["tried"].items() if "failed" not in v)
    test = {b: hoi[f"{b} int8 - fp32"]["full"] for b in ("openvino", "onnxruntime")}
    low, high = gate["gate"]["ci95"]["int8"]["full"]
    passes = -high <= hoi["quantization"]["accuracy_gate"]  # the gate decides on the interval's better end
    agrees = passes == (-test[gate["backend"]] <= hoi["quantization"]["accuracy_gate"])
    lines.append(f"- **The default recipe on an HOI student** (MIPD, unseen-verb split): dev mAP on "
                 f"{gate['gate']['images']} held-out images, INT8 - FP32: {tried}; it kept "
                 f"{recipe['method'].upper()}, whose interval [{low:+.2f}, {high:+.2f}] "
                 f"{'passes' if passes else 'fails'} the gate. On test: "
                 f"{test['openvino']:+.2f} mAP on OpenVINO, {test['onnxruntime']:+.2f} on ONNX Runtime; the gate's "
                 f"verdict {'agreed' if agrees else 'disagreed'} with test.")
    int8 = load("hoi-ablation-unseen_verb.json")["int8"]
    worst = {recipe: min(q[f"{rt} int8 - fp32"]["full"] for recipes in int8.values() for r, q in recipes.items()
                         if r == recipe for rt in ("onnxruntime", "openvino"))
             for recipe in {r for recipes in int8.values() for r in recipes}}
    lines.append(f"- **HOI students** ({len(int8)} students, both runtimes, test mAP): the largest INT8 - FP32 loss is "
                 + ", ".join(f"{v:+.2f} with {k.upper()}" for k, v in sorted(worst.items())) + ".")
    control = load("hoi-int8-accuracy-control.json")
    lines.append(f"- **Accuracy control** (`--max-drop 1`) on an HOI student: "
                 f"{control['gate']['int8_minus_fp32_map']['full']:+.2f} mAP on the held-out images it fitted, "
                 f"{control['openvino int8 - fp32']['full']:+.2f} on test.")
    g = load("int8-graphs-epyc-avx2.json")["p50_ms"]
    lines.append(f"- **Per graph** on an AVX2-only CPU: ONNX Runtime's encoder takes "
                 f"{g['onnxruntime encoder fp32']:.2f} ms in FP32, {g['onnxruntime encoder int8 (NNCF Q/DQ)']:.2f} ms "
                 f"as NNCF's Q/DQ and {g['onnxruntime encoder int8 (ONNX Runtime static u8/s8)']:.2f} ms in its own "
                 f"static layout; the decoder {g['openvino decoder fp32']:.2f} ms FP32 against "
                 f"{g['openvino decoder int8 (NNCF)']:.2f} ms INT8 on OpenVINO, {g['onnxruntime decoder fp32']:.2f} "
                 f"against {g['onnxruntime decoder int8 (NNCF Q/DQ)']:.2f} ms on ONNX Runtime.")
    return "\n".join(lines)


def int8_recipe() -> str:
    """The default INT8 recipe per data draw: what it chose and why, the dev gate, and test."""
    data = load(INT8_RECIPE)
    table = [["seed", "recipe", "dev INT8 - FP32 (verb / grnd) [95% interval of verb]", "gate",
              "test OpenVINO", "test ONNX Runtime", "gate agrees with test"]]
    for seed, r in data["seeds"].items():
        dev, ci = r["gate"]["int8_minus_fp32"], (r["gate"]["ci95"] or {}).get("verb")
        recipe = r["recipe"]["method"].upper()
        ptq = r["recipe"].get("tried", {}).get("ptq", {})
        if recipe == "QAT":
            recipe += " (PTQ failed its check)" if "failed" in ptq else f" (PTQ lost {max(ptq.values()):.2f})"
        table.append([seed, recipe, f"{dev['verb']:+.2f} / {dev['grnd_value']:+.2f}"
                      + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""), "passes" if r["gate"]["passes"] else "fails"]
                     + ["{verb:+.2f} / {grnd_value:+.2f}".format(**r["test"][f"{b} int8 - fp32"])
                        for b in ("openvino", "onnxruntime")]
                     + ["yes" if r["gate_agrees_with_test"] else "no"])
    worst = max(-r["test"][f"{b} int8 - fp32"][k] for r in data["seeds"].values()
                for b in ("openvino", "onnxruntime") for k in ("verb", "grnd_value"))
    s = data["summary"]
    return (render_table(table, markdown=True, left=2) + f"\n\nOver {s['seeds']} data draws, INT8 loses at most "
            f"{worst:.2f} points on test (verb top-1 or grounded value, either runtime); the dev gate's verdict "
            f"agreed with test at {s['gate_agrees_with_test']} of {s['seeds']}.")


def calibration_size() -> str:
    """INT8 - FP32 on test against the number of calibration images, per data draw."""
    data = load(CALIBRATION)
    seeds = list(data["seeds"])
    table = [["calibration images", *(f"seed {s}: verb / grnd" for s in seeds), "worst loss"]]
    for size in data["sizes"]:
        deltas = [data["seeds"][s]["sizes"][str(size)]["int8_minus_fp32"] for s in seeds]
        table.append([str(size), *(f"{d['verb']:+.2f} / {d['grnd_value']:+.2f}" for d in deltas),
                      f"{data['summary'][str(size)]['worst_loss']:.2f}"])
    return render_table(table, markdown=True)


def bf16_training() -> str:
    """FP32 and bf16-autocast MIPD students per data draw, and whether bf16 stays in FP32's seed spread."""
    data = load(BF16_TRAINING)
    labels = list(data["verdict"])
    table = [["seed", "training", *labels]]
    for seed, r in data["seeds"].items():
        for name in ("fp32", "bf16"):
            table.append([seed, name, *(f"{r[name][k]:.1f}" for k in labels)])
    verdict = data["verdict"]
    table.append(["mean", "fp32", *(f"{verdict[k]['fp32_mean']:.1f} [{verdict[k]['fp32_range'][0]:.1f}, "
                                    f"{verdict[k]['fp32_range'][1]:.1f}]" for k in labels)])
    where = {k: "" if v["within_seed_spread"] else " (above)" if v["not_below"] else " (below)"
             for k, v in verdict.items()}
    table.append(["mean", "bf16", *(f"{verdict[k]['bf16_mean']:.1f}{where[k]}" for k in labels)])
    speed = load(TRAINING_BF16_SPEED)["autocast"]
    return (render_table(table, markdown=True, left=2) + "\n\nTraining images/s, FP32 against bf16 autocast "
            "(steps interleaved in one process): " + ", ".join(
                f"{k} {v['images_per_second']['fp32']:.1f} against {v['images_per_second']['bf16']:.1f} "
                f"({v['bf16_speedup']:.2f}x)" for k, v in speed.items()) + ".")


def bf16_speed() -> str:
    """Training images/s with and without bf16 autocast, from the training-speed benchmark."""
    data = load(TRAINING_BF16_SPEED)
    table = [["training step", "FP32 images/s", "bf16 images/s", "bf16 / FP32"]]
    for kind, v in data["autocast"].items():
        table.append([kind, f"{v['images_per_second']['fp32']:.1f}", f"{v['images_per_second']['bf16']:.1f}",
                      f"{v['bf16_speedup']:.2f}x"])
    return render_table(table, markdown=True) + f"\n\nMeasured on {describe_machine(data['device'])}."


def serve_load() -> str:
    """`mipd-edge serve` under concurrent clients, batched and not, beside the in-process Predictor."""
    data = load(SERVE_LOAD)
    table = [["mode", "clients", "requests/s", "p50 ms", "p99 ms"]]
    for mode, points in data["modes"].items():
        for clients, r in points.items():
            table.append([mode, clients, f"{r['throughput_rps']:.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"])
    s = data["summary"]
    return (render_table(table, markdown=True, left=1) + f"\n\nThe HTTP layer at one client: "
            f"{s['http_cost_p50_ms_at_1_client']:+.2f} ms at p50 over the in-process call; batching at 16 clients: "
            f"{s['batching_gain_at_16_clients']:.2f}x the throughput of `--max-batch 1`" + (
                f"; Ray Serve with {data['setup']['ray_replicas']} replicas at 16 clients: "
                f"{s['ray_serve_over_one_process_at_16_clients']:.2f}x the throughput of one process."
                if "ray_serve_over_one_process_at_16_clients" in s else "."))


def ray_autoscale() -> str:
    """Ray Serve's autoscaler adding a replica under load: requests/s and replicas per window."""
    data = load(RAY_AUTOSCALE)
    s = data["setup"]
    table = [["after s", "requests/s", "p50 ms", "replicas"]] + [
        [f"{w['t_s']:.0f}", f"{w['throughput_rps']:.1f}", f"{w['p50_ms']:.1f}", str(w["replicas"])]
        for w in data["windows"]]
    scaled = data["scaled_up_after_s"]
    return (render_table(table, markdown=True) + f"\n\n{s['clients']} clients against `--min-replicas "
            f"{s['min_replicas']} --max-replicas {s['max_replicas']}`: "
            + (f"the second replica was running after {scaled:.0f} s of load." if scaled is not None
               else "no replica was added while the load ran."))


def stream_smoothing() -> str:
    """Verb changes and top-1 on SynthSitu clips, each frame's answer against the smoothers, every seed."""
    data = load(STREAM_SMOOTHING)
    table = [["method", "seed", "changes / 100 frames", "top-1 %", "max extra delay (frames)"]]
    for method, mean in data["summary"].items():
        for seed, runs in data["per_seed"].items():
            r = runs[method]
            table.append([method, seed, f"{r['changes_per_100']:.1f}", f"{r['top1']:.1f}",
                          str(max(r["extra_delays"], default="-"))])
        table.append([method, "mean", f"{mean['changes_per_100']:.1f}", f"{mean['top1']:.1f}",
                      str(mean["max_extra_delay"])])
    s = data["setup"]
    return (render_table(table, markdown=True, left=2) + f"\n\n{len(s['seeds'])} data draws, each a clip of "
            f"{s['segments']} segments of {s['frames_per_segment']} frames ({s['frames_per_segment'] / s['fps']:.0f} s "
            f"at {s['fps']} fps).")


def hoi_tracks() -> str:
    """Interactions followed across SynthSitu-HOI clips: their ids and verbs, per smoothing method, every seed."""
    data = load(HOI_TRACKS)
    table = [["method", "seed", "verb changes / 100 track frames", "verb right %", "ids per gold pair",
              "gold pairs followed %", "their frames followed %"]]
    for method, mean in data["summary"].items():
        for seed, row in [*((s, runs[method]) for s, runs in data["per_seed"].items()), ("mean", mean)]:
            table.append([method, seed, f"{row['changes_per_100']:.1f}", f"{row['verb_right']:.1f}",
                          "-" if row["ids_per_pair"] is None else f"{row['ids_per_pair']:.2f}",
                          f"{row['pairs_followed']:.0f}", f"{row['frames_followed']:.0f}"])
    s = data["setup"]
    return (render_table(table, markdown=True, left=2) + f"\n\n{len(s['seeds'])} data draws, each a clip of "
            f"{s['segments']} scenes of {s['frames_per_segment']} frames ({s['frames_per_segment'] / s['fps']:.0f} s "
            f"at {s['fps']} fps); the student: {s['student']}.")


DRAW_COLUMNS = ["seen verb", "rare verb", "unseen verb", "grnd-value", "gold-verb grnd-value"]
# (split, setting, metric) of each of DRAW_COLUMNS: test top-1 per split, grounded value with the
# top-1 verb and with the gold verb
DRAW_METRICS = (("seen", "top1", "verb"), ("rare", "top1", "verb"), ("unseen", "top1", "verb"),
                ("all", "top1", "grnd_value"), ("all", "gt_verb", "grnd_value"))


def draw_cells(metrics: Mapping[str, Any]) -> list[str]:
    """One student on one data draw, as ``DRAW_COLUMNS``."""
    return [f"{metrics[split][setting][metric]:.1f}" for split, setting, metric in DRAW_METRICS]


def footage_label(name: str, pool: int) -> str:
    """A row of the footage results as the docs name it: ``teacher``, `method`, `method` + N unlabeled."""
    method, _, more = name.partition("+")
    return "teacher" if name == "teacher" else f"`{method}`" + (f" + {pool:,} unlabeled" if more else "")


def means_table(rows: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """The rows named in ``labels`` (in its order, as it names them): test top-1 per split and
    grounded value, mean [min, max] over the data draws."""
    def cell(row: Mapping[str, Any], split: str, setting: str = "top1", metric: str = "verb") -> str:
        v = [m[split][setting][metric] for m in row["seeds"].values()]
        return f"{sum(v) / len(v):.1f}" + (f" [{min(v):.1f}, {max(v):.1f}]" if len(v) > 1 else "")
    table = [["student", "draws", "seen verb", "rare verb", "unseen verb", "grnd-value"]]
    for name, label in labels.items():
        row = rows[name]
        table.append([label, str(len(row["seeds"]))]
                     + [cell(row, s) for s in ("seen", "rare", "unseen")] + [cell(row, "all", metric="grnd_value")])
    return render_table(table, markdown=True)


def footage_means() -> str:
    """Each method strict and with footage beside, mean [min, max] over the data draws."""
    data = load(FOOTAGE)
    return means_table(data["rows"], {name: footage_label(name, data["setup"]["pool"]) for name in data["rows"]})


def footage_rows() -> str:
    """Each method under the strict protocol and with unlabeled footage beside, every data draw, and
    its unseen-verb top-1 as a share of its draw's teacher's."""
    data = load(FOOTAGE)
    rows, pool = data["rows"], data["setup"]["pool"]
    teacher = {d: m["unseen"]["top1"]["verb"] for d, m in rows.get("teacher", {"seeds": {}})["seeds"].items()}
    table = [["student", "draw"] + DRAW_COLUMNS[:3] + ["unseen, share of teacher's"] + DRAW_COLUMNS[3:]]
    for name, row in rows.items():
        label = footage_label(name, pool)
        for draw, m in sorted(row["seeds"].items()):
            share = m["unseen"]["top1"]["verb"] / teacher[draw] if draw in teacher else None
            cells = draw_cells(m)
            table.append([label, draw] + cells[:3] + ["-" if share is None else f"{100 * share:.0f}%"] + cells[3:])
    return render_table(table, markdown=True, left=2)


def footage_pool() -> str:
    """MIPD's unseen-verb top-1 against the number of unlabeled images, per data draw."""
    data = load(FOOTAGE)
    curve = data["pool_sizes"]
    method = next(iter(curve))
    draws = sorted({d for sizes in curve[method].values() for d in sizes})
    table = [["unlabeled images"] + [f"draw {d}" for d in draws] + ["mean"]]
    for size in sorted(curve[method], key=int):
        values = [curve[method][size].get(d, {}).get("unseen", {}).get("top1", {}).get("verb") for d in draws]
        done = [v for v in values if v is not None]
        table.append([f"{int(size):,}"] + ["-" if v is None else f"{v:.1f}" for v in values]
                     + [f"{sum(done) / len(done):.1f}" if done else "-"])
    return render_table(table, markdown=True) + f"\n\n`{method}` students, unseen verb top-1 on SynthSitu test (%)."


def footage_variants() -> str:
    """What else was tried with unlabeled footage, beside the recipe it varies, draw by draw."""
    data = load(FOOTAGE)
    rows, pool = data["rows"], data["setup"]["pool"]
    table = [["student", "draw"] + DRAW_COLUMNS]
    for name, variant in data["variants"].items():
        base, _, tried = name.partition(" (")
        for label, row in ((footage_label(base, pool), rows.get(base, {"seeds": {}})),
                           (f"{footage_label(base, pool)}, {tried.rstrip(')')}", variant)):
            for draw in sorted(variant["seeds"]):
                if draw in row["seeds"]:
                    table.append([label, draw] + draw_cells(row["seeds"][draw]))
    return render_table(table, markdown=True, left=2)


def footage_cost() -> str:
    """What unlabeled images cost: the teacher's features per 1,000 images, and training images/s."""
    data = load(FOOTAGE)
    cost = data["cost"]
    table = [["", "per draw", "mean"]]
    per_1000 = [c["teacher_seconds_per_1000"] for c in cost.values()]
    table.append(["teacher features, s per 1,000 images (once, cached)", " / ".join(f"{v:.1f}" for v in per_1000),
                  f"{sum(per_1000) / len(per_1000):.1f}"])
    for key, label in (("strict_images_per_second", "training, labeled images/s, strict"),
                       ("unlabeled_images_per_second", "training, labeled images/s, with footage")):
        v = [c[key] for c in cost.values() if key in c]
        table.append([label, " / ".join(f"{x:.0f}" for x in v), f"{sum(v) / len(v):.0f}" if v else "-"])
    machine = describe_machine(data["provenance"]["machine"])
    return render_table(table, markdown=True, left=1) + f"\n\nMeasured on {machine}."


def convergence_verdicts() -> str:
    return format_verdicts(load(CONVERGENCE), markdown=True)


def convergence_labels(rows: Mapping[str, Any]) -> dict[str, str]:
    """The recipe benchmark's rows, method by method, the ablation's recipe first: `method`, recipe."""
    labels = {}
    for name in sorted(rows, key=lambda n: (METHODS.index(n.split(" ")[0]), " " in n, n)):
        method, _, recipe = name.partition(" (")
        labels[name] = f"`{method}`" + (f", {recipe.rstrip(')')}" if recipe else "")
    return labels


def convergence_means() -> str:
    rows = load(CONVERGENCE)["rows"]
    return means_table(rows, convergence_labels(rows))


def convergence_rows() -> str:
    """Every student of the recipe benchmark, draw by draw."""
    rows = load(CONVERGENCE)["rows"]
    table = [["student", "draw"] + DRAW_COLUMNS]
    for name, label in convergence_labels(rows).items():
        table += [[label, draw] + draw_cells(m) for draw, m in sorted(rows[name]["seeds"].items())]
    return render_table(table, markdown=True, left=2)


def multi_stream() -> str:
    """Several video files as one StreamSet against a process each, and the memory of a long run."""
    data = load(MULTI_STREAM)
    table = [["sources", "one StreamSet: frames/s", "frame to answer ms", "a process per source: frames/s"]]
    for c in data["counts"]:
        one, each = data["set"][str(c)], data["processes"][str(c)]
        table.append([str(c), f"{one['fps']:.1f}", f"{one['mean_latency_ms']:.1f}", f"{each['fps']:.1f}"])
    rss = [s["rss_mb"] for s in data["rss"]]
    return (render_table(table, markdown=True) + f"\n\n4 sources x {data['setup']['rss_frames']:,} frames: "
            f"resident memory {min(rss):.0f} to {max(rss):.0f} MB, sampled every 1,000 frames "
            f"({100 * data['rss_growth']:.1f}% growth after the first 1,000).")


def benchmark_table(name: str) -> str:
    """A benchmark results file as ``mipd-edge benchmark`` prints it."""
    return format_results(load(name), markdown=True)


def method_choice() -> str:
    """none, kd and mipd beside their teacher (the ablation's goal rows at 48 epochs), and how kd
    and mipd compare seed by seed: what "Choosing a distillation method" says, read from the results."""
    rows = load(GOAL_ROWS)["rows"]

    def values(row: str, split: str, k: str = "top1", metric: str = "verb") -> dict[str, float]:
        return {seed: m[split][k][metric] for seed, m in rows[row]["seeds"].items()}

    def cell(v: Mapping[str, float]) -> str:
        return f"{sum(v.values()) / len(v):.1f} [{min(v.values()):.1f}, {max(v.values()):.1f}]"
    table = [["method", "seeds", "seen verb", "rare verb", "unseen verb", "unseen verb@5", "grnd-value"]]
    for row in ("teacher", "none", "kd", "mipd"):
        table.append([f"`{row}`" if row != "teacher" else "teacher", str(len(rows[row]["seeds"]))]
                     + [cell(values(row, s)) for s in ("seen", "rare", "unseen")]
                     + [cell(values(row, "unseen", "top5")), cell(values(row, "all", metric="grnd_value"))])
    ahead = {split: sum(values("mipd", split)[s] > values("kd", split)[s] for s in rows["kd"]["seeds"])
             for split in ("rare", "unseen")}
    n = len(rows["kd"]["seeds"])
    return (render_table(table, markdown=True) + f"\n\nPaired by training seed, `mipd` is above `kd` on rare verbs at "
            f"{ahead['rare']} of {n} seeds and on unseen verbs at {ahead['unseen']} of {n}.")


def epochs_change() -> str:
    """The goal rows at 24 and at 48 epochs (the same data draw, teacher and training seeds):
    mean over the seeds both have, and the change."""
    short, long = load(ABLATION_24)["rows"], load(GOAL_ROWS)["rows"]
    table = [["row", "seeds"] + DRAW_COLUMNS]
    for row in ("none", "kd", "mipd"):
        seeds = sorted(set(short[row]["seeds"]) & set(long[row]["seeds"]))
        if not seeds:
            continue
        cells = []
        for split, setting, metric in DRAW_METRICS:
            before, after = (fmean(run[row]["seeds"][s][split][setting][metric] for s in seeds)
                             for run in (short, long))
            cells.append(f"{before:.1f} → {after:.1f} ({round(after - before, 1) + 0.0:+.1f})")
        table.append([f"`{row}`", ",".join(seeds)] + cells)
    return render_table(table, markdown=True)


def hoi_seeds() -> str:
    """Every seed of every HOI row: official mAP (default and known-object) and gold-pair verb top-1."""
    data = load("hoi-ablation-unseen_verb.json")
    table = [["HOI student", "seed", "full", "unseen classes", "seen classes", "known-object full / unseen",
              "verb top-1, seen pairs", "unseen pairs (among unseen verbs)"]]
    for row, seeds in data["seeds"].items():
        for seed, m in seeds.items():
            ko, v = m["known_object"], m["gold_pair_verb_top1"]
            table.append([row, seed, f"{m['full']:.1f}", f"{m['unseen']:.1f}", f"{m['seen']:.1f}",
                          f"{ko['full']:.1f} / {ko['unseen']:.1f}", f"{v['seen']:.1f}",
                          f"{v['unseen']:.1f} ({v['unseen_among_unseen']:.1f})"])
    return render_table(table, markdown=True, left=2)


def hoi_means() -> str:
    data = load("hoi-ablation-unseen_verb.json")
    none = data["mean_over_seeds"]["none"]
    table = [["HOI student", "full", "unseen classes", "seen classes", "unseen - none", "seen - none"]]
    for row, m in data["mean_over_seeds"].items():
        delta = ["", ""] if row == "none" else [f"{m[k] - none[k]:+.1f}" for k in ("unseen", "seen")]
        table.append([row] + [f"{m[k]:.1f} [{m[k + '_range'][0]:.1f}, {m[k + '_range'][1]:.1f}]"
                              for k in ("full", "unseen", "seen")] + delta)
    return render_table(table, markdown=True)


def hoi_int8() -> str:
    """INT8 minus FP32 test mAP of the HOI students per recipe and runtime, and the held-out gate."""
    data = load("hoi-ablation-unseen_verb.json")
    table = [["student", "recipe", "FP32 full", "ONNX Runtime INT8 - FP32 (full / unseen / seen)",
              "OpenVINO INT8 - FP32 (full / unseen / seen)", "held-out gate"]]
    for student, recipes in data["int8"].items():
        for recipe, q in recipes.items():
            def delta(runtime: str) -> str:
                d = q[f"{runtime} int8 - fp32"]
                return " / ".join(f"{d[k]:+.2f}" for k in ("full", "unseen", "seen"))
            table.append([f"{student}, seed 0", recipe.upper(), f"{q['openvino fp32']['full']:.2f}",
                          delta("onnxruntime"), delta("openvino"),
                          f"{q['gate']['int8_minus_fp32_map']['full']:+.2f}"])
    return render_table(table, markdown=True, left=2)


def hoi_accuracy_control() -> str:
    """Accuracy control on an HOI student: the held-out drop it fitted against the test drop."""
    d = load("hoi-int8-accuracy-control.json")
    table = [["measured on", "FP32 full", "INT8 full", "INT8 - FP32 full", "unseen", "seen"]]
    g, test = d["gate"], d["openvino int8 - fp32"]
    table.append([f"held-out training images ({g['gate']['images']}, seen classes)", f"{g['fp32']['full']:.2f}",
                  f"{g['int8']['full']:.2f}", f"{g['int8_minus_fp32_map']['full']:+.2f}", "-", "-"])
    table.append(["test", f"{d['openvino fp32']['full']:.2f}", f"{d['openvino int8']['full']:.2f}"]
                 + [f"{test[k]:+.2f}" for k in ("full", "unseen", "seen")])
    return render_table(table, markdown=True, left=1)


def training_speed() -> str:
    data = load("training-speed-epyc-avx2.json")
    table = [["run", "images/s", "training s", "seen verb", "rare verb", "unseen verb", "grnd-value"]]
    for name, r in data["runs"].items():
        m = r["test"]
        table.append([name, f"{r['images_per_second']:.1f}", f"{r['train_seconds']:.0f}"]
                     + [f"{m[s]['verb']:.1f}" for s in ("seen", "rare", "unseen")]
                     + [f"{m['all']['grnd_value']:.1f}"])
    return render_table(table, markdown=True)


def int8_graphs() -> str:
    data = load("int8-graphs-epyc-avx2.json")
    return render_table([["graph", "p50 ms"]] + [[k, f"{v:.2f}"] for k, v in data["p50_ms"].items()], markdown=True)


def torch_cuda() -> str:
    """The PyTorch CUDA paths of ``benchmarks/torch_cuda.py``: eager FP32 and FP16, compiled FP16 with CUDA graphs."""
    table = [["path", "batch", "p50 ms", "p99 ms", "images/s", "vs eager FP32"]]
    for r in load("h100-torch-cuda.json")["rows"]:
        table.append([r["path"], str(r["batch"]), f"{r['latency_ms']['p50']:.2f}", f"{r['latency_ms']['p99']:.2f}",
                      f"{r['throughput_fps']:,.0f}", f"{r['speedup_vs_eager_fp32']:.2f}x"])
    return render_table(table, markdown=True, left=1)


def knowledge_probe() -> str:
    """Zero-shot top-1 of NMPA's targets: scene knowledge naming verbs, instance knowledge naming nouns."""
    data = load("knowledge-probe.json")
    table = [["target", "names", "NMPA seeds", "seen", "rare", "unseen"]]

    def cell(scores: Mapping[str, Any], split: str) -> str:
        by_seed = [s[split] for s in scores.get("seeds", {}).values()]
        return f"{scores[split]:.1f}" + (f" [{min(by_seed):.1f}, {max(by_seed):.1f}]" if by_seed else "")
    for kind in ("verbs", "nouns"):
        for name, scores in data[kind].items():
            table.append([name, kind, str(len(scores.get("seeds", {})) or "-")]
                         + [cell(scores, s) for s in ("seen", "rare", "unseen")])
    return render_table(table, markdown=True)


def cli_reference() -> str:
    """Every command's usage and options, as its own ``--help`` prints them."""
    import os

    from mipd_edge.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the same width wherever this runs
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = [f"```text\n{parser.format_help().strip()}\n```"]
    for name, sub in commands.choices.items():
        subcommands = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        out.append(f"## `mipd-edge {name}`\n\n```text\n{sub.format_help().strip()}\n```")
        for action in subcommands:
            for child_name, child in action.choices.items():
                out.append(f"### `mipd-edge {name} {child_name}`\n\n```text\n{child.format_help().strip()}\n```")
    return "\n\n".join(out)


PARTS: dict[str, Callable[[], str]] = {
    "backends": backends,
    "quickstart-accuracy": quickstart_accuracy,
    "quickstart-speed": quickstart_speed,
    "quickstart-headline": quickstart_headline,
    "int8-evidence": int8_evidence,
    "quickstart-provenance": lambda: provenance(QUICKSTART),
    "cli-reference": cli_reference,
    "ablation-means": lambda: format_components(load(ABLATION_24), markdown=True),
    "ablation-seeds": lambda: format_seeds(load(ABLATION_24), markdown=True),
    "ablation-provenance": lambda: provenance(ABLATION_24),
    "goal-rows-means": lambda: format_components(load(GOAL_ROWS), markdown=True),
    "goal-rows-seeds": lambda: format_seeds(load(GOAL_ROWS), markdown=True),
    "goal-rows-epochs": epochs_change,
    "goal-rows-provenance": lambda: provenance(GOAL_ROWS),
    "method-choice": method_choice,
    "knowledge-probe": knowledge_probe,
    "knowledge-probe-provenance": lambda: provenance("knowledge-probe.json"),
    "hoi-seeds": hoi_seeds,
    "hoi-means": hoi_means,
    "hoi-int8": hoi_int8,
    "hoi-provenance": lambda: provenance("hoi-ablation-unseen_verb.json"),
    "hoi-accuracy-control": hoi_accuracy_control,
    "hoi-accuracy-control-provenance": lambda: provenance("hoi-int8-accuracy-control.json"),
    "training-speed": training_speed,
    "training-speed-provenance": lambda: provenance("training-speed-epyc-avx2.json"),
    "authors-student": lambda: benchmark_table("authors-student-epyc-avx2.json"),
    "authors-student-provenance": lambda: provenance("authors-student-epyc-avx2.json"),
    "clip-student": lambda: benchmark_table("clip-student-epyc-avx2.json"),
    "clip-student-provenance": lambda: provenance("clip-student-epyc-avx2.json"),
    "h100": lambda: benchmark_table("h100-benchmark.json"),
    "h100-provenance": lambda: provenance("h100-benchmark.json"),
    "h100-torch-cuda": torch_cuda,
    "h100-torch-cuda-provenance": lambda: provenance("h100-torch-cuda.json"),
    "ablation-rerun-provenance": lambda: provenance("ablation-rerun-mipd-seed1.json"),
    "int8-graphs": int8_graphs,
    "epyc-zen5-quickstart-headline": lambda: quickstart_headline(QUICKSTART_ZEN5),
    "epyc-zen5-quickstart-speed": lambda: quickstart_speed(QUICKSTART_ZEN5),
    "epyc-zen5-quickstart-provenance": lambda: provenance(QUICKSTART_ZEN5),
    "epyc-zen4-quickstart-headline": lambda: quickstart_headline(QUICKSTART_ZEN4),
    "epyc-zen4-quickstart-speed": lambda: quickstart_speed(QUICKSTART_ZEN4),
    "epyc-zen4-quickstart-provenance": lambda: provenance(QUICKSTART_ZEN4),
    "int8-recipe": int8_recipe,
    "int8-recipe-provenance": lambda: provenance(INT8_RECIPE),
    "calibration-size": calibration_size,
    "calibration-size-provenance": lambda: provenance(CALIBRATION),
    "bf16-training": bf16_training,
    "bf16-speed": bf16_speed,
    "serve-load": serve_load,
    "serve-load-provenance": lambda: provenance(SERVE_LOAD),
    "ray-autoscale": ray_autoscale,
    "stream-smoothing": stream_smoothing,
    "multi-stream": multi_stream,
    "multi-stream-provenance": lambda: provenance(MULTI_STREAM),
    "hoi-tracks": hoi_tracks,
    "hoi-tracks-provenance": lambda: provenance(HOI_TRACKS),
    "footage-means": footage_means,
    "footage-rows": footage_rows,
    "footage-pool": footage_pool,
    "footage-variants": footage_variants,
    "footage-cost": footage_cost,
    "footage-provenance": lambda: provenance(FOOTAGE),
    "convergence-verdicts": convergence_verdicts,
    "convergence-means": convergence_means,
    "convergence-rows": convergence_rows,
    "convergence-provenance": lambda: provenance(CONVERGENCE),
    "stream-smoothing-provenance": lambda: provenance(STREAM_SMOOTHING),
    "ray-autoscale-provenance": lambda: provenance(RAY_AUTOSCALE),
    "bf16-training-provenance": lambda: provenance(BF16_TRAINING),
    "training-bf16-speed-provenance": lambda: provenance(TRAINING_BF16_SPEED),
    "int8-graphs-provenance": lambda: provenance("int8-graphs-epyc-avx2.json"),
}


def markdown_files() -> list[Path]:
    return sorted({p for pattern in FILES for p in ROOT.glob(pattern)})


def render(text: str) -> str:
    """``text`` with every generated part made again (an unknown part name is an error)."""
    def fill(m: re.Match) -> str:
        if m.group(2) not in PARTS:
            raise KeyError(f"no generated part named {m.group(2)!r}; known: {', '.join(PARTS)}")
        return f"{m.group(1)}{PARTS[m.group(2)]().strip()}\n{m.group(4)}"
    return PART.sub(fill, text)


def main() -> None:
    parser = argparse.ArgumentParser(description="rewrite the generated parts of the README and the docs")
    parser.add_argument("--check", action="store_true", help="only list the files whose parts are out of date")
    args = parser.parse_args()
    stale = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    print(("out of date: " if args.check else "rewrote: ") + (", ".join(map(str, stale)) or "nothing"))
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
