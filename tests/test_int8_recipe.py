"""The default INT8 recipe (PTQ, QAT where PTQ loses more than the gate), ONNX Runtime's own
layout and its fallback, and calibration from a folder of a user's images."""

import hashlib
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mipd_edge.config import QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.deploy.preprocess import Preprocess
from mipd_edge.errors import BundleError, MipdEdgeError
from mipd_edge.quantize import bundle as qbundle
from mipd_edge.quantize import quantize_bundle
from mipd_edge.quantize.calibration import calibration_images


def dev_losses(monkeypatch, losses: dict):
    """Dev measurements in which INT8 made by each method loses ``losses[method]`` verb points."""
    def compare(bundle, manifest, data_dir, info, split, progress):
        lost = losses[manifest.quantization["method"]]
        return {"split": split, "backend": "openvino", "int8_minus_fp32_top1": {"verb": -lost, "grnd_value": 0.0}}
    monkeypatch.setattr(qbundle, "compare_precisions", compare)


def encoder_digest(bundle):
    return hashlib.sha256((bundle / "openvino" / "encoder.int8.bin").read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("losses, kept", [({"ptq": 0.4}, "ptq"), ({"ptq": 2.5, "qat": 0.3}, "qat"),
                                          ({"ptq": 1.5, "qat": 1.8}, "ptq")])
def test_the_default_recipe_keeps_ptq_within_the_gate_else_the_smaller_loss(
        tiny_student, tiny_world, tiny_fp32_bundle, tmp_path, monkeypatch, losses, kept):
    dev_losses(monkeypatch, losses)
    made = {}
    real = qbundle.make_int8

    def make(method, out, manifest, job):
        result = real(method, out, manifest, job)
        made[method] = encoder_digest(out)
        return result
    monkeypatch.setattr(qbundle, "make_int8", make)
    out = tmp_path / "int8"
    m = quantize_bundle(tiny_student, tiny_world / "data", out,
                        QuantizeConfig(calib_size=8, qat_epochs=1, from_bundle=str(tiny_fp32_bundle)),
                        run=RunContext(progress=False))
    recipe = m.quantization["recipe"]
    assert recipe["method"] == m.quantization["method"] == kept and set(recipe["tried"]) == set(losses)
    assert recipe["tried"]["ptq"]["verb"] == losses["ptq"] and f"{losses['ptq']:.2f}" in recipe["why"]
    assert encoder_digest(out) == made[kept]  # the graphs of the recipe it names
    assert read_manifest(out).quantization["recipe"] == recipe
    # either recipe gives ONNX Runtime its own layout, checked against FP32 like the others
    assert m.verification["onnxruntime-int8"]["glance_cosine_mean"] >= 0.9
    assert ("QAT weights" in m.quantization["engines"]["onnxruntime-int8"]) == (kept == "qat")
    if kept == "qat":  # fake quantizers stripped to standard Q/DQ every runtime reads
        import onnx

        assert m.quantization["qat"]["steps"] > 0 and m.verification["onnx-int8"]["glance_cosine_mean"] >= 0.9
        ops = {n.op_type for n in onnx.load(str(out / "encoder.int8.onnx")).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "FakeQuantize" not in ops
        assert not list(out.glob("*.grid.onnx"))  # the folded graph it was made from is not left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no QAT copy left behind


def test_a_failing_onnx_runtime_layout_is_left_out_and_said(tiny_student, tiny_world, tiny_fp32_bundle, tmp_path,
                                                           monkeypatch, caplog):
    real = qbundle.agreement

    def agreement(runtime, reference, what):
        if what == "onnxruntime-int8":
            raise BundleError(f"{what}: the INT8 encoder disagrees with FP32 (mean glance cosine 0.862 < 0.9)")
        return real(runtime, reference, what)
    monkeypatch.setattr(qbundle, "agreement", agreement)
    with caplog.at_level(logging.WARNING, logger="mipd_edge.quantize.bundle"):
        m = quantize_bundle(tiny_student, tiny_world / "data", tmp_path / "int8",
                            QuantizeConfig(method="ptq", calib_size=8, formats=("onnx",), evaluate=False,
                                           from_bundle=str(tiny_fp32_bundle)), run=RunContext(progress=False))
    assert "ONNX Runtime's INT8 layout is left out (it runs onnx-int8)" in caplog.text
    assert "onnxruntime-int8" not in m.graphs and "onnxruntime-int8" not in m.quantization["engines"]
    assert not (tmp_path / "int8" / "encoder.int8.ort.onnx").exists()
    assert "onnx-int8" in m.verification and read_manifest(tmp_path / "int8").graphs.keys() == m.graphs.keys()


def write_footage(folder, count, broken=1):
    rng = np.random.default_rng(0)
    (folder / "cam1").mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / ("cam1" if i % 2 else "") / f"{i:03d}.jpg"), rng.integers(0, 255, (40, 60, 3),
                                                                                           np.uint8))
    for i in range(broken):
        (folder / f"broken{i}.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image either")


