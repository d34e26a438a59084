"""What a hostile user tries: damaged bundles, many threads, oversized or odd inputs,
occupied outputs. Every case must end in a MipdEdgeError (or a one-line CLI error), never
a traceback, a hang, a lost file or a different answer given as if nothing happened."""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest

from mipd_edge import Predictor
from mipd_edge.config import ExportConfig
from mipd_edge.context import RunContext
from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.deploy.image import load_image
from mipd_edge.deploy.runtimes import installed
from mipd_edge.errors import (
    BundleError,
    DatasetError,
    InvalidImageError,
    MipdEdgeError,
    OutputExistsError,
    VocabularyError,
)
from mipd_edge.files import atomic_output, read_json
from mipd_edge.vocabulary import Vocabulary

CLI = [sys.executable, "-m", "mipd_edge.cli"]
BACKENDS = [b for b in ("onnxruntime", "openvino", "torch") if installed(b)]


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A private copy of the tiny INT8 bundle to damage."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def edit_manifest(bundle, change):
    manifest = json.loads((bundle / "bundle.json").read_text())
    change(manifest)
    (bundle / "bundle.json").write_text(json.dumps(manifest))


def images(tiny_world, count=4):
    folder = tiny_world / "data" / "images"
    return [load_image(p) for p in sorted(folder.iterdir())[:count]]


# -- damaged bundles ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["openvino/decoder.bin", "decoder.onnx", "encoder.int8.onnx", "vocabulary.npz",
                                  "weights.safetensors"])
