"""What a benchmark run reports, built from its ``results.json`` alone: speed-ups against
torch FP32 and the headline summary, the table, the CSV and the latency-accuracy plot.

``benchmark.py`` measures; this module only reads what it measured, so every output can
be rebuilt (``rebuild``) from a results file without running anything.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Optional

from .errors import MipdEdgeError
from .files import PathLike, read_json, write_json
from .machine import describe_machine
from .tables import render_table

log = logging.getLogger(__name__)


def add_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Each row's speed-up and the run's summary, from its rows and ``auto`` choices alone
    (what a results.json holds): computed once after measuring, and again by ``rebuild``."""
    rows = results["rows"]
    fill_speedups(rows)
    results["summary"] = summarize(rows)
    results["summary"].update(auto_agreement(results.get("auto", {}), rows))
    return results


def fill_speedups(rows: list[dict[str, Any]]) -> None:
    base = {r["batch"]: r["latency_ms"]["p50"] for r in rows
            if (r["backend"], r["precision"], r["model"], r["status"]) == ("torch", "fp32", "student", "ok")}
    for r in rows:
        if r["status"] == "ok" and r["batch"] in base:
            r["speedup_vs_torch_fp32"] = base[r["batch"]] / r["latency_ms"]["p50"]


def _top1(row: Optional[dict], key: str, split: str = "all") -> Optional[float]:
    """A situation row's top-1 metric (None for rows without, or of interactions)."""
    if not row or not row.get("metrics") or not isinstance(row["metrics"].get(split), dict):
        return None
    return row["metrics"][split]["top1"][key]


def _map(row: Optional[dict], key: str) -> Optional[float]:
    """An interaction row's mAP (``full``, ``unseen``, ...; None for rows without)."""
    if not row or not row.get("metrics") or "mean_max_recall" not in row["metrics"]:
        return None
    return row["metrics"].get(key)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline comparisons of DESIGN section 7, from this run's rows only."""
    def find(backend: str, precision: str, batch: int = 1, model: str = "student") -> Optional[dict]:
        return next((r for r in rows if (r["backend"], r["precision"], r["batch"], r["model"]) ==
                     (backend, precision, batch, model) and r["status"] == "ok"), None)

    out: dict[str, Any] = {}
    ov8, ov32 = find("openvino", "int8"), find("openvino", "fp32")
    if ov8:
        out["openvino_int8_speedup_vs_torch_fp32"] = ov8["speedup_vs_torch_fp32"]
        out["openvino_int8_predictor_overhead"] = ov8["predictor_ms"]["p50"] / ov8["latency_ms"]["p50"] - 1
    for fp32, int8 in ((ov32, ov8), (find("onnxruntime", "fp32"), find("onnxruntime", "int8"))):
        if _top1(fp32, "verb") is not None and _top1(int8, "verb") is not None:
            out[f"{int8['backend']}_int8_minus_fp32_top1"] = {
                k: _top1(int8, k) - _top1(fp32, k) for k in ("verb", "grnd_value")}
        if _map(fp32, "full") is not None and _map(int8, "full") is not None:
            out[f"{int8['backend']}_int8_minus_fp32_map"] = {
                k: _map(int8, k) - _map(fp32, k) for k in ("full", "unseen") if _map(fp32, k) is not None}
    best = ov8 or find("onnxruntime", "int8")
    for model in dict.fromkeys(r["model"] for r in rows if r["model"] != "student"):
        # the other model at its fastest batch-1 row here, against the INT8 student
        theirs = min((r for r in rows if r["model"] == model and r["batch"] == 1 and r["status"] == "ok"),
                     key=lambda r: r["latency_ms"]["p50"], default=None)
        if theirs and best:
            out.setdefault("versus", {})[model] = {
                "their_row": f"{theirs['backend']} {theirs['precision']}", "their_p50_ms": theirs["latency_ms"]["p50"],
                "student": f"{best['backend']} int8", "student_p50_ms": best["latency_ms"]["p50"],
                "speedup": theirs["latency_ms"]["p50"] / best["latency_ms"]["p50"],
                "their_verb_top1": _top1(theirs, "verb"), "student_verb_top1": _top1(best, "verb"),
                "their_grnd_value": _top1(theirs, "grnd_value"), "student_grnd_value": _top1(best, "grnd_value")}
    return out