def test_calibration_from_any_folder_of_images(tmp_path, caplog):
    write_footage(tmp_path / "footage", 12)
    preprocess = Preprocess(size=32)
    with caplog.at_level(logging.WARNING, logger="mipd_edge.quantize.calibration"):
        images = calibration_images(tmp_path / "nowhere", "gsr", preprocess, count=20, progress=False,
                                    folder=tmp_path / "footage")
    assert images.shape == (12, 3, 32, 32) and images.dtype == np.float32  # subfolders read, broken files skipped
    assert "holds 13 images; INT8 calibration wants at least 300" in caplog.text
    assert "calibration skips" in caplog.text and "broken0.png" in caplog.text
    assert len(calibration_images(None, "gsr", preprocess, count=5, progress=False, folder=tmp_path / "footage")) <= 5
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "empty", "no images"), (tmp_path / "missing", "not a folder")):
        with pytest.raises(MipdEdgeError, match=message):
            calibration_images(None, "gsr", preprocess, folder=folder, progress=False)


@pytest.mark.slow
def test_quantize_calibrates_on_the_users_footage_from_the_cli(tiny_student, tiny_world, tiny_fp32_bundle,
                                                                tmp_path):
    write_footage(tmp_path / "footage", 10, broken=0)
    out = tmp_path / "int8"
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "quantize", "--model", str(tiny_student), "--data",
                        str(tiny_world / "data"), "--out", str(out), "--calib-dir", str(tmp_path / "footage"),
                        "--method", "ptq", "--formats", "openvino", "--from-bundle", str(tiny_fp32_bundle)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "holds 10 images; INT8 calibration wants at least 300" in r.stderr
    q = read_manifest(out).quantization
    assert q["calibration_images"] == 10 and q["calibration_source"] == str(tmp_path / "footage")
    assert "INT8 by PTQ" in r.stdout


def test_a_qat_graph_folds_to_float_with_its_weights_on_their_grid(tmp_path):
    """Weights become their quantized-then-dequantized values (per channel, with zero points);
    activations keep only their quantizers' range, so the float graph computes with the QAT
    weights and clips exactly, leaving the rounding of activations to ONNX Runtime's calibration."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mipd_edge.quantize.grid import grid_float_graph

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    w_scale = (np.abs(w).max(0) / 127).astype(np.float32)
    w_zero = np.array([0, 3, -2], np.int8)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w_scale, "w_scale"),
             numpy_helper.from_array(w_zero, "w_zero"), numpy_helper.from_array(np.float32(0.05), "x_scale"),
             numpy_helper.from_array(np.uint8(128), "x_zero")]
    nodes = [helper.make_node("Constant", [], ["x_zero_c"], value=numpy_helper.from_array(np.uint8(128))),
             helper.make_node("Identity", ["x_zero_c"], ["x_zero_i"]),
             helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero_i"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero_i"], ["xd"]),
             helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], axis=1),
             helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], axis=1),
             helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "qdq.onnx")
    grid_float_graph(tmp_path / "qdq.onnx", tmp_path / "float.onnx")
    folded = onnx.load(str(tmp_path / "float.onnx"))
    assert {n.op_type for n in folded.graph.node} == {"Clip", "MatMul"}
    x = rng.normal(size=(2, 4)).astype(np.float32)
    x[0, 0], x[1, 2] = 10.0, -9.0  # beyond what the input's quantizer passes: [-6.4, 6.35]
    q = np.clip(np.rint(w / w_scale) + w_zero, -128, 127)
    expected = np.clip(x, -128 * 0.05, 127 * 0.05) @ ((q - w_zero) * w_scale)
    got = ort.InferenceSession(str(tmp_path / "float.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, x @ w, atol=1e-4)  # the weights did move onto their grid
