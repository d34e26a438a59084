"""The training-side commands of ``mipd-edge`` once each, in-process, on tiny data: teacher,
teacher features, rationales, distillation and INT8 (`export --precision int8` and the HOI
commands are in ``test_hoi.py``, the others have tests of their own)."""

import json
from pathlib import Path

import pytest

from helpers import TINY, tiny_yaml
from mipd_edge.cli import main
from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.train.rationales import load_rationales


@pytest.mark.slow
def test_training_commands(tiny_world, tmp_path, cache_dir, capsys):
    data, teacher, rationales, student = tiny_world / "data", tmp_path / "teacher", tmp_path / "r.jsonl", tmp_path / "s"
    assert main(["train-teacher", "--data", str(tiny_world / "teacher-data"), "--out", str(teacher)] + TINY
                + tiny_yaml(tmp_path)) == 0
    assert json.loads((teacher / "config.json").read_text())["kind"] == "teacher"
    assert main(["teacher-cache", "--data", str(data), "--teacher", str(teacher), "--cache-dir", str(cache_dir)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]  # teacher features for N training images: FOLDER
    count, folder = int(line.split()[3]), Path(line.split(": ")[-1])
    assert (
        folder.parent == cache_dir / "teacher" and len(json.loads((folder / "meta.json").read_text())["names"]) == count
    )
    assert main(["rationales", "--data", str(data), "--teacher", str(teacher), "--out", str(rationales)]) == 0
    assert len(load_rationales(rationales)) == len(load_rationales(tiny_world / "rationales.jsonl"))
    assert main(["distill", "--data", str(data), "--out", str(student), "--method", "kd", "--teacher", str(teacher)]
                + TINY + tiny_yaml(tmp_path)) == 0
    assert json.loads((student / "config.json").read_text())["method"] == "kd"
    assert main(["quantize", "--model", str(student), "--data", str(data), "--out", str(tmp_path / "q"),
                 "--calib-size", "8", "--formats", "onnx"]) == 0
    assert "FP32 vs INT8" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "q")
    assert manifest.quantization["calibration_images"] == 8
    # the default recipe: PTQ writes ONNX Runtime's own layout beside NNCF's Q/DQ graph, QAT one Q/DQ graph
    own_layout = {"onnxruntime-int8"} if manifest.quantization["recipe"]["method"] == "ptq" else set()
    assert set(manifest.graphs) == {"onnx", "onnx-int8"} | own_layout


def test_an_unexpected_error_is_one_line_and_exit_1(tiny_world, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr("mipd_edge.text.load_text_encoder", broken)  # the first thing the command does
    code = main(["teacher-cache", "--data", str(tiny_world / "data"), "--teacher", str(tiny_world / "teacher")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == ["mipd-edge: unexpected error: RuntimeError: the disk caught fire "
                                "(run with -v for the traceback)"]
