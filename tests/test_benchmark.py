"""The benchmark's outputs and structure on a tiny bundle; never its speed."""

import csv
import json
import platform
import shutil
import subprocess
import sys

import cv2
import pytest

from mipd_edge.benchmark import BenchmarkSettings, RowProcess, run_benchmark
from mipd_edge.benchmark_report import CSV_COLUMNS, format_results
from mipd_edge.config import ExportConfig, QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.deploy.bundle import read_manifest, write_manifest
from mipd_edge.deploy.predictor import Predictor
from mipd_edge.errors import BundleError, MipdEdgeError
from mipd_edge.evaluation import evaluate_predictor

NNCF, ORT = "nncf PTQ, Q/DQ", "onnxruntime static Q/DQ (u8 activations, 7-bit s8 weights)"
ROW_KEYS = {"backend", "precision", "batch", "status", "load_s", "latency_ms", "throughput_fps", "predictor_ms",
            "size_mb", "peak_mem_mb", "speedup_vs_torch_fp32", "metrics"}


def authors_bundle(tiny_student, data, tmp_path):
    """A latency-only comparison model (the authors' architecture, narrowed) with OpenVINO FP32
    and INT8 graphs."""
    from mipd_edge.export import export_bundle
    from mipd_edge.models.store import read_model_info, save_model
    from mipd_edge.models.student import create_student
    from mipd_edge.quantize import quantize_bundle

    info = read_model_info(tiny_student)
    model = create_student("authors", width=1 / 16, image_size=56, d_model=32, heads=2, ffn=64)
    save_model(tmp_path / "authors-untrained", model, {**info, "model": model.cfg.to_json(), "method": "untrained"})
    export_bundle(tmp_path / "authors-untrained", tmp_path / "authors-fp32", ExportConfig(formats=("openvino",)),
                  data=data)
    manifest = quantize_bundle(tmp_path / "authors-untrained", data, tmp_path / "authors",
                               QuantizeConfig(method="ptq", calib_size=8, formats=("openvino",),
                                              from_bundle=tmp_path / "authors-fp32", evaluate=False),
                               run=RunContext(progress=False))
    assert manifest.metrics is None  # latency only: auto would never pick its INT8 graphs
    return tmp_path / "authors"


def nncf_layout_only(bundle, out):
    """A copy of an INT8 bundle without ONNX Runtime's own layout (as where it failed its check):
    ONNX Runtime runs NNCF's Q/DQ graph from it."""
    shutil.copytree(bundle, out)
    manifest = read_manifest(out)
    (out / manifest.graphs.pop("onnxruntime-int8")["encoder"]).unlink()
    manifest.verification.pop("onnxruntime-int8")
    write_manifest(out, manifest)
    return out


