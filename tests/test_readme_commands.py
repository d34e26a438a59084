"""The deployment commands and examples as the README shows them, run as written: a new user's
first steps must not end in a traceback."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mipd_edge import OutputExistsError, Predictor, Situation
from mipd_edge.data.synthsitu.video import write_demo_video

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "mipd_edge.cli"]


def run(args, cwd=None):
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd)
    return r


@pytest.fixture
def photos(tiny_world, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((tiny_world / "data" / "images").iterdir())[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_predict_with_only_a_source_or_only_save(tiny_bundle, photos, tmp_path):
    """`mipd-edge predict --model BUNDLE --source photo.jpg`, and the same with only --save DIR."""
    photo = sorted(photos.iterdir())[0]
    r = run(CLI + ["predict", "--model", str(tiny_bundle), "--source", str(photo)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{photo}: " in r.stdout and r.stdout.strip().endswith("1 images")
    r = run(CLI + ["predict", "--model", str(tiny_bundle), "--source", str(photos), "--save", str(tmp_path / "ann")])
    assert r.returncode == 0, r.stderr[-2000:]
    saved = sorted((tmp_path / "ann").iterdir())
    assert [p.name for p in saved] == sorted(p.name for p in photos.iterdir())
    original = cv2.imread(str(photos / saved[0].name))
    annotated = cv2.imread(str(saved[0]))
    assert annotated.shape == original.shape and (annotated != original).any()  # drawn on, same size
    r = run(CLI + ["predict", "--model", str(tiny_bundle), "--source", str(photos), "--save", str(tmp_path / "ann")])
    assert r.returncode == 2 and "--overwrite" in r.stderr  # never over a user's folder


def test_results_draw_themselves(tiny_bundle, photos, tmp_path):
    photo = sorted(photos.iterdir())[0]
    with Predictor(tiny_bundle, backend="onnxruntime") as predictor:
        situation = predictor(photo)
    assert isinstance(situation, Situation)
    image = cv2.imread(str(photo))
    drawn = situation.plot(image)
    assert drawn.shape == image.shape and (drawn != image).any() and (cv2.imread(str(photo)) == image).all()
    assert (situation.plot(photo) == drawn).all()  # a path is read as the Predictor reads it
    assert situation.plot(image, zoom=2.0).shape[:2] == (2 * image.shape[0], 2 * image.shape[1])
    out = situation.save(tmp_path / "a.png", image)
    assert (cv2.imread(str(out)) == drawn).all()  # PNG: lossless
    with pytest.raises(OutputExistsError):
        situation.save(out, image)
    situation.save(out, np.zeros_like(image), overwrite=True)
    assert (cv2.imread(str(out)) != drawn).any()


def test_the_examples_as_the_readme_shows_them(tiny_bundle, tiny_world, photos, tmp_path):
    examples = ROOT / "examples"
    for script in sorted(examples.glob("*.py")):  # without arguments: usage, exit 2, no traceback
        r = run([sys.executable, str(script)])
        assert r.returncode == 2 and "usage:" in r.stderr and "Traceback" not in r.stderr, (script, r.stderr)
        r = run([sys.executable, str(script), "--help"])  # each says how to run it
        assert r.returncode == 0 and r.stdout.startswith("usage:") and f"examples/{script.name}" in r.stdout
    r = run([sys.executable, str(examples / "images.py"), str(tiny_bundle), str(photos), "--out",
             str(tmp_path / "ann")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "ann").iterdir())) == 2 and "last call" in r.stdout
    video = write_demo_video(tiny_world / "data", tmp_path / "clip.mp4", images=2, frames_per_image=2, fps=4)
    r = run([sys.executable, str(examples / "video_file.py"), str(tiny_bundle), str(video)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("4 frames") and (tmp_path / "annotated.mp4").is_file()
    assert len((tmp_path / "annotated.mp4.jsonl").read_text().splitlines()) == 4
    r = run([sys.executable, str(examples / "camera_stream.py"), str(tiny_bundle), str(video)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4 frames, 0 skipped" in r.stdout and (tmp_path / "live.mp4").is_file()
    r = run([sys.executable, str(examples / "camera_stream.py"), str(tiny_bundle), str(video)], cwd=tmp_path)
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr  # the video is kept
    r = run([sys.executable, str(examples / "camera_stream.py"), str(tiny_bundle), str(video), "--overwrite"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    photo = sorted(photos.iterdir())[0]
    r = run([sys.executable, str(examples / "custom_vocabulary.py"), str(tiny_bundle), str(photo)])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()  # the tiny student is no judge of kicking: the edit is what is run
    assert lines[0].startswith("without 'kicking':") and lines[1].startswith("with 'kicking':")
    assert lines[2].startswith("top-5: [(")
