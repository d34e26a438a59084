"""Distillation on unlabeled images (``distill --unlabeled``): SynthSitu footage that is none of
a dataset's images, the label-free terms in training, honesty about unseen verbs, the teacher's
resumable cache, and the errors a user's folder can cause."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import TINY, quiet, tiny_config, tiny_yaml
from mipd_edge.data.split import load_split, training_verbs
from mipd_edge.data.synthsitu import world
from mipd_edge.data.synthsitu.generate import FOOTAGE_MANIFEST, FootageConfig, generate_footage, verb_schedule
from mipd_edge.deploy.image import image_files
from mipd_edge.deploy.preprocess import Preprocess
from mipd_edge.errors import MipdEdgeError
from mipd_edge.files import read_json
from mipd_edge.pipeline import FOOTAGE_SEED_OFFSET, TEACHER_SEED_OFFSET
from mipd_edge.train import teacher_cache
from mipd_edge.train.distill import distill
from mipd_edge.train.task import TrainingInputs
from mipd_edge.train.unlabeled import GRID, UnlabeledPool, WithUnlabeled

DATA_SEED = 5  # tiny_world's


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """The tiny world's footage, as the pipeline draws it: its data seed + FOOTAGE_SEED_OFFSET."""
    out = tmp_path_factory.mktemp("footage")
    generate_footage(out, FootageConfig(seed=DATA_SEED + FOOTAGE_SEED_OFFSET, images=64, image_size=96, workers=1),
                     progress=False)
    return out


def pixel_digests(folder):
    return {hashlib.sha256(cv2.imread(str(p)).tobytes()).hexdigest() for p in image_files(folder, recursive=True)}


def test_footage_is_no_image_of_the_dataset_nor_of_the_teacher(footage, tiny_world, tmp_path):
    assert TEACHER_SEED_OFFSET != FOOTAGE_SEED_OFFSET
    pool = pixel_digests(footage)
    assert len(pool) == 64  # no two frames alike
    for sample in ("data", "teacher-data"):  # train, dev, test; the teacher's own sample
        assert not pool & pixel_digests(tiny_world / sample)
    # its own generator stream: footage drawn at the dataset's very seed is still none of its images
    same_seed = tmp_path / "same-seed"
    generate_footage(same_seed, FootageConfig(seed=DATA_SEED, images=64, image_size=96, workers=1), progress=False)
    assert not pixel_digests(same_seed) & pixel_digests(tiny_world / "data")
    # what a folder of footage holds: frames with names that say nothing, and no annotation
    assert sorted(p.name for p in footage.iterdir()) == [f"frame_{i:06d}.jpg" for i in range(64)] + [FOOTAGE_MANIFEST]
    assert "verb" not in json.dumps(read_json(footage / FOOTAGE_MANIFEST))
    # every verb of the world, unseen ones too, as real footage would show
    assert set(verb_schedule("train", 64, DATA_SEED + FOOTAGE_SEED_OFFSET)) == {v.name for v in world.VERBS}


def unlabeled_run(tiny_world, footage, out, cache_dir, method, epochs=2, **overrides):
    return distill(tiny_world / "data", out, tiny_config(method=method, epochs=epochs, unlabeled_batch=8, **overrides),
                   TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl",
                                  unlabeled=footage), quiet(cache_dir))


@pytest.mark.parametrize("method, soft, terms", [
    ("none", True, {"unl_glance", "unl_cells"}),
    ("kd", True, {"unl_glance", "unl_cells", "unl_soft"}),
    ("mipd", True, {"unl_glance", "unl_cells", "unl_soft", "unl_scene"}),
    ("mipd", False, {"unl_glance", "unl_cells", "unl_scene"})])
def test_each_method_learns_from_unlabeled_images(tiny_world, footage, tmp_path, cache_dir, method, soft, terms):
    run = unlabeled_run(tiny_world, footage, tmp_path / method, cache_dir, method, unlabeled_soft=soft)
    losses = [epoch["losses"] for epoch in run["history"]]
    assert {k for k in losses[0] if k.startswith("unl_")} == terms
    assert all(np.isfinite(v) and v > 0 for epoch in losses for v in epoch.values())
    if method != "mipd":  # (mipd's glance also answers to the scene knowledge, which may pull elsewhere)
        assert losses[1]["unl_glance"] < losses[0]["unl_glance"]  # the student moves toward the teacher
    info = read_json(tmp_path / method / "config.json")
    assert info["unlabeled"]["images"] == 64 and info["unlabeled"]["dir"] == str(footage)
    # the teacher scored the footage against the training verbs only
    meta = read_json(cache_dir / "teacher" / info["unlabeled"]["teacher_cache"] / "meta.json")
    split = load_split(tiny_world / "data" / "splits.json")
    assert meta["verbs"] == training_verbs(split) and not set(meta["verbs"]) & set(split["unseen"])
    assert len(meta["names"]) == 64 and all(n.startswith("frame_") for n in meta["names"])