@pytest.mark.slow
def test_benchmark_writes_rows_json_csv_and_plot(tiny_bundle, tiny_student, tiny_world, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "encoder.int8.ort.onnx").write_bytes(b"not a graph")
    with pytest.raises(BundleError, match="encoder.int8.ort.onnx has changed since export"):
        run_benchmark([broken], BenchmarkSettings(backends=("onnxruntime",)), tmp_path / "refused")
    write_manifest(broken, read_manifest(broken, verify=False))  # recorded as it is: a graph no backend loads
    nncf_only = nncf_layout_only(tiny_bundle, tmp_path / "nncf-only")
    authors = authors_bundle(tiny_student, tiny_world / "data", tmp_path)
    settings = BenchmarkSettings(backends=("onnxruntime", "openvino", "tensorrt"), precisions=("fp32", "int8"),
                                 batches=(1, 2), data=str(tiny_world / "data"), seconds=0.2, warmup=2,
                                 min_iterations=5, settle_s=0.02, rounds=3)
    results = run_benchmark([tiny_bundle, nncf_only], settings, tmp_path / "out", [authors])
    assert set(results) >= {"date", "device", "versions", "bundle", "rows", "auto"}
    assert results["device"]["logical_cores"] >= 1 and "onnxruntime" in results["versions"]
    assert "avx2" in results["device"]["cpu_features"] or platform.machine() != "x86_64"
    assert len(results["bundle"]["sha256"][str(tiny_bundle)]) == 64
    students = [r for r in results["rows"] if r["model"] == "student"]
    rows = {(r["backend"], r["precision"], r["batch"]): r for r in students if r["variant"] is None}
    # torch fp32 is always measured: every speed-up is against it
    assert set(rows) == {(b, p, n) for b in ("torch", "onnxruntime", "openvino", "tensorrt")
                         for p in ("fp32", "int8") if (b, p) != ("torch", "int8") and (b, p) != ("onnxruntime", "int8")
                         for n in (1, 2)}
    # both ONNX INT8 layouts get their own rows, named by what made them
    variants = {
        (r["variant"], r["batch"]): r for r in students if (r["backend"], r["precision"]) == ("onnxruntime", "int8")
    }
    assert set(variants) == {(v, n) for v in (NNCF, ORT) for n in (1, 2)}
    assert variants[(NNCF, 1)]["bundle"] == str(nncf_only) and variants[(ORT, 1)]["bundle"] == str(tiny_bundle)
    rows.update({("onnxruntime", "int8", n): variants[(ORT, n)] for n in (1, 2)})
    for key, row in rows.items():
        assert ROW_KEYS <= set(row)
        if key[0] == "tensorrt":
            assert row["status"] != "ok" and "tensorrt" in row["status"]
            continue
        assert row["status"] == "ok", row["status"]
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and lat["n"] >= 5
        assert row["predictor_ms"]["p50"] > 0 and row["throughput_fps"] > 0 and row["load_s"] > 0
        assert row["size_mb"] > 0 and row["peak_mem_mb"] > 50
        if key[2] == 1:  # accuracy once per backend x precision, with the open-vocabulary splits
            assert set(row["metrics"]) == {"all", "seen", "rare", "unseen"}
            assert row["metrics"]["all"]["images"] == 48  # the whole test split
        torch_p50 = rows[("torch", "fp32", key[2])]["latency_ms"]["p50"]
        assert row["speedup_vs_torch_fp32"] == pytest.approx(torch_p50 / lat["p50"])
    assert variants[(NNCF, 1)]["metrics"]["all"]["images"] == 48
    # a row's accuracy is what the same Predictor gives outside the benchmark
    with Predictor(tiny_bundle, backend="onnxruntime", precision="fp32") as predictor:
        direct = evaluate_predictor(predictor, tiny_world / "data", "test",
                                    splits=tiny_world / "data" / "splits.json")
    assert rows[("onnxruntime", "fp32", 1)]["metrics"] == json.loads(json.dumps(direct))
    assert rows[("onnxruntime", "int8", 1)]["size_mb"] < rows[("onnxruntime", "fp32", 1)]["size_mb"]
    # the same graphs give the same accuracy whichever runtime runs them
    ort, ov = (rows[(b, "fp32", 1)]["metrics"]["all"]["top1"]["verb"] for b in ("onnxruntime", "openvino"))
    assert abs(ort - ov) <= 100 / 48 + 1e-6  # at most one test image apart
    # the comparison model: a row per backend x precision it holds, latency only
    theirs = {(r["backend"], r["precision"], r["batch"]): r for r in results["rows"] if r["model"] == "authors"}
    assert set(theirs) == {(b, p, n) for b, p in (("torch", "fp32"), ("openvino", "fp32"), ("openvino", "int8"))
                           for n in (1, 2)}
    for row in theirs.values():
        assert row["status"] == "ok" and row["latency_ms"]["n"] >= 3  # at least one call in each of three rounds
        assert row["metrics"] is None and row["predictor_ms"] is None and "latency only" in " ".join(row["notes"])
    versus = results["summary"]["versus"]["authors"]
    assert versus["their_p50_ms"] > 0 and versus["speedup"] > 0 and versus["their_verb_top1"] is None
    # what auto picks for each bundle, beside this run's fastest row among the same candidates
    for bundle in (tiny_bundle, nncf_only):
        auto = results["summary"]["auto"][str(bundle)]
        assert auto["picked"] in results["auto"][str(bundle)]["times_ms"] and auto["fastest_row"]

    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(results["rows"]))
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == len(results["rows"])
    plot = cv2.imread(str(tmp_path / "out" / "latency_vs_accuracy.png"))
    assert plot is not None and plot.shape[1] > 800
    text = format_results(results)
    assert "openvino" in text and "tensorrt" in text and "speedup" in text
    assert "authors" in text and "onnxruntime static Q/DQ" in text and "auto picks" in text

    # a graph that cannot load (intact as exported) costs its own row, not the run
    results = run_benchmark([broken], BenchmarkSettings(backends=("onnxruntime",), precisions=("int8",), batches=(1,),
                                                        seconds=0.1, warmup=1, min_iterations=2, settle_s=0.02))
    row = next(r for r in results["rows"] if r["backend"] == "onnxruntime")
    assert row["status"].startswith("failed: BundleError") and "encoder.int8.ort.onnx" in row["status"]
    assert next(r for r in results["rows"] if r["backend"] == "torch")["status"] == "ok"


def test_a_row_whose_process_dies_reports_it(tiny_bundle):
    settings = BenchmarkSettings(seconds=0.1, warmup=1, min_iterations=2)
    row = RowProcess(str(tiny_bundle), "onnxruntime", "fp32", 1, settings, False)
    row.ask(("time", (0.05, 2)), "timed")
    assert row.alive
    row.process.kill()
    row.ask(("time", (0.05, 2)), "timed")
    assert not row.alive and row.finish()["status"].startswith("crashed")


