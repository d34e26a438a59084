"""``backend="auto"`` / ``precision="auto"``: measured, gated by recorded accuracy, cached."""

import dataclasses
import json
import shutil
import time

import numpy as np
import pytest

from mipd_edge import Predictor
from mipd_edge.config import ExportConfig
from mipd_edge.deploy.backends import BACKENDS
from mipd_edge.deploy.runtimes import selection
from mipd_edge.deploy.runtimes.onnxruntime import OnnxRuntime
from mipd_edge.deploy.runtimes.openvino import OpenVinoRuntime
from mipd_edge.errors import BundleError


class SlowOpenVino(OpenVinoRuntime):
    """OpenVINO with 20 ms added to every graph run: what a backend slow on this machine looks like."""

    def run(self, graph, inputs):
        time.sleep(0.02)
        return super().run(graph, inputs)


class SlowFloatOnnx(OnnxRuntime):
    """ONNX Runtime whose FP32 graphs are 20 ms slower than its INT8 ones."""

    def run(self, graph, inputs):
        if self.precision == "fp32":
            time.sleep(0.02)
        return super().run(graph, inputs)


@pytest.fixture
def auto_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPD_EDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "auto"


def use_runtime(monkeypatch, backend: str, cls: type) -> None:
    monkeypatch.setitem(BACKENDS, backend, dataclasses.replace(BACKENDS[backend], runtime=f"{__name__}:{cls.__name__}"))


def copy_bundle(src, dst, **manifest_changes):
    """A copy of a bundle with manifest fields changed (None removes one)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "bundle.json").read_text())
    manifest.update(manifest_changes)
    manifest = {k: v for k, v in manifest.items() if v is not None}
    (dst / "bundle.json").write_text(json.dumps(manifest))
    return dst


def bf16_pair(bundle) -> set[tuple[str, str]]:
    """OpenVINO bf16, where this CPU computes bf16 and the bundle's recorded bf16 accuracy is within its gate."""
    from mipd_edge.deploy.bundle import read_manifest
    from mipd_edge.machine import bf16_capable

    inside = selection.accuracy_gate(read_manifest(bundle), "bf16") is None
    return {("openvino", "bf16")} if bf16_capable() and inside else set()


@pytest.mark.slow
def test_a_slow_backend_is_not_picked(tiny_bundle, auto_cache, monkeypatch):
    use_runtime(monkeypatch, "openvino", SlowOpenVino)
    with Predictor(tiny_bundle) as p:
        s = p.selection
        assert s.measured and not s.cached and p.backend != "openvino"
        slow = min(t for k, t in s.times_ms.items() if k.startswith("openvino"))
        assert s.times_ms[f"{p.backend} {p.precision}"] == min(s.times_ms.values()) < slow - 30  # two graphs x 20 ms
        assert {"openvino fp32", "openvino int8", "onnxruntime fp32", "onnxruntime int8", "torch fp32"} | {
            f"{b} {p}" for b, p in bf16_pair(tiny_bundle)} == set(s.times_ms)
        assert p(np.full((96, 120, 3), 90, np.uint8)).verb in p.vocabulary.frames