CSV_COLUMNS = ("model", "backend", "precision", "variant", "batch", "status", "load_s", "p50_ms", "p90_ms", "p99_ms",
               "predictor_p50_ms", "throughput_fps", "size_mb", "peak_mem_mb", "speedup_vs_torch_fp32",
               "verb_top1", "value", "grnd_value", "seen_verb_top1", "rare_verb_top1", "unseen_verb_top1",
               "map_full", "map_unseen", "map_seen")


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    lat, pred = row.get("latency_ms") or {}, row.get("predictor_ms") or {}
    return {"model": row["model"], "backend": row["backend"], "precision": row["precision"],
            "variant": row.get("variant"), "batch": row["batch"],
            "status": row["status"], "load_s": row.get("load_s"), "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"),
            "p99_ms": lat.get("p99"), "predictor_p50_ms": pred.get("p50"), "throughput_fps": row.get("throughput_fps"),
            "size_mb": row.get("size_mb"), "peak_mem_mb": row.get("peak_mem_mb"),
            "speedup_vs_torch_fp32": row.get("speedup_vs_torch_fp32"), "verb_top1": _top1(row, "verb"),
            "value": _top1(row, "value"), "grnd_value": _top1(row, "grnd_value"),
            **{f"{s}_verb_top1": _top1(row, "verb", s) for s in ("seen", "rare", "unseen")},
            **{f"map_{k}": _map(row, k) for k in ("full", "unseen", "seen")}}


