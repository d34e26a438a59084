"""Typed configs: every training, export and quantize command's flags are its config's fields,
and a --config file of the same fields is read under them (unknown keys refused, with the
nearest known one)."""

import dataclasses
import typing

import pytest

from mipd_edge.cli import build_parser, main
from mipd_edge.config import ExportConfig, QuantizeConfig, RationaleConfig, config_of_args, plain_type, read_config
from mipd_edge.errors import MipdEdgeError
from mipd_edge.train.config import TrainConfig

# command -> (its config, the fields that have no flag: sections and mappings live in the file)
COMMANDS = {
    "distill": (TrainConfig, {"model", "loss", "mipd"}),
    "train-teacher": (TrainConfig, {"model", "loss", "mipd", "method"}),  # the teacher trains without distillation
    "export": (ExportConfig, set()),
    "quantize": (QuantizeConfig, set()),
    "rationales": (RationaleConfig, set()),
}


def subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    return action.choices[name]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_field_is_a_flag_with_its_help(command):
    cls, without = COMMANDS[command]
    flags = {a.dest: a for a in subparser(command)._actions}
    assert "config" in flags
    for field in dataclasses.fields(cls):
        if field.name in without:
            assert field.name not in flags
            continue
        assert field.name in flags, (command, field.name)
        assert flags[field.name].default is None and "(default: " in flags[field.name].help
    hints = typing.get_type_hints(cls)
    assert without == {f.name for f in dataclasses.fields(cls) if plain_type(hints[f.name]) not in
                       (bool, int, float, str, tuple)} | ({"method"} if command == "train-teacher" else set())


def test_flags_win_over_the_file_and_the_file_over_the_defaults(tmp_path):
    config = tmp_path / "q.yaml"
    config.write_text("calib_size: 8\nformats: [openvino]\nmax_drop: 0.5\n")
    args = build_parser().parse_args(["quantize", "--model", "m", "--data", "d", "--out", "o", "--config", str(config),
                                      "--calib-size", "12", "--calib-dir", "footage"])
    cfg = config_of_args(QuantizeConfig, args)
    assert (cfg.calib_size, cfg.formats, cfg.max_drop, cfg.calib_dir, cfg.method) == (12, ("openvino",), 0.5,
                                                                                       "footage", "auto")
    args = build_parser().parse_args(["export", "--model", "m", "--out", "o", "--formats", "onnx,tensorrt",
                                      "--no-dynamic-batch"])
    assert config_of_args(ExportConfig, args) == ExportConfig(formats=("onnx", "tensorrt"))
    train = tmp_path / "t.yaml"
    train.write_text("epochs: 3\nmipd: {negatives: none}\nmodel: {width: 0.25}\n")
    cfg = read_config(TrainConfig, train, {"epochs": 5, "model": {"d_model": 64}})
    assert cfg.epochs == 5 and cfg.mipd.negatives == "none" and cfg.model == {"width": 0.25, "d_model": 64}


@pytest.mark.parametrize("command, text, nearest", [
    (["quantize", "--model", "m", "--data", "d", "--out", "o"], "calib_sise: 8\n", "calib_size"),
    (["export", "--model", "m", "--out", "o"], "format: [onnx]\n", "formats"),
    (["distill", "--data", "d", "--out", "o"], "mipd: {negative: none}\n", "negatives"),
    (["rationales", "--data", "d", "--teacher", "t", "--out", "o"], "judgement: random\n", "judgment"),
])
def test_an_unknown_key_is_refused_naming_the_nearest(command, text, nearest, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert main(command + ["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mipd-edge: error: unknown ") and f"did you mean {nearest!r}?" in err
    assert len(err.splitlines()) == 1


def test_a_bad_value_is_one_clear_error(tmp_path):
    with pytest.raises(MipdEdgeError, match="method must be one of auto, ptq, qat"):
        QuantizeConfig(method="gptq")
    config = tmp_path / "c.yaml"
    config.write_text("- not a mapping\n")
    with pytest.raises(MipdEdgeError, match="a config is a mapping"):
        read_config(ExportConfig, config)
