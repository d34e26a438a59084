"""docs/ARCHITECTURE.md's "Where to add things", walked: a part added the way the page says
is seen everywhere it should be, and a combination no part covers is a clear error."""

import json

import pytest

from helpers import quiet, tiny_config
from mipd_edge.errors import MipdEdgeError
from mipd_edge.methods import METHOD_TABLE, Method, method_info, methods_for, objective_builder, register_method
from mipd_edge.train.distill import ObjectiveInputs, distill
from mipd_edge.train.loop import Objective
from mipd_edge.train.task import TrainingInputs


@pytest.fixture
def probe_method():
    """A method with a teacher and no rationales whose builder records that it ran."""
    built = []

    def build(inputs: ObjectiveInputs):
        built.append(inputs.cfg.method)
        return Objective(), {"built_by": "probe"}

    register_method(Method("probe", teacher=True, rationales=False, objectives={"gsr": build}, what="a test method"))
    yield built
    del METHOD_TABLE["probe"]


def test_a_method_trains_with_the_objective_its_row_names(probe_method, tiny_world, tmp_path, cache_dir):
    distill(tiny_world / "data", tmp_path / "s", tiny_config(method="probe"),
            TrainingInputs(teacher=tiny_world / "teacher"), quiet(cache_dir))
    assert probe_method == ["probe"]  # its own builder, not plain KD's
    info = json.loads((tmp_path / "s" / "config.json").read_text())
    assert info["method"] == "probe" and info["built_by"] == "probe"
    assert "probe" in methods_for("gsr") and "probe" not in methods_for("hoi")
    with pytest.raises(MipdEdgeError, match="hoi training supports methods"):
        objective_builder("probe", "hoi")  # a combination no row covers


def test_every_shipped_method_names_an_importable_builder_per_task():
    for method in METHOD_TABLE.values():
        for task in method.tasks:
            assert callable(objective_builder(method.name, task))
    with pytest.raises(MipdEdgeError, match="hoi training supports methods"):
        method_info("kd", "hoi")
    with pytest.raises(MipdEdgeError, match="method must be one of"):
        method_info("better-kd")
    with pytest.raises(MipdEdgeError, match="names no objective builder"):
        register_method(Method("empty", teacher=False, rationales=False, objectives={}, what="nothing"))


@pytest.fixture
def echo_backend(monkeypatch):
    from mipd_edge.deploy.backends import BACKENDS, Backend

    backend = Backend("echo", "echo_backend:EchoRuntime", "onnxruntime", "onnx", "onnx", {"CPU": ("fp32",)})
    monkeypatch.setitem(BACKENDS, "echo", backend)
    return backend


def test_a_backend_is_one_row_of_the_table(echo_backend, tiny_bundle, tiny_world, tmp_path, monkeypatch):
    """Registered at run time: auto measures it, the benchmark times it (in processes of its
    own), `check` runs it, and the command line offers it."""
    from mipd_edge.benchmark import BenchmarkSettings, run_benchmark
    from mipd_edge.check import check_bundle
    from mipd_edge.cli import build_parser
    from mipd_edge.deploy.backends import unsupported
    from mipd_edge.deploy.bundle import read_manifest
    from mipd_edge.deploy.predictor import Predictor
    from mipd_edge.deploy.runtimes.selection import candidates

    pairs, left_out = candidates(tiny_bundle, read_manifest(tiny_bundle), "CPU")
    assert ("echo", "fp32") in pairs and "echo int8" in left_out
    assert unsupported("echo", "int8", "CPU") == "echo runs fp32 on CPU; int8 on CPU: onnxruntime, openvino"
    assert unsupported("echo", "fp32", "CUDA") == "echo runs on CPU devices, not CUDA"
    monkeypatch.setenv("MIPD_EDGE_CACHE", str(tmp_path / "cache"))
    with Predictor(tiny_bundle, backend="echo") as echo, Predictor(tiny_bundle, backend="onnxruntime",
                                                                   precision="fp32") as ort:
        assert type(echo.runtime).__name__ == "EchoRuntime" and (echo.backend, echo.precision) == ("echo", "fp32")
        assert echo.runtime.extra == "onnx"
        image = sorted((tiny_world / "data" / "images").iterdir())[0]
        assert echo(image).to_json() == ort(image).to_json()
    report = check_bundle(tiny_bundle)
    assert {"backend": "echo", "precision": "fp32"}.items() <= next(
        r for r in report["runs"] if r["backend"] == "echo").items()
    args = build_parser().parse_args(["predict", "--model", "b", "--source", "s", "--backend", "echo"])
    assert args.backend == "echo" and "echo" in build_parser().parse_args(
        ["benchmark", "--model", "b"]).backends.split(",")
    results = run_benchmark([tiny_bundle], BenchmarkSettings(backends=("echo",), precisions=("fp32",), batches=(1,),
                                                             seconds=0.1, warmup=1, min_iterations=2, settle_s=0.02))
    rows = {(r["backend"], r["precision"]): r for r in results["rows"]}
    assert rows[("echo", "fp32")]["status"] == "ok" and rows[("torch", "fp32")]["status"] == "ok"
    assert "echo fp32" in results["auto"][str(tiny_bundle)]["times_ms"]
    from mipd_edge.deploy.backends import Backend, register_backend
    from mipd_edge.errors import BundleError

    with pytest.raises(BundleError, match="'module:Class'"):
        register_backend(Backend("half", "echo_backend.EchoRuntime", "onnxruntime", "onnx", "onnx", {"CPU": ("fp32",)}))
