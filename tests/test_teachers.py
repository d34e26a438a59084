"""Teacher adapters, loaded through their real loading code from local files the tests write."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import quiet, save_tiny, write_json
from mipd_edge.config import RationaleConfig
from mipd_edge.context import RunContext
from mipd_edge.errors import MipdEdgeError
from mipd_edge.models.teacher import HFClipTeacher, load_teacher
from mipd_edge.train.task import TrainingInputs


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


def save_tiny_blip2(out):
    """A tiny random-weight BLIP-2 (vision tower, Q-Former, a one-layer OPT) in the
    transformers format, saved in several shards as large checkpoints are."""
    import transformers

    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                 patch_size=8)
    qformer = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                   encoder_hidden_size=32, vocab_size=100)
    lm = transformers.OPTConfig(hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2, vocab_size=100,
                                word_embed_proj_dim=32)
    torch.manual_seed(0)
    model = transformers.Blip2Model(transformers.Blip2Config(vision_config=tower, qformer_config=qformer,
                                                             text_config=lm.to_dict(), num_query_tokens=4)).eval()
    model.save_pretrained(out, max_shard_size="100KB")
    return model


def test_blip2_teacher_reads_the_vision_tower_and_a_clip_text_tower(tmp_path, tokenizer_dir):
    model = save_tiny_blip2(tmp_path / "blip2")
    assert (tmp_path / "blip2" / "model.safetensors.index.json").is_file()
    clip = save_tiny("clip", tmp_path / "clip", tokenizer_dir)
    teacher = load_teacher(f"blip2:{tmp_path / 'blip2'}:{clip}")
    assert not teacher.image_text and teacher.dim == 32 and teacher.preprocess.size == 32
    x = torch.randn(2, 3, 32, 32)
    g, patches = teacher.encode_images(x)
    with torch.no_grad():
        out = model.vision_model(pixel_values=x)  # what the authors' BLIP_feat.py saves
    assert torch.allclose(g, F.normalize(out.pooler_output, dim=-1), atol=1e-5)
    assert patches.shape == (2, 4, 4, 32)
    assert torch.allclose(patches.reshape(2, 16, 32), F.normalize(out.last_hidden_state[:, 1:], dim=-1), atol=1e-5)
    texts = ["a person lifts a box", "a dog"]
    assert torch.allclose(teacher.encode_text(texts), HFClipTeacher(clip).encode_text(texts))
    assert teacher.text_encoder().dim == 24  # CLIP's text space, not the tower's 32
    for spec, match in ((f"blip2:{clip}:{clip}", "not blip-2"), (f"blip2:{tmp_path / 'blip2'}", "blip2:BLIP2_DIR")):
        with pytest.raises(MipdEdgeError, match=match):
            load_teacher(spec)


@pytest.mark.slow
def test_blip2_teacher_distils_what_needs_no_image_text_scores(tiny_world, cache_dir, tmp_path, tokenizer_dir):
    """The authors' teacher drives their formulation (random negatives: it cannot judge them);
    what needs its verb scores is refused with one clear error."""
    from helpers import tiny_config
    from mipd_edge.train.config import MipdConfig
    from mipd_edge.train.distill import distill
    from mipd_edge.train.rationales import generate_rationales, load_rationales

    save_tiny_blip2(tmp_path / "blip2")
    spec = f"blip2:{tmp_path / 'blip2'}:{save_tiny('clip', tmp_path / 'clip', tokenizer_dir)}"
    data, rationales = tiny_world / "data", tmp_path / "r.jsonl"
    with pytest.raises(MipdEdgeError, match="cannot judge negatives"):
        generate_rationales(data, spec, rationales, run=RunContext(progress=False, cache_dir=cache_dir))
    generate_rationales(data, spec, rationales, RationaleConfig(judgment="random"),
                        run=RunContext(progress=False, cache_dir=cache_dir))
    records = list(load_rationales(rationales).values())
    assert records and all(r["glimpse"]["teacher_positive"] is None and r["glimpse"]["negatives"] for r in records)
    ours = tiny_config(method="mipd", mipd=MipdConfig(negatives="random"))
    for cfg, match in ((tiny_config(method="kd"), "kd's soft labels"), (ours, "soft-label term")):
        with pytest.raises(MipdEdgeError, match=match):
            distill(data, tmp_path / cfg.method, cfg, TrainingInputs(teacher=spec, rationales=rationales),
                    quiet(cache_dir))
    from mipd_lab.authors import AUTHORS  # the authors' formulation, which distils BLIP-2's features alone

    cfg = tiny_config(method=AUTHORS.name, mipd=MipdConfig(negatives="random"))
    result = distill(data, tmp_path / "authors", cfg, TrainingInputs(teacher=spec, rationales=rationales),
                     quiet(cache_dir))
    assert np.isfinite(result["best_selection_score"])
    assert json.loads((tmp_path / "authors" / "config.json").read_text())["teacher"].startswith("hf-blip-2@")


TINY_OPEN_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                                  "patch_size": 8},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_teacher_errors(tmp_path):
    with pytest.raises(MipdEdgeError, match="no teacher"):
        load_teacher(tmp_path)
    with pytest.raises(MipdEdgeError, match="not found"):
        load_teacher(f"open_clip:ViT-B-32:{tmp_path / 'missing.bin'}")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(MipdEdgeError, match="model config not found"):
        load_teacher(f"open_clip:{tmp_path / 'missing.json'}:{tmp_path / 'weights.bin'}")


def test_open_clip_teacher_from_local_files(tmp_path):
    """A small random open_clip ViT, its config and weights saved locally: the teacher's
    global features are open_clip's own image embeddings, its patch features the projected
    patch tokens, its text features open_clip's text embeddings."""
    import open_clip

    config = write_json(tmp_path / "tiny-clip.json", TINY_OPEN_CLIP)
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip").eval()
    torch.save(model.state_dict(), tmp_path / "weights.bin")
    teacher = load_teacher(f"open_clip:{config}:{tmp_path / 'weights.bin'}")
    assert teacher.dim == 32 and teacher.preprocess.size == 32 and teacher.id.startswith("open_clip-tiny-clip@")
    x = torch.randn(2, 3, 32, 32)
    g, patches = teacher.encode_images(x)
    with torch.no_grad():
        assert torch.allclose(g, F.normalize(model.encode_image(x), dim=-1), atol=1e-5)
    assert patches.shape == (2, 4, 4, 32) and torch.allclose(patches.norm(dim=-1), torch.ones(2, 4, 4), atol=1e-5)
    assert not torch.allclose(patches[:, 0, 0], patches[:, 3, 3])  # one feature per patch, not the pooled one
    texts = ["a person riding a horse", "a bowl of soup"]
    with torch.no_grad():
        expected = F.normalize(model.encode_text(open_clip.get_tokenizer("tiny-clip")(texts)), dim=-1)
    assert torch.allclose(teacher.encode_text(texts), expected, atol=1e-5)
    torch.save(dict(list(model.state_dict().items())[:3]), tmp_path / "other.bin")  # not the whole model
    with pytest.raises(MipdEdgeError, match="tiny-clip"):
        load_teacher(f"open_clip:{config}:{tmp_path / 'other.bin'}")


def test_synthsitu_teacher_refuses_a_student(tiny_world, tmp_path):
    import json
    import shutil

    shutil.copytree(tiny_world / "teacher", tmp_path / "t")
    info = json.loads((tmp_path / "t" / "config.json").read_text())
    info["kind"] = "student"
    (tmp_path / "t" / "config.json").write_text(json.dumps(info))
    with pytest.raises(MipdEdgeError, match="not a teacher"):
        load_teacher(tmp_path / "t")
