"""Shared fixtures: small real datasets written to disk, and the real bundled text encoder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_SPACE = {
    "verbs": {
        "lifting": {"framenet": "Cause_motion", "abstract": "the AGENT lifts the ITEM at the PLACE",
                    "def": "raise something up", "order": ["agent", "item", "place"],
                    "roles": {"agent": {"framenet": "Agent", "def": "the one lifting"},
                              "item": {"framenet": "Theme", "def": "the thing lifted"},
                              "place": {"framenet": "Place", "def": "where it happens"}}},
        "running": {"framenet": "Self_motion", "abstract": "the AGENT runs at the PLACE",
                    "def": "move fast on foot", "order": ["agent", "place"],
                    "roles": {"agent": {"framenet": "Agent", "def": "the runner"},
                              "place": {"framenet": "Place", "def": "where it happens"}}},
    },
    "nouns": {"n1": {"gloss": ["man"], "def": "an adult male"},
              "n2": {"gloss": ["box", "carton"], "def": "a container"},
              "n3": {"gloss": ["field"], "def": "an open area"},
              "n4": {"gloss": ["person"], "def": "a human being"}},
}

NO_BOX = [-1, -1, -1, -1]
TINY_ANNOTATIONS = {
    "img1.jpg": {"verb": "lifting", "width": 40, "height": 40,
                 "bb": {"agent": [0, 0, 10, 10], "item": [20, 20, 30, 30], "place": NO_BOX},
                 "frames": [{"agent": "n1", "item": "n2", "place": "n3"},
                            {"agent": "n4", "item": "n2", "place": ""},
                            {"agent": "n1", "item": "n2", "place": "n3"}]},
    "img2.jpg": {"verb": "lifting", "width": 40, "height": 40,
                 "bb": {"agent": [0, 0, 10, 10], "item": NO_BOX, "place": NO_BOX},
                 "frames": [{"agent": "n1", "item": "", "place": "n3"}] * 3},
    "img3.jpg": {"verb": "running", "width": 40, "height": 40,
                 "bb": {"agent": [0, 0, 10, 10], "place": NO_BOX},
                 "frames": [{"agent": "n1", "place": "n3"}] * 3},
}


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def tiny_files(tmp_path):
    """A three-image SWiG-format dataset with real JPEGs on disk."""
    import cv2
    import numpy as np

    write_json(tmp_path / "imsitu_space.json", TINY_SPACE)
    write_json(tmp_path / "train.json", TINY_ANNOTATIONS)
    (tmp_path / "images").mkdir()
    for name in TINY_ANNOTATIONS:
        cv2.imwrite(str(tmp_path / "images" / name), np.full((40, 40, 3), 128, np.uint8))
    return tmp_path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small SynthSitu dataset, generated once per test session."""
    from mipd_edge.data.synthsitu import generate

    out = tmp_path_factory.mktemp("synthsitu")
    generate(out, seed=3, train=144, dev=48, test=96, image_size=128, workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def minilm():
    from mipd_edge.text import minilm

    return minilm()


TINY_MODEL = {"width": 0.25, "d_model": 64, "heads": 2, "enc_layers": 1, "dec_layers": 1, "ffn": 128}


def tiny_config(**overrides):
    """A training configuration small enough for tests: 64 px, a quarter-width ResNet-18."""
    from mipd_edge.train.config import TrainConfig

    base = dict(method="none", epochs=1, image_size=64, batch_size=16, eval_batch_size=32, model=TINY_MODEL)
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Text-embedding and teacher caches shared by the session's tests."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["MIPD_EDGE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory, cache_dir):
    """Real SynthSitu data, a real (tiny) teacher trained on its own sample and template
    rationales, made once."""
    from mipd_edge.data.synthsitu import generate
    from mipd_edge.train.rationales import generate_rationales
    from mipd_edge.train.teacher_train import train_teacher

    root = tmp_path_factory.mktemp("world")
    generate(root / "data", seed=5, train=240, dev=48, test=48, image_size=96, workers=1, progress=False)
    # the teacher's own sample: same world, other images (it never sees the students')
    generate(root / "teacher-data", seed=1005, train=240, dev=48, test=0, image_size=96, workers=1, progress=False)
    train_teacher(root / "teacher-data", root / "teacher", tiny_config(epochs=2), progress=False, cache_dir=cache_dir)
    generate_rationales(root / "data", root / "teacher", root / "rationales.jsonl", progress=False,
                        cache_dir=cache_dir)
    return root


@pytest.fixture(scope="session")
def tiny_student(tiny_world, tmp_path_factory, cache_dir):
    """A tiny student (one epoch, method none) trained on the tiny world."""
    from mipd_edge.train.distill import distill

    out = tmp_path_factory.mktemp("student")
    distill(tiny_world / "data", out, tiny_config(method="none", epochs=1), progress=False, cache_dir=cache_dir)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_world, tiny_student, tmp_path_factory):
    """The tiny student as an INT8 bundle (PTQ): FP32 and INT8 graphs for ONNX Runtime and OpenVINO."""
    from mipd_edge.quantize import quantize_bundle

    out = tmp_path_factory.mktemp("bundle")
    quantize_bundle(tiny_student, tiny_world / "data", out, "ptq", calib_size=16, progress=False)
    return out


@pytest.fixture(scope="session")
def ort_static_bundle(tiny_world, tiny_student, tmp_path_factory):
    """The tiny student as an FP32 ONNX bundle, and as an INT8 bundle in ONNX Runtime's own
    static layout made from it (its FP32 graphs copied, not exported again)."""
    from mipd_edge.export import export_bundle
    from mipd_edge.quantize import quantize_bundle

    root = tmp_path_factory.mktemp("ort-static")
    export_bundle(tiny_student, root / "fp32", ("onnx",), data=tiny_world / "data")
    quantize_bundle(tiny_student, tiny_world / "data", root / "ort", "ptq", calib_size=16, formats=("onnx",),
                    ort_static=True, progress=False, fp32_bundle=root / "fp32")
    return root / "fp32", root / "ort"
