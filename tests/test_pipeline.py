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


def test_an_ort_static_layout_that_fails_its_check_is_left_out_and_said(tmp_path, monkeypatch, caplog):
    """ONNX Runtime's static INT8 layout is a comparison row: when its encoder fails the
    agreement check against FP32, the quickstart goes on with the other bundles and says so."""
    import logging

    from mipd_edge import pipeline
    from mipd_edge.errors import BundleError

    made = []

    def quantize(source, data, out, cfg, run):
        if cfg.ort_static:
            raise BundleError("onnx-int8: the INT8 encoder disagrees with FP32 (mean glance cosine 0.862 < 0.9)")
        made.append(out.name)

    pipe = pipeline.Pipeline(tmp_path, pipeline.PRESETS["quick"], progress=False)
    monkeypatch.setattr(pipe, "stage_params", lambda name: {"stage": name})
    monkeypatch.setattr(pipeline, "manifest_summary", lambda manifest: {})
    monkeypatch.setattr("mipd_edge.export.export_bundle", lambda *args, **kwargs: made.append("bundle-fp32"))
    monkeypatch.setattr("mipd_edge.quantize.quantize_bundle", quantize)
    with caplog.at_level(logging.WARNING, logger="mipd_edge.pipeline"):
        fp32, int8, ort = pipe.make_bundles()
    assert (fp32.name, int8.name, ort) == ("bundle-fp32", "bundle-int8", None)
    assert made == ["bundle-fp32", "bundle-int8"]
    assert "static INT8 layout is left out: onnx-int8: the INT8 encoder disagrees" in caplog.text
