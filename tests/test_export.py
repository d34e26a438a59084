import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mipd_edge.config import ExportConfig, QuantizeConfig
from mipd_edge.deploy.bundle import GRAPH_FORMATS, GraphFormat, graph_files, graph_format, read_manifest
from mipd_edge.deploy.runtimes import load_runtime
from mipd_edge.errors import BundleError, MipdEdgeError
from mipd_edge.export import export_bundle
from mipd_edge.quantize import quantize_bundle


def test_int8_bundle_is_complete_and_verified(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert m.precision == "int8"
    assert set(m.graphs) == {"onnx", "openvino", "onnx-int8", "onnxruntime-int8", "openvino-int8"}
    assert m.inputs["decoder"] == ["memory", "role_emb", "verb_emb", "role_mask"]
    for fmt in ("onnx", "openvino"):
        check = m.verification[fmt]
        assert check["images"] == 8 and max(check["max_abs_diff"].values()) <= check["tolerance"] == 1e-3
    for fmt in ("onnx-int8", "onnxruntime-int8", "openvino-int8"):
        assert m.verification[fmt]["glance_cosine_mean"] >= 0.9
    metrics = m.metrics
    assert set(metrics["fp32"]) == {"all", "seen", "rare", "unseen"} and "int8" in metrics
    assert m.quantization["method"] == "ptq" and m.quantization["calibration_images"] == 16
    for name in ("vocabulary.npz", "weights.safetensors", "encoder.onnx", "encoder.int8.onnx", "encoder.int8.ort.onnx",
                 "openvino/encoder.int8.xml", "openvino/decoder.bin"):
        assert (tiny_bundle / name).is_file()


def test_runtimes_agree_and_batches_work(tiny_bundle):
    m = read_manifest(tiny_bundle)
    size = m.image_size
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    with load_runtime("onnxruntime", tiny_bundle, m, precision="fp32") as ort, \
            load_runtime("openvino", tiny_bundle, m, precision="fp32") as ov:
        a, b = ort.encode(x), ov.encode(x)
        assert np.allclose(a[0], b[0], atol=1e-4) and np.allclose(a[1], b[1], atol=1e-4)
        with pytest.raises(Exception):
            ort.encode(np.repeat(x, 2, axis=0))  # the encoder was exported for batch 1
        r, d = m.max_roles, m.text_dim
        memory = np.repeat(a[0], 5, axis=0)  # the decoder always takes any batch
        out = ort.run("decoder", {"memory": memory, "role_emb": np.zeros((5, r, d), np.float32),
                                  "verb_emb": np.zeros((5, d), np.float32), "role_mask": np.ones((5, r), np.float32)})
        assert out["boxes"].shape == (5, r, 4)


def test_dynamic_batch_and_fp16_export(tiny_student, tiny_world, tmp_path):
    m = export_bundle(tiny_student, tmp_path / "b",
                      ExportConfig(formats=("onnx", "openvino"), precision="fp16", dynamic_batch=True),
                      data=tiny_world / "data")
    assert m.dynamic_batch and m.verification["openvino"]["tolerance"] == 5e-2
    size = m.image_size
    with load_runtime("onnxruntime", tmp_path / "b", m) as ort:
        for batch in (1, 3):
            memory, glance = ort.encode(np.zeros((batch, 3, size, size), np.float32))
            assert glance.shape == (batch, m.text_dim)
    xml = (tmp_path / "b" / "openvino" / "encoder.xml").read_text()
    assert 'element_type="f16"' in xml  # weights compressed to FP16


def test_broken_bundles_fail_with_clear_errors(tiny_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    m = read_manifest(copy)
    data = (copy / "encoder.onnx").read_bytes()
    (copy / "encoder.onnx").write_bytes(data[: len(data) // 3])  # truncated
    with pytest.raises(BundleError, match="encoder.onnx"):
        load_runtime("onnxruntime", copy, m, precision="fp32")
    (copy / "openvino" / "encoder.xml").write_text("<not a model")
    with pytest.raises(BundleError, match="encoder.xml"):
        load_runtime("openvino", copy, m, precision="fp32")
    (copy / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_runtime("onnxruntime", copy, m)  # the INT8 graphs share the FP32 decoder
    (copy / "bundle.json").write_text("{}")
    with pytest.raises(BundleError, match="not a mipd-edge bundle"):
        read_manifest(copy)
    with pytest.raises(BundleError, match="not found"):
        read_manifest(tmp_path / "nowhere")


def test_export_refuses_what_is_not_a_student(tiny_world, tmp_path):
    with pytest.raises(MipdEdgeError, match="not a trained student"):
        export_bundle(tiny_world / "teacher", tmp_path / "x", data=tiny_world / "data")
    with pytest.raises(MipdEdgeError, match="not a trained mipd-edge model"):
        export_bundle(tmp_path, tmp_path / "x", data=tiny_world / "data")
    with pytest.raises(MipdEdgeError, match="quantize"):
        export_bundle(tiny_world / "teacher", tmp_path / "x", ExportConfig(precision="int8"))


def test_an_int8_bundle_holds_onnx_runtimes_own_layout(tiny_student, tiny_world, tiny_fp32_bundle, tiny_bundle,
                                                      tmp_path):
    """NNCF's Q/DQ graph for TensorRT, ONNX Runtime's static layout for ONNX Runtime (u8
    activations, 7-bit s8 weights), each checked against FP32; the FP32 graphs copied, not
    exported again."""
    import onnx

    from mipd_edge.deploy.runtimes import load_runtime

    m = read_manifest(tiny_bundle)
    assert {"onnx-int8", "onnxruntime-int8", "openvino-int8"} <= set(m.verification)
    assert graph_format("onnxruntime", "int8", m.graphs) == "onnxruntime-int8"
    assert graph_format("tensorrt", "int8", m.graphs) == "onnx-int8"
    with load_runtime("onnxruntime", tiny_bundle, m, precision="int8") as runtime:
        assert runtime.sessions["encoder"].path.name == "encoder.int8.ort.onnx"
    graph = onnx.load(str(tiny_bundle / "encoder.int8.ort.onnx")).graph
    initializers = {i.name: i for i in graph.initializer}
    first_q = next(n for n in graph.node if n.op_type == "QuantizeLinear")
    assert initializers[first_q.input[2]].data_type == onnx.TensorProto.UINT8  # u8 activations
    weights = [onnx.numpy_helper.to_array(initializers[n.input[0]]) for n in graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in initializers
               and initializers[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert weights and max(int(abs(w.astype(int)).max()) for w in weights) <= 64  # 7-bit: no VPMADDUBSW overflow
    assert (tiny_bundle / "encoder.onnx").read_bytes() == (tiny_fp32_bundle / "encoder.onnx").read_bytes()
    assert m.verification["onnx"] == read_manifest(tiny_fp32_bundle).verification["onnx"]
    for source, formats, dynamic, reason in (
        (tiny_fp32_bundle, ("onnx", "tensorrt"), False, "lacks"),
        (tiny_fp32_bundle, ("onnx",), True, "batch mode"),
        (tiny_bundle, ("onnx",), False, "FP32"),
    ):
        with pytest.raises(MipdEdgeError, match=reason):
            quantize_bundle(tiny_student, tiny_world / "data", tmp_path / "no",
                            QuantizeConfig(formats=formats, dynamic_batch=dynamic, from_bundle=source))


@pytest.mark.slow
def test_export_and_quantize_cli(tiny_student, tiny_world, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "export", "--model", str(tiny_student), "--out",
                        str(tmp_path / "b"), "--data", str(tiny_world / "data"), "--formats", "onnx"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "verified onnx" in r.stdout
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["graphs"].keys() == {"onnx"}
    # an INT8 bundle starts from an FP32 bundle only where that bundle fits it
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "quantize", "--model", str(tiny_student), "--data",
                        str(tiny_world / "data"), "--out", str(tmp_path / "q"), "--formats", "onnx", "--dynamic-batch",
                        "--from-bundle", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "its batch mode differs" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "q").exists()
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "export", "--model", str(tmp_path), "--out",
                        str(tmp_path / "c"), "--data", str(tiny_world / "data")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a trained mipd-edge model" in r.stderr


def test_a_graph_format_is_one_row_of_the_table(monkeypatch):
    """Which graphs a backend runs a precision from comes from GRAPH_FORMATS alone: a row for
    FP16 ONNX graphs is all it takes for ONNX Runtime and TensorRT to read them."""
    assert [graph_format("onnxruntime", p) for p in ("fp32", "fp16", "int8")] == ["onnx", "onnx", "onnx-int8"]
    # a backend's own layout where the bundle holds it
    assert graph_format("onnxruntime", "int8", ["onnx-int8", "onnxruntime-int8"]) == "onnxruntime-int8"
    assert graph_format("torch", "fp32") is None
    monkeypatch.setitem(GRAPH_FORMATS, "onnx-fp16", GraphFormat("onnx", "fp16", {"encoder": "encoder.fp16.onnx",
                                                                                "decoder": "decoder.fp16.onnx"}))
    assert graph_format("onnxruntime", "fp16") == graph_format("tensorrt", "fp16") == "onnx-fp16"
    assert graph_files("onnx-fp16")["encoder"] == "encoder.fp16.onnx"