def test_int8_outside_the_accuracy_gate_is_not_picked_even_when_faster(tiny_bundle, auto_cache, monkeypatch, tmp_path):
    use_runtime(monkeypatch, "onnxruntime", SlowFloatOnnx)
    manifest = json.loads((tiny_bundle / "bundle.json").read_text())
    point = {**manifest["metrics"]["gate"], "ci95": {}}  # no interval recorded: the gate reads the difference
    inside = copy_bundle(tiny_bundle, tmp_path / "inside", metrics={
        **manifest["metrics"], "gate": point, "int8_minus_fp32_top1": {"verb": -0.5, "grnd_value": 0.2}})
    with Predictor(inside, backend="onnxruntime") as p:
        assert (p.backend, p.precision) == ("onnxruntime", "int8")  # the faster one, within 1 point
    outside = copy_bundle(tiny_bundle, tmp_path / "outside", metrics={
        **manifest["metrics"], "gate": point, "int8_minus_fp32_top1": {"verb": -3.0, "grnd_value": 0.2}})
    with Predictor(outside, backend="onnxruntime") as p:
        assert (p.backend, p.precision) == ("onnxruntime", "fp32")
        assert "loses 3.00 points of verb" in p.selection.left_out["onnxruntime int8"]
    # with an interval recorded the gate decides on it: out only when even its better end loses too much
    for name, (low, high), used in (("noisy", (-4.0, -0.5), True), ("sure", (-4.0, -2.0), False)):
        ci = {"int8": {"verb": [low, high], "grnd_value": [-0.5, 0.9]}}
        delta = {"verb": -2.2, "grnd_value": 0.2}
        bundle = copy_bundle(tiny_bundle, tmp_path / name, metrics={
            **manifest["metrics"], "gate": {**point, "ci95": ci}, "int8_minus_fp32_top1": delta})
        with Predictor(bundle, backend="onnxruntime") as p:
            assert (p.precision == "int8") == used, p.selection.left_out
            assert used or "better end of its 95% interval loses 2.00 points of verb" in p.selection.left_out[
                "onnxruntime int8"]
    # the bundle's own gate (accuracy control's --max-drop) replaces the default one
    assert manifest["quantization"]["accuracy_gate"] == 1.0
    loose = copy_bundle(outside, tmp_path / "loose", quantization={**manifest["quantization"], "accuracy_gate": 5.0})
    with Predictor(loose, backend="onnxruntime") as p:
        assert p.precision == "int8"
    unknown = copy_bundle(tiny_bundle, tmp_path / "unknown", metrics=None)
    with Predictor(unknown, backend="onnxruntime") as p:
        assert p.precision == "fp32" and "not recorded" in p.selection.left_out["onnxruntime int8"]
    with Predictor(outside, backend="onnxruntime", precision="int8") as p:  # an explicit precision still wins
        assert p.precision == "int8" and not p.selection.measured


def test_the_choice_is_cached_and_measured_again_when_the_bundle_changes(tiny_bundle, auto_cache, monkeypatch,
                                                                         tmp_path):
    bundle = copy_bundle(tiny_bundle, tmp_path / "b")
    with Predictor(bundle) as p:
        first = p.selection
    assert not first.cached and len(list(auto_cache.glob("*.json"))) == 1

    def no_timing(*args, **kwargs):
        raise AssertionError("measured although the choice was cached")

    with monkeypatch.context() as m:
        m.setattr(selection, "time_runtimes", no_timing)
        with Predictor(bundle) as p:
            assert p.selection.cached and (p.backend, p.precision) == (first.backend, first.precision)
            assert p.selection.times_ms == first.times_ms and "cached measurement" in p.selection.describe()
        with pytest.raises(AssertionError, match="measured although"):
            Predictor(bundle, threads=1)  # other settings, another key
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["provenance"] = {**manifest.get("provenance", {}), "note": "re-exported"}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    with Predictor(bundle) as p:
        assert not p.selection.cached and p.selection.key != first.key
    (auto_cache / f"{p.selection.key}.json").write_text("{ damaged")
    with Predictor(bundle) as p:  # a damaged cache entry is measured again, not an error
        assert not p.selection.cached


def test_candidates_and_explicit_choices(tiny_bundle, tiny_student, tiny_world, tmp_path, auto_cache):
    from mipd_edge.deploy.bundle import read_manifest
    from mipd_edge.export import export_bundle

    pairs, left_out = selection.candidates(tiny_bundle, read_manifest(tiny_bundle), "CPU")
    assert set(pairs) == {("openvino", "fp32"), ("openvino", "int8"), ("onnxruntime", "fp32"),
                          ("onnxruntime", "int8"), ("torch", "fp32")} | bf16_pair(tiny_bundle)
    assert "tensorrt" not in " ".join(b for b, _ in pairs) and "torch int8" in left_out
    with Predictor(tiny_bundle, backend="openvino", precision="fp32") as p:
        assert not p.selection.measured and p.selection.describe().startswith("openvino fp32")
    export_bundle(tiny_student, tmp_path / "onnx-only", ExportConfig(formats=("onnx",)), data=tiny_world / "data")
    with Predictor(tmp_path / "onnx-only", backend="onnxruntime") as p:  # one candidate: nothing to measure
        assert p.precision == "fp32" and not p.selection.measured and "only candidate" in p.selection.describe()
    with pytest.raises(BundleError, match="unknown backend"):
        Predictor(tiny_bundle, backend="coreml")
    with pytest.raises(BundleError, match="precision must be"):
        Predictor(tiny_bundle, precision="int4")
    with pytest.raises(BundleError, match="no onnx-int8 graphs"):
        Predictor(tmp_path / "onnx-only", backend="onnxruntime", precision="int8")