def test_unseen_verbs_cannot_influence_training_on_unlabeled_images(tiny_world, footage, tmp_path, cache_dir):
    """Every unseen verb's description rewritten and its training images deleted: a student that
    also learns on footage (which shows unseen verbs) comes out bit-identical."""
    data, other = tiny_world / "data", tmp_path / "world"
    shutil.copytree(tiny_world, other, symlinks=True)
    split = load_split(data / "splits.json")
    space = json.loads((other / "data" / "space.json").read_text())
    for verb in split["unseen"]:
        space["verbs"][verb]["def"] = space["verbs"][verb]["abstract"] = "something else entirely"
    (other / "data" / "space.json").write_text(json.dumps(space))
    train = json.loads((other / "data" / "train.json").read_text())
    for name in [n for n, e in train.items() if e["verb"] in split["unseen"]]:
        (other / "data" / "images" / name).unlink()
        del train[name]
    (other / "data" / "train.json").write_text(json.dumps(train))
    a = unlabeled_run(tiny_world, footage, tmp_path / "a", cache_dir, "mipd", epochs=1)
    b = unlabeled_run(other, footage, tmp_path / "b", cache_dir, "mipd", epochs=1)
    assert a["weights_sha256"] == b["weights_sha256"]


def test_the_unlabeled_draw_is_a_pure_function_of_the_labeled_batch(footage):
    class Labeled:
        def __len__(self):
            return 100

        def batch(self, indices, flip=None):
            from mipd_edge.train.data import Batch

            return Batch(*([None] * 6), index=indices)

    pool = UnlabeledPool(footage, Preprocess(64), progress=False)
    assert pool.images.shape == (64, 64, 64, 3) and pool.cells.shape == (64, GRID * GRID, 4)
    data = WithUnlabeled(Labeled(), pool, per_batch=8, seed=3)
    first, again = data.batch(np.array([4, 9, 1])), data.batch(np.array([4, 9, 1]))
    assert first.unlabeled.index.tolist() == again.unlabeled.index.tolist()
    assert data.batch(np.array([5, 9, 1])).unlabeled.index.tolist() != first.unlabeled.index.tolist()
    assert WithUnlabeled(Labeled(), pool, 8, seed=4).batch(np.array([4, 9, 1])).unlabeled.index.tolist() != \
        first.unlabeled.index.tolist()
    # the cells tile the picture inside the letterbox, row by row
    image = cv2.imread(str(footage / "frame_000000.jpg"))
    content = Preprocess(64).letterbox(image)[1].boxes_to_input(np.array([0, 0, image.shape[1], image.shape[0]]))[0]
    cx, cy, w, h = pool.cells[0].T
    assert np.allclose(w, content[2] / GRID) and np.allclose(h, content[3] / GRID)
    assert np.isclose(cx.mean(), content[0]) and np.isclose(cy.mean(), content[1]) and cx[0] < cx[1] and cy[0] < cy[3]


def test_an_interrupted_teacher_cache_resumes_where_it_stopped(tiny_world, footage, tmp_path, monkeypatch):
    from mipd_edge.models.teacher import load_teacher
    from mipd_edge.text import minilm
    from mipd_edge.train.data import training_view
    from mipd_edge.train.unlabeled import grid_cells

    teacher = load_teacher(tiny_world / "teacher", text_encoder=minilm())
    vocab = training_view(tiny_world / "data", minilm())[2]
    files = image_files(footage)
    whole = teacher_cache.folder_cache(teacher, footage, files, vocab, tmp_path / "whole", grid_cells, batch_size=4,
                                       progress=False)

    monkeypatch.setattr(teacher_cache, "FLUSH_EVERY", 2)
    read = []
    original = teacher_cache.load_image

    def dies_at_image_42(path):
        if len(read) == 42:
            raise KeyboardInterrupt  # the machine goes away mid-way
        read.append(path)
        return original(path)

    monkeypatch.setattr(teacher_cache, "load_image", dies_at_image_42)
    with pytest.raises(KeyboardInterrupt):
        teacher_cache.folder_cache(teacher, footage, files, vocab, tmp_path / "cut", grid_cells, batch_size=4,
                                   progress=False)
    monkeypatch.setattr(teacher_cache, "load_image", lambda path: read.append(path) or original(path))
    read.clear()
    resumed = teacher_cache.folder_cache(teacher, footage, files, vocab, tmp_path / "cut", grid_cells,
                                         batch_size=4, progress=False)
    assert read == files[40:]  # 10 batches done and recorded (every 2), the 11th cut: it and the rest computed
    for name in ("global_feats", "regions", "verb_logits"):
        assert np.array_equal(getattr(resumed, name), getattr(whole, name))
    assert not (tmp_path / "cut" / resumed.key / "progress.json").exists()


def test_a_users_folder_gives_clear_answers(tiny_world, footage, tmp_path, cache_dir, caplog):
    with pytest.raises(MipdEdgeError, match="--unlabeled needs --teacher"):
        distill(tiny_world / "data", tmp_path / "x", tiny_config(method="none"),
                TrainingInputs(unlabeled=footage), quiet(cache_dir))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MipdEdgeError, match="no images"):
        unlabeled_run(tiny_world, tmp_path / "empty", tmp_path / "y", cache_dir, "none")
    mixed = tmp_path / "mixed"
    shutil.copytree(footage, mixed)
    (mixed / "broken.jpg").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        pool = UnlabeledPool(mixed, Preprocess(64), progress=False)
    assert len(pool) == 64 and "broken.jpg" in caplog.text and "gains little" in caplog.text