@pytest.mark.slow
def test_benchmark_cli_and_missing_precisions(tiny_bundle, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "benchmark", "--model", str(tiny_bundle),
                        "--backends", "openvino", "--precisions", "fp16,int8", "--batch", "1", "--seconds", "0.1",
                        "--out", str(tmp_path / "b" / "results.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    status = {(row["backend"], row["precision"]): row["status"] for row in results["rows"]}
    assert status[("openvino", "int8")] == "ok" and status[("torch", "fp32")] == "ok"
    assert "fp16" in status[("openvino", "fp16")] and "export --precision fp16" in status[("openvino", "fp16")]
    assert "openvino" in r.stdout and (tmp_path / "b" / "results.csv").is_file()


def test_benchmark_rejects_bad_settings(tiny_bundle):

    for bad in ({"precisions": ("int4",)}, {"backends": ("tflite",)}, {"batches": (0,)}, {"batches": ()}):
        with pytest.raises(MipdEdgeError):
            run_benchmark([tiny_bundle], BenchmarkSettings(**bad))
    with pytest.raises(MipdEdgeError, match="at least one bundle"):
        run_benchmark([], BenchmarkSettings())



def test_every_output_is_rebuilt_from_results_json_alone(tmp_path):
    """No process is spawned: ratios, summary, table, CSV and plot come from the file."""
    from dataclasses import asdict

    from mipd_edge.benchmark import Row
    from mipd_edge.benchmark_report import rebuild
    from mipd_edge.files import read_json, write_json

    def metrics(verb, grnd):
        return {s: {"top1": {"verb": verb, "value": grnd + 5, "grnd_value": grnd}} for s in ("all", "unseen")}

    def row(backend, precision, batch, p50, pred=None, m=None):
        return asdict(Row(backend, precision, batch, bundle="b", latency_ms={"p50": p50, "p90": p50, "p99": p50},
                          predictor_ms={"p50": pred or p50 * 1.1}, throughput_fps=1000 / p50, metrics=m))

    rows = [row("torch", "fp32", 1, 10.0, m=metrics(50.0, 30.0)),
            row("openvino", "fp32", 1, 5.0, m=metrics(50.0, 30.0)),
            row("openvino", "int8", 1, 2.5, pred=2.75, m=metrics(49.0, 30.5)), row("torch", "fp32", 8, 40.0),
            row("openvino", "int8", 8, 8.0), asdict(Row("tensorrt", "int8", 1, status="needs a CUDA GPU"))]
    results = {"device": {"cpu": "test CPU", "cpu_features": ["avx2"], "usable_cores": 2}, "rows": rows,
               "auto": {"b": {"backend": "openvino", "precision": "int8",
                              "times_ms": {"openvino int8": 2.4, "openvino fp32": 5.1}}}}
    write_json(tmp_path / "results.json", results)
    out = rebuild(tmp_path / "results.json", tmp_path / "report")
    speedups = [(r["backend"], r["precision"], r["batch"], r["speedup_vs_torch_fp32"]) for r in out["rows"]]
    assert speedups[:5] == [("torch", "fp32", 1, 1.0), ("openvino", "fp32", 1, 2.0), ("openvino", "int8", 1, 4.0),
                            ("torch", "fp32", 8, 1.0), ("openvino", "int8", 8, 5.0)]
    summary = out["summary"]
    assert summary["openvino_int8_speedup_vs_torch_fp32"] == 4.0
    assert abs(summary["openvino_int8_predictor_overhead"] - 0.1) < 1e-9
    assert summary["openvino_int8_minus_fp32_top1"] == {"verb": -1.0, "grnd_value": 0.5}
    assert summary["auto"]["b"] == {"picked": "openvino int8", "fastest_row": "openvino int8", "picked_p50_ms": 2.5,
                                    "fastest_p50_ms": 2.5}
    assert read_json(tmp_path / "report" / "results.json")["summary"] == summary
    lines = (tmp_path / "report" / "results.csv").read_text().splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS) and len(lines) == 1 + len(rows)
    text = format_results(out)
    assert "4.00x" in text and "tensorrt int8 1: needs a CUDA GPU" in text and "test CPU (avx2), 2 cores" in text
    assert (tmp_path / "report" / "latency_vs_accuracy.png").stat().st_size > 10_000
    write_json(tmp_path / "other.json", {"rows": "not a list"})
    with pytest.raises(MipdEdgeError, match="not a benchmark results file"):
        rebuild(tmp_path / "other.json")


def test_raw_inference_times_the_graphs_the_predictor_runs(tiny_bundle):
    """OpenVINO and ONNX Runtime run graphs with the vocabulary matching built in: the raw row
    times those, not the bundle's plain graphs (other compiled models, whose weights compete for
    the caches); torch matches in numpy and times its plain graphs."""
    from mipd_edge.benchmark import RowMeasurement

    settings = BenchmarkSettings(seconds=0.05, warmup=1, min_iterations=2, settle_s=0.0)
    for backend, matched in (("openvino", True), ("onnxruntime", True), ("torch", False)):
        row = RowMeasurement(str(tiny_bundle), backend, "fp32", 1, settings, with_accuracy=False)
        encoder, decoder = row.graphs
        assert (encoder.startswith("matched_encoder"), decoder.startswith("matched_decoder")) == (matched, matched)
        assert row.predictor.graphs() == row.graphs  # the vocabulary unchanged: the same compiled graphs
        row.time(0.05, 2)
        assert len(row.raw_ms) >= 2 and len(row.whole_ms) >= 2
        row.predictor.close()