def test_a_damaged_file_is_refused_on_every_backend(bundle, name):
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = os.urandom(min(4096, len(data) // 2))
    path.write_bytes(bytes(data))
    for backend in BACKENDS:
        with pytest.raises(BundleError, match=f"{name}.*changed since export"):
            Predictor(bundle, backend=backend, precision="fp32")
    (bundle / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        Predictor(bundle, backend="onnxruntime")


MANIFEST_DAMAGE = {
    "scales.verb NaN": (lambda m: m["scales"].update(verb=float("nan")), "scales.verb"),
    "scales.noun 0": (lambda m: m["scales"].update(noun=0), "scales.noun"),
    "scales empty": (lambda m: m.update(scales={}), "scales.verb"),
    "std 0": (lambda m: m["preprocess"].update(std=[0.2, 0.0, 0.2]), "preprocess.std"),
    "mean of two": (lambda m: m["preprocess"].update(mean=[0.4, 0.4]), "preprocess.mean"),
    "graphs a string": (lambda m: m["graphs"].update(onnx="encoder.onnx"), "graphs.onnx"),
    "max_roles text": (lambda m: m.update(max_roles="six"), "max_roles"),
    "max_roles 9": (lambda m: m.update(max_roles=9), "max_roles"),
    "size disagrees": (lambda m: m["preprocess"].update(size=m["preprocess"]["size"] + 32), "preprocess.size"),
    "text_dim disagrees": (lambda m: m.update(text_dim=m["text_dim"] + 1), "text_dim"),
    "unknown field": (lambda m: m.update(extra=1), "unknown fields"),
    "path with ..": (lambda m: m["graphs"]["onnx"].update(encoder="../outside.onnx"), "points outside"),
    "absolute path": (lambda m: m.update(vocabulary="/etc/passwd"), "points outside"),
    "unrecorded file": (lambda m: m["files"].pop("decoder.onnx"), "without a recorded hash"),
    "bad digest": (lambda m: m["files"].update({"decoder.onnx": "zz"}), "files.decoder.onnx"),
    "gate NaN": (lambda m: m["quantization"].update(accuracy_gate=float("nan")), "accuracy_gate"),
    "text encoder id": (lambda m: m.update(text_encoder_onnx={"folder": "text_encoder", "id": "other"}),
                        "text_encoder_onnx.id"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_DAMAGE))
def test_a_malformed_manifest_names_the_field(bundle, case):
    change, field = MANIFEST_DAMAGE[case]
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=field.replace(".", r"\.").replace("..", r"\.\.")):
        Predictor(bundle, backend="onnxruntime")


def test_deep_nesting_is_refused(bundle):
    (bundle / "bundle.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BundleError, match="nested too deeply"):
        read_manifest(bundle)
    nested = 1
    for _ in range(40):
        nested = [nested]
    edit = {"format": "mipd-edge-bundle", "version": 2, "model": {"a": nested}}
    (bundle / "bundle.json").write_text(json.dumps(edit))
    with pytest.raises(BundleError, match="nested more than"):
        read_manifest(bundle)


def test_a_symlink_out_of_the_bundle_is_refused(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    outside = tmp_path / "outside.onnx"
    shutil.move(bundle / "decoder.onnx", outside)
    (bundle / "decoder.onnx").symlink_to(outside)  # same bytes, same hash: only the location is wrong
    with pytest.raises(BundleError, match="outside the bundle"):
        Predictor(bundle, backend="onnxruntime")


@pytest.mark.parametrize("backend", [b for b in ("onnxruntime", "openvino") if installed(b)])
def test_manifest_values_must_agree_with_the_graphs(bundle, backend):
    """Consistent but wrong: the manifest and its model section both say 5 roles, the graphs take 6."""
    def five_roles(m):
        m["max_roles"] = m["model"]["max_roles"] = 5
    edit_manifest(bundle, five_roles)
    with pytest.raises(BundleError, match="role_emb"):
        Predictor(bundle, backend=backend, precision="fp32")


@pytest.mark.skipif(not installed("torch"), reason="the torch backend is not installed")
def test_a_model_section_that_builds_nothing(bundle):
    edit_manifest(bundle, lambda m: m["model"].update(width="wide"))
    with pytest.raises(BundleError, match="'model' does not describe a buildable model"):
        Predictor(bundle, backend="torch")


def test_vocabulary_and_weights_are_checked_on_their_own(tiny_bundle, tiny_student, tmp_path):
    import torch

    from mipd_edge.models.store import load_state
    from mipd_edge.models.student import StudentConfig, build_student

    with np.load(tiny_bundle / "vocabulary.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for damage in ("nan", "zero"):
        broken = dict(arrays)
        broken["noun_embeddings"] = arrays["noun_embeddings"].copy()
        broken["noun_embeddings"][3] = np.nan if damage == "nan" else 0.0
        np.savez(tmp_path / f"{damage}.npz", **broken)
        with pytest.raises(VocabularyError, match="NaN" if damage == "nan" else "zero length"):
            Vocabulary.load(tmp_path / f"{damage}.npz")
    manifest = read_manifest(tiny_bundle)
    model = build_student(StudentConfig.from_json(manifest.model))
    state = model.state_dict()
    half = dict(list(state.items())[: len(state) // 2])
    with pytest.raises(MipdEdgeError, match="do not fit"):
        load_state(model, half, "w.safetensors")
    nan = {k: v.clone() for k, v in state.items()}
    next(v for v in nan.values() if v.is_floating_point()).view(-1)[0] = torch.nan
    with pytest.raises(MipdEdgeError, match="NaN"):
        load_state(model, nan, "w.safetensors")


def test_check_command(tiny_bundle, bundle):
    r = subprocess.run(CLI + ["check", str(tiny_bundle)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ran = [line.split()[:2] for line in r.stdout.splitlines()[1:-1]]
    assert ["onnxruntime", "int8"] in ran and ["openvino", "fp32"] in ran and r.stdout.strip().endswith("ok")
    gate = next(line for line in r.stdout.splitlines() if line.strip().startswith("int8 - FP32 on dev:"))
    assert re.search(r"verb [+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", gate)  # with its 95% interval
    assert gate.endswith(("auto may use it", "(gate: 1)"))
    path = bundle / "openvino" / "encoder.xml"
    path.write_text(path.read_text().replace("<layers>", "<layers> "))
    r = subprocess.run(CLI + ["check", str(bundle)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "openvino/encoder.xml has changed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# -- threads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend,precision", [(b, p) for b in BACKENDS for p in ("fp32", "int8")
                                               if not (b == "torch" and p == "int8")])
def test_one_predictor_serves_many_threads(tiny_bundle, tiny_world, backend, precision):
    predictor = Predictor(tiny_bundle, backend=backend, precision=precision)
    frames = images(tiny_world)
    expected = [predictor(f).to_json() for f in frames]
    errors, answers = [], []

    def work(worker):
        try:
            for i in range(25):
                k = (worker + i) % len(frames)
                answers.append((k, predictor(frames[k]).to_json()))
        except Exception as exc:  # any error at all fails the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(answers) == 150
    for k, answer in answers:
        same_answer(answer, expected[k])


def same_answer(got, want):
    """The same verbs in the same order, the same nouns and boxes, scores equal to float noise."""
    assert [v["verb"] for v in got["verbs"]] == [v["verb"] for v in want["verbs"]]
    for g, w in zip(got["verbs"], want["verbs"]):
        assert g["score"] == pytest.approx(w["score"], abs=1e-4)
        assert {r: v["noun"] for r, v in g["roles"].items()} == {r: v["noun"] for r, v in w["roles"].items()}
        for role, value in g["roles"].items():
            assert (value["box"] is None) == (w["roles"][role]["box"] is None)
            if value["box"] is not None:
                assert value["box"] == pytest.approx(w["roles"][role]["box"], abs=1e-2)


@pytest.mark.parametrize("backend", [b for b in ("openvino", "onnxruntime") if installed(b)])
def test_vocabulary_edits_while_threads_predict(tiny_bundle, tiny_world, backend):
    """Each call answers against one whole vocabulary: the one before an edit or after it."""
    predictor = Predictor(tiny_bundle, backend=backend, precision="fp32")
    frames = images(tiny_world, 2)
    verbs = set(predictor.vocabulary.verbs)
    copy_of = predictor.vocabulary.verbs[0]
    frame = predictor.vocabulary.frame(copy_of)
    errors, seen, stop = [], set(), threading.Event()

    def work():
        try:
            while not stop.is_set():
                for f in frames:
                    seen.update(c.verb for c in predictor(f).candidates)
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            # a clone of a known verb under a new name (same definition, same embedding)
            predictor.vocabulary.add_verb(f"clone{i}", frame.definition, dict(frame.role_definitions),
                                          frame.abstract)
            time.sleep(0.2)
            predictor.vocabulary.remove_verb(f"clone{i}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert seen - verbs <= {f"clone{i}" for i in range(6)}


# -- inputs and outputs ---------------------------------------------------------------------------

def png_header(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_oversized_and_odd_image_files(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(png_header(20000, 20000) + b"\0" * 1024)
    started = time.perf_counter()
    with pytest.raises(InvalidImageError, match="20000x20000.*header"):
        load_image(big)
    assert time.perf_counter() - started < 0.5  # the header alone decides: nothing is decoded
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InvalidImageError, match="not a regular file"):
        load_image(fifo)  # would block forever if it were opened
    with pytest.raises(InvalidImageError, match="not a regular file"):
        load_image("/dev/zero")


def test_json_is_bounded(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DatasetError, match="nested too deeply"):
        read_json(deep)
    with pytest.raises(DatasetError, match="more than the limit"):
        read_json(deep, max_bytes=1000)
    with pytest.raises(DatasetError, match="not a regular file"):
        read_json("/dev/zero")


def test_writes_are_atomic_and_leftovers_cleaned(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, timeout=300).stdout.strip()
    (tmp_path / f".out.json.{dead}.abcd.tmp.json").write_text("a killed writer's leftover")
    with atomic_output(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_export_never_mixes_old_and_new_files(tiny_student, tiny_world, tmp_path):
    from mipd_edge.export import export_bundle

    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.onnx").write_text("from an earlier export")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_bundle(tiny_student, out, ExportConfig(formats=("onnx",)), data=tiny_world / "data")
    assert (out / "stale.onnx").exists()
    export_bundle(tiny_student, out, ExportConfig(formats=("onnx",)), run=RunContext(overwrite=True),
                  data=tiny_world / "data")
    assert not (out / "stale.onnx").exists() and (out / "encoder.onnx").is_file()
    assert read_manifest(out).graphs == {"onnx": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_training_outputs_are_protected(tiny_world, tiny_student, tmp_path, cache_dir):
    weights = (tiny_student / "weights.safetensors").read_bytes()
    base = CLI + ["distill", "--data", str(tiny_world / "data"), "--epochs", "1", "--image-size", "64",
                  "--batch-size", "16"]
    r = subprocess.run(base + ["--out", str(tiny_student)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already holds a model" in r.stderr and "--overwrite" in r.stderr
    assert (tiny_student / "weights.safetensors").read_bytes() == weights
    r = subprocess.run(base + ["--out", str(tmp_path / "new"), "--resume"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_a_diverging_loss_stops_training_naming_the_step(tiny_world, tmp_path, cache_dir):
    from helpers import quiet, tiny_config
    from mipd_edge.train.distill import distill

    with pytest.raises(MipdEdgeError, match=r"training diverged: the loss is (nan|inf) at epoch 1, step \d+"):
        distill(tiny_world / "data", tmp_path / "s", tiny_config(method="none", epochs=1, lr=1e30),
                run=quiet(cache_dir))


def test_a_damaged_checkpoint_is_not_resumed(tmp_path):
    import torch

    from mipd_edge.train.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "last.safetensors", {"w": torch.ones(1024)}, {"epoch": 0})
    data = bytearray((tmp_path / "last.safetensors").read_bytes())
    data[-2048:] = np.full(512, np.nan, np.float32).tobytes()
    (tmp_path / "last.safetensors").write_bytes(bytes(data))
    with pytest.raises(MipdEdgeError, match="NaN or infinite"):
        load_checkpoint(tmp_path / "last.safetensors")