def test_footage_and_unlabeled_distillation_from_the_command_line(tiny_world, tmp_path, cache_dir):
    cli = [sys.executable, "-m", "mipd_edge.cli"]
    made = subprocess.run(cli + ["data", "footage", "--out", str(tmp_path / "footage"), "--images", "24",
                                 "--image-size", "64"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "24 unlabeled images" in made.stdout and len(image_files(tmp_path / "footage")) == 24
    again = subprocess.run(cli + ["data", "footage", "--out", str(tmp_path / "footage"), "--images", "24"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "--overwrite" in again.stderr  # a user's folder is never written over
    r = subprocess.run(cli + ["distill", "--data", str(tiny_world / "data"), "--teacher", str(tiny_world / "teacher"),
                              "--method", "kd", "--unlabeled", str(tmp_path / "footage"), "--out",
                              str(tmp_path / "student"), *TINY, *tiny_yaml(tmp_path)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MIPD_EDGE_CACHE": str(cache_dir)})
    assert r.returncode == 0, r.stderr
    info = read_json(tmp_path / "student" / "config.json")
    assert info["unlabeled"]["images"] == 24
    assert "24 unlabeled images" in r.stderr  # the log line that says what it trains on


def split_metrics(seen: float, unseen: float, grnd: float = 50.0) -> dict:
    """Test metrics of one run, as ``mipd-edge eval`` writes them, where only these numbers matter."""
    top1 = {"verb": 0.0, "grnd_value": grnd}
    return {"all": {"top1": {"verb": (seen + unseen) / 2, "grnd_value": grnd}, "gt_verb": {"grnd_value": grnd + 20}},
            "seen": {"top1": {**top1, "verb": seen}}, "unseen": {"top1": {**top1, "verb": unseen}}}


def test_the_footage_goals_are_means_over_the_draws_both_rows_have():
    """benchmarks/unlabeled.py: the gain and the seen-verb change compare each draw with itself,
    over the draws the strict and the footage rows both finished."""
    from unlabeled import goals

    rows = {"teacher": {"seeds": {"0": split_metrics(70, 60), "1": split_metrics(70, 80)}},
            "mipd": {"seeds": {"0": split_metrics(80, 20), "1": split_metrics(82, 40), "2": split_metrics(90, 90)}},
            "mipd+unlabeled": {"seeds": {"0": split_metrics(79.5, 40), "1": split_metrics(80.5, 52)}},
            "kd": {"seeds": {"0": split_metrics(80, 20)}}, "kd+unlabeled": {"seeds": {"0": split_metrics(77, 60)}}}
    out = goals(rows, 2000)
    assert out["mipd+unlabeled"]["draws"] == ["0", "1"]  # draw 2 has no footage row yet
    assert out["mipd+unlabeled"]["unseen_gain"] == pytest.approx(16.0)
    assert out["mipd+unlabeled"]["seen_change"] == pytest.approx(-1.0) and out["mipd+unlabeled"]["met"]
    assert not out["kd+unlabeled"]["met"]  # +40 unseen, but seen -3
    share = out["share_of_teacher_unseen"]
    assert share["rows"]["mipd+unlabeled"] == pytest.approx(46 / 70) and share["met"]


def test_a_recipe_is_adopted_only_where_every_method_gains_without_losing_verbs():
    """benchmarks/convergence.py: +2 grounded value for every method, verb top-1 no lower."""
    from convergence import verdicts

    def runs(*grnd_verb):
        return {"seeds": {str(d): {**split_metrics(80, 40, g), "all": {"top1": {"verb": v, "grnd_value": g},
                                                                      "gt_verb": {"grnd_value": g + 20}}}
                          for d, (g, v) in enumerate(grnd_verb)}}
    rows = {"none": runs((40, 60), (44, 62)), "none (a)": runs((43, 60), (47, 63)),
            "none (b)": runs((50, 58), (50, 62)), "mipd": runs((50, 62), (52, 64)),
            "mipd (a)": runs((52, 62), (54, 64)), "mipd (b)": runs((60, 62))}
    out = verdicts(rows, ["a", "b"], ["none", "mipd"], min_draws=2)
    assert out["a"]["methods"]["none"]["grnd_value"] == pytest.approx(3.0)
    assert out["a"]["methods"]["none"]["verb"] == pytest.approx(0.5) and out["a"]["adopt"]
    assert out["b"]["methods"]["mipd"]["draws"] == ["0"]
    assert not out["b"]["adopt"]  # none's verb top-1 fell by a point
    assert not verdicts(rows, ["a"], ["none", "mipd"])["a"]["adopt"]  # two draws are a screen
    assert not verdicts(rows, ["a"], ["none", "mipd", "kd"], min_draws=2)["a"]["adopt"]  # kd not measured
