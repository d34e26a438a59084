"""Stages of the pipeline: reused when they finished with the same parameters, redone when
what they were asked to do changed, and not redone because a new option appeared."""

from dataclasses import replace

from mipd_edge.files import read_json, write_json
from mipd_edge.pipeline import comparable, stage
from mipd_edge.train.config import MipdConfig, TrainConfig


def test_a_new_option_at_its_default_does_not_redo_a_finished_stage(tmp_path):
    runs = []
    cfg = TrainConfig(method="none", epochs=8)
    params = {"data": {"seed": 0, "train": 2400}, "train": cfg.to_json()}
    assert stage(tmp_path, "teacher", params, lambda: runs.append(1) or "first") == "first"
    # the marker as an older release wrote it: without a field that has since been added
    marker = tmp_path / ".stages" / "teacher.json"
    old = read_json(marker)
    del old["params"]["train"]["mipd"]["knowledge"]
    write_json(marker, old)
    assert stage(tmp_path, "teacher", params, lambda: runs.append(2) or "second") == "first"
    assert runs == [1]
    # a setting that differs from the default still counts, at any depth
    changed = {**params, "train": replace(cfg, mipd=MipdConfig(knowledge="anchored")).to_json()}
    assert stage(tmp_path, "teacher", changed, lambda: runs.append(3) or "third") == "third"
    assert stage(tmp_path, "teacher", {**params, "data": {"seed": 1, "train": 2400}},
                 lambda: runs.append(4) or "fourth") == "fourth"
    assert runs == [1, 3, 4]


def test_comparable_keeps_everything_but_default_training_settings():
    cfg = TrainConfig(method="kd", epochs=24, seed=2)
    nested = {"teacher": {"train": TrainConfig(method="none").to_json()}, "train": cfg.to_json(),
              "data": {"train": 2400}, "list": [{"train": TrainConfig().to_json()}]}
    assert comparable(nested) == {"teacher": {"train": {"method": "none"}},
                                  "train": {"method": "kd", "epochs": 24, "seed": 2},
                                  "data": {"train": 2400}, "list": [{"train": {}}]}
