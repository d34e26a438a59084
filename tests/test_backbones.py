"""Backbones from local weights, a timm model's and a CLIP image tower's: what they load, what
they refuse, and students on them through training, export, INT8 and every runtime."""

import json
import shutil

import numpy as np
import pytest
import torch

from helpers import TINY, assert_same_situations, run_without_torch, save_tiny, tiny_yaml
from mipd_edge import Predictor
from mipd_edge.cli import main
from mipd_edge.config import ExportConfig, QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.data.swig import SituDataset
from mipd_edge.errors import MipdEdgeError
from mipd_edge.models.backbones import build_backbone
from mipd_edge.models.student import student_config
from mipd_edge.quantize import quantize_bundle

TIMM = "test_resnet"  # timm's own test-sized ResNet (0.4M parameters), mean / std 0.5: not ImageNet's


def saved_timm_model(path, name=TIMM):
    """A timm model with random weights, saved as a local checkpoint in timm's layout."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name)
    save_file(model.state_dict(), str(path))
    return model


def test_a_timm_backbone_loads_local_weights_and_refuses_what_does_not_fit(tmp_path):
    model = saved_timm_model(tmp_path / "w.safetensors")
    backbone = build_backbone(f"timm:{TIMM}", weights=tmp_path / "w.safetensors")
    own, loaded = model.state_dict(), backbone.body.state_dict()
    shared = [k for k in loaded if k in own]
    assert len(shared) > 20 and all(torch.equal(loaded[k], own[k]) for k in shared)
    c4, c5 = backbone.eval()(torch.zeros(1, 3, 64, 64))
    assert (c4.shape[1:], c5.shape[1:]) == ((backbone.channels[0], 4, 4), (backbone.channels[1], 2, 2))
    assert backbone.normalization == ((0.5,) * 3, (0.5,) * 3)
    assert student_config("edge-s", backbone=f"timm:{TIMM}").width == 1.0  # timm's width, not edge-s's 0.5

    saved_timm_model(tmp_path / "other.safetensors", "test_efficientnet")
    for kwargs, match in (({"weights": tmp_path / "other.safetensors"}, "not weights of timm model"),
                          ({"weights": tmp_path / "missing.safetensors"}, "not found"),
                          ({"width": 0.5}, "timm's width")):
        with pytest.raises(MipdEdgeError, match=match):
            build_backbone(f"timm:{TIMM}", **kwargs)
    with pytest.raises(MipdEdgeError, match="Unknown model"):
        build_backbone("timm:no_such_model")
    with pytest.raises(MipdEdgeError, match="needs stride 16 and stride 32"):
        build_backbone("timm:test_vit")  # a ViT: every map at stride 16


@pytest.mark.slow
def test_a_timm_student_trains_exports_quantizes_and_runs_on_every_backend(tiny_world, cache_dir, tmp_path):
    data, student, weights = tiny_world / "data", tmp_path / "student", tmp_path / "pretrained" / "w.safetensors"
    weights.parent.mkdir()
    saved_timm_model(weights)
    assert main(["distill", "--data", str(data), "--out", str(student), "--method", "none", "--backbone",
                 f"timm:{TIMM}", "--backbone-weights", str(weights)] + TINY + tiny_yaml(tmp_path, width=None)) == 0
    info = json.loads((student / "config.json").read_text())
    assert info["model"]["backbone"] == f"timm:{TIMM}" and info["model"]["backbone_weights"] == str(weights)
    assert info["model"]["d_model"] == 64  # the file's architecture, the command line's backbone
    assert info["preprocess"]["mean"] == [0.5] * 3 and info["preprocess"]["std"] == [0.5] * 3
    shutil.rmtree(weights.parent)  # the trained weights hold the backbone's: the file is not needed again

    bundle = tmp_path / "bundle"
    m = quantize_bundle(student, data, bundle, QuantizeConfig(method="ptq", calib_size=16),
                        run=RunContext(progress=False))
    assert list(m.preprocess["mean"]) == [0.5] * 3
    assert set(m.graphs) == {"onnx", "openvino", "onnx-int8", "onnxruntime-int8", "openvino-int8"}
    assert max(m.verification["onnx"]["max_abs_diff"].values()) <= m.verification["onnx"]["tolerance"]
    qat = quantize_bundle(student, data, tmp_path / "qat",
                          QuantizeConfig(method="qat", calib_size=16, qat_epochs=1, formats=("onnx",)),
                          run=RunContext(progress=False))
    assert qat.quantization["qat"]["steps"] > 0 and qat.verification["onnx-int8"]["glance_cosine_mean"] >= 0.9

    test = SituDataset(data, "test")
    images = [test[i].image for i in range(0, len(test), 8)]
    options = {"torch": {}, "onnxruntime": {}, "openvino": {}}
    runs = {(b, p): opts for b, opts in options.items() for p in ("fp32", "int8") if (b, p) != ("torch", "int8")}
    results = {}
    for (backend, precision), options in runs.items():
        with Predictor(bundle, backend=backend, precision=precision, **options) as p:
            results[backend, precision] = p.predict(images)
    for backend in ("onnxruntime", "openvino"):
        assert_same_situations(results["torch", "fp32"], results[backend, "fp32"])
        int8 = results[backend, "int8"]  # INT8 runs and answers in the same vocabulary
        assert len(int8) == len(images) and all(np.isfinite(s.candidates[0].score) for s in int8)
    with Predictor(tmp_path / "qat", backend="onnxruntime", precision="int8") as p:
        assert len(p.predict(images)) == len(images)


def test_a_clip_image_tower_loads_the_clip_models_weights_and_builds_without_them(tmp_path, tokenizer_dir):
    import transformers

    from mipd_edge.models.store import load_student, save_model
    from mipd_edge.models.student import create_student

    clip = save_tiny("clip", tmp_path / "clip", tokenizer_dir)
    reference = transformers.CLIPModel.from_pretrained(str(clip)).vision_model.eval()
    student = create_student("clip", backbone_weights=str(clip), image_size=64, text_dim=24).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(student.backbone(x), reference(pixel_values=x).last_hidden_state, atol=1e-6)
    assert student.preprocess.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    save_model(tmp_path / "s", student, {"kind": "student", "model": student.cfg.to_json()})
    shutil.rmtree(clip)  # the student's config says how to build the tower; its weights hold the tower's
    loaded, _ = load_student(tmp_path / "s")
    with torch.no_grad():
        assert torch.equal(loaded.encode(x)[1], student.encode(x)[1])
    wider = create_student("clip", backbone_config=student.cfg.backbone_config, image_size=96, text_dim=24).eval()
    assert wider.encode(torch.randn(1, 3, 96, 96))[0].shape[1] == (96 // 16) ** 2 + 1  # positions interpolated
    with pytest.raises(MipdEdgeError, match="--backbone-weights"):
        create_student("clip", text_dim=24)


@pytest.mark.slow
def test_a_clip_student_embeds_its_vocabulary_with_the_clip_text_tower_shipped_as_onnx(
        tiny_world, cache_dir, tmp_path, tokenizer_dir):
    from mipd_edge.export import export_bundle
    from mipd_edge.text import load_text_encoder

    data, student, bundle = tiny_world / "data", tmp_path / "student", tmp_path / "bundle"
    clip = save_tiny("clip", tmp_path / "clip", tokenizer_dir)
    assert main(["distill", "--data", str(data), "--out", str(student), "--method", "none", "--student", "clip",
                 "--backbone-weights", str(clip)] + TINY + tiny_yaml(tmp_path, width=None)) == 0
    info = json.loads((student / "config.json").read_text())
    assert info["text_encoder_spec"] == f"clip:{clip}" and info["text_encoder"].startswith("hf-clip-text@")
    assert info["model"]["text_dim"] == 24  # CLIP's projection, not MiniLM's 384

    m = export_bundle(student, bundle, ExportConfig(formats=("onnx", "openvino"), with_text_encoder=True), data=data)
    assert m.text_encoder_onnx["max_abs_diff"] < 1e-3
    quantize_bundle(student, data, tmp_path / "int8", QuantizeConfig(method="ptq", calib_size=16, from_bundle=bundle),
                    run=RunContext(progress=False))
    test = SituDataset(data, "test")
    images = [test[i].image for i in range(0, len(test), 8)]
    results = {}
    for backend, options in (("torch", {}), ("onnxruntime", {}), ("openvino", {})):
        with Predictor(bundle, backend=backend, precision="fp32", **options) as p:
            results[backend] = p.predict(images)
    for backend in ("onnxruntime", "openvino"):
        assert_same_situations(results["torch"], results[backend])
    with Predictor(tmp_path / "int8", backend="onnxruntime", precision="int8") as p:
        assert len(p.predict(images)) == len(images)

    text = "Someone raises one arm and waves at a friend."
    r = run_without_torch(f"""
from mipd_edge import Predictor
p = Predictor({str(bundle)!r}, backend="onnxruntime")
p.vocabulary.add_verb("waving hello", {text!r}, ["agent", "place"])
names, matrix = p.vocabulary.verb_matrix()
print("EMB", " ".join(f"{{v:.6f}}" for v in matrix[names.index("waving hello")]))
print("torch loaded:", "torch" in sys.modules)
""")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "torch loaded: False" in r.stdout
    shipped = np.array([float(v) for v in r.stdout.split("EMB ")[1].split("\n")[0].split()])
    with Predictor(bundle, backend="onnxruntime") as p:  # the same edit through CLIP's text tower in torch
        p.vocabulary.add_verb("waving hello", text, ["agent", "place"], encoder=load_text_encoder(f"clip:{clip}"))
        names, matrix = p.vocabulary.verb_matrix()
    assert shipped.shape == (24,) and np.allclose(shipped, matrix[names.index("waving hello")], atol=1e-4)