def benchmark_table(results: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """The rows that ran, as table cells, and one line per row that could not run."""
    header = ["model", "backend", "precision", "batch", "load s", "p50 ms", "p90 ms", "p99 ms", "Predictor ms",
              "img/s", "MB", "peak MB", "speedup", "verb", "grnd", "unseen", "mAP", "unseen mAP"]
    table, skipped = [header], []
    for row in results["rows"]:
        f = flat_row(row)
        key = [f["model"], f["backend"], f["precision"] + (f" ({f['variant']})" if f["variant"] else ""),
               str(f["batch"])]
        if row["status"] != "ok":
            skipped.append(" ".join(key) + ": " + row["status"].splitlines()[0])
            continue
        cells = [(f[k], d) for k, d in (("load_s", 2), ("p50_ms", 2), ("p90_ms", 2), ("p99_ms", 2),
                                         ("predictor_p50_ms", 2), ("throughput_fps", 1), ("size_mb", 1),
                                         ("peak_mem_mb", 0))]
        scores = [(f[k], 1) for k in ("verb_top1", "grnd_value", "unseen_verb_top1", "map_full", "map_unseen")]
        table.append(key + [format_number(v, d) for v, d in cells] + [_ratio(f["speedup_vs_torch_fp32"])]
                     + [format_number(v, d) for v, d in scores])
    return table, skipped


LEGEND = ("p50/p90/p99: raw inference (encoder + decoder); Predictor ms: p50 of the whole call with pre- and "
          "post-processing; speedup: against torch fp32 at the same batch in this run; verb / grnd / unseen: "
          "top-1 verb, grounded value and unseen-verb top-1 on the split (%); mAP / unseen mAP: HOI bundles' "
          "HICO-DET mAP on the test images, all and unseen classes (%)")


def format_results(results: dict[str, Any], markdown: bool = False) -> str:
    """The benchmark table, the rows that could not run and why, and the device."""
    table, skipped = benchmark_table(results)
    device = results["device"]
    lines = [render_table(table, markdown, left=3), ""]
    lines += [("- " if markdown else "not run: ") + s for s in skipped]
    bullet = "- " if markdown else ""
    lines.append(f"{bullet}device: {describe_machine(device)}")
    for bundle, auto in results.get("summary", {}).get("auto", {}).items():
        lines.append(f"{bullet}auto picks {auto['picked']} for {Path(bundle).name}; this run's fastest batch-1 row "
                     f"of the same candidates: {auto['fastest_row']}"
                     + (f" ({auto['picked_p50_ms']:.2f} vs {auto['fastest_p50_ms']:.2f} ms)"
                        if auto["picked_p50_ms"] and auto["fastest_p50_ms"] else ""))
    for bundle, choice in results.get("auto", {}).items():
        if "error" in choice:
            lines.append(f"{bullet}auto failed for {Path(bundle).name}: {choice['error']}")
    lines.append(bullet + LEGEND)
    return "\n".join(lines)


def format_number(value: Optional[float], digits: int, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _ratio(value: Optional[float]) -> str:
    """A speed-up with two decimals, or two significant digits below 0.1 (a model 200x slower is 0.005x, not 0.00x)."""
    return "-" if value is None else f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def write_results(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", results)
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in results["rows"]:
            writer.writerow(flat_row(row))
    plot_results(results, out_dir / "latency_vs_accuracy.png")


def plot_results(results: dict[str, Any], path: Path) -> Optional[Path]:
    """Latency against accuracy, one point per backend x precision at the smallest batch."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        log.warning("plot skipped: matplotlib is not installed (pip install matplotlib)")
        return None
    if not any(r["status"] == "ok" for r in results["rows"]):
        log.warning("plot skipped: no row ran")
        return None
    batch = min(r["batch"] for r in results["rows"] if r["status"] == "ok")
    ran = [flat_row(r) for r in results["rows"] if r["status"] == "ok" and r["batch"] == batch]
    # situation rows on verb top-1 and grounded value; where there are none, HOI rows on mAP
    panels = (("verb_top1", "verb top-1 (%)"), ("grnd_value", "grounded value top-1 (%)"))
    if not any(p["verb_top1"] is not None for p in ran):
        panels = (("map_full", "HICO-DET mAP, all classes (%)"), ("map_unseen", "mAP, unseen classes (%)"))
    points = [p for p in ran if p[panels[0][0]] is not None]
    timed_only = [flat_row(r) for r in results["rows"] if r["status"] == "ok" and r["batch"] == batch
                  and not r.get("metrics")]
    if not points + timed_only:
        log.warning("plot skipped: no row has accuracy or is timed alone")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    markers = {"torch": "o", "onnxruntime": "s", "openvino": "D", "tensorrt": "^"}
    latencies = [p["p50_ms"] for p in points + timed_only]
    ticks = [t for t in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
             if min(latencies) / 1.5 <= t <= max(latencies) * 1.5]
    for ax, (key, label) in zip(axes, panels):
        for i, p in enumerate(points):
            name = f"{p['backend']} {p['precision']}" + (f" ({p['variant']})" if p["variant"] else "") + \
                (f" ({p['model']} model)" if p["model"] != "student" else "")
            color = f"C{i}"  # fp32 hollow, lower precisions filled
            ax.scatter(p["p50_ms"], p[key], s=80, marker=markers.get(p["backend"], "o"), label=name, linewidths=2,
                       edgecolors=color, facecolors="none" if p["precision"] == "fp32" else color)
        for p in timed_only:
            ax.axvline(p["p50_ms"], color="grey", linestyle=":", linewidth=1,
                       label=f"{p['model']} {p['backend']} {p['precision']} (latency only)")
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"latency p50 at batch {batch}, ms (log scale; left is faster)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    device = results["device"]
    fig.suptitle(f"mipd-edge benchmark on {device.get('cpu')} ({device.get('usable_cores', '?')} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def auto_agreement(choices: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per bundle: what ``auto`` picked, and the fastest batch-1 student row of this run among
    the same candidates (a check that ``auto`` picks no slower backend or precision)."""
    out = {}
    for bundle, choice in choices.items():
        if "error" in choice:
            continue
        # rows of graphs every bundle shares, and this bundle's own INT8 variant
        timed = {f"{r['backend']} {r['precision']}": r["latency_ms"]["p50"] for r in rows
                 if r["model"] == "student" and r["batch"] == 1 and r["status"] == "ok"
                 and (r.get("variant") is None or r["bundle"] == bundle)}
        same = {k: v for k, v in timed.items() if k in choice["times_ms"]}
        picked = f"{choice['backend']} {choice['precision']}"
        fastest = min(same, key=same.get) if same else None
        out.setdefault("auto", {})[bundle] = {
            "picked": picked, "fastest_row": fastest, "picked_p50_ms": same.get(picked),
            "fastest_p50_ms": same.get(fastest) if fastest else None}
    return out


def rebuild(results_file: PathLike, out_dir: Optional[PathLike] = None) -> dict[str, Any]:
    """Ratios, summary, table, CSV and plot again from a ``results.json`` (written beside it,
    or into ``out_dir``)."""
    results_file = Path(results_file)
    results = read_json(results_file, "benchmark results")
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list) \
            or not isinstance(results.get("device"), dict):
        raise MipdEdgeError(f"{results_file}: not a benchmark results file (it has no 'rows' list and 'device')")
    add_ratios(results)
    write_results(results, Path(out_dir) if out_dir is not None else results_file.parent)
    return results
