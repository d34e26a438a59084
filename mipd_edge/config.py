"""Typed configs: one dataclass per job, shared by the Python API, the command line and
``--config`` files.

A job's flags are made from its config's fields (``add_config_options``): each field with a
plain type is ``--field-name``, its help the comment beside the field, so the flags, the
YAML keys and the API's arguments are one set of names. ``read_config`` builds a config from
the defaults, then a YAML file, then the flags a user gave; an unknown key is refused with
the nearest known one. Torch-free, so every command line can be built on a device.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping, Optional, TypeVar, Union

from .errors import MipdEdgeError, reject_unknown_keys
from .files import PathLike
from .text import DEFAULT_TEXT_ENCODER

C = TypeVar("C")


@dataclass(frozen=True)
class RationaleConfig:
    """How JRG writes and judges rationales (``mipd-edge rationales``)."""

    generator: str = "template"  # template (offline, deterministic) or openai (an OpenAI-compatible endpoint)
    endpoint: Optional[str] = None  # the endpoint's base URL, e.g. http://127.0.0.1:8000/v1
    model: Optional[str] = None  # the model name the endpoint serves
    workers: int = 4  # concurrent requests to the endpoint
    candidates: int = 6  # negative candidates written per rationale
    keep: int = 3  # negatives kept of them (the teacher's most plausible, or random ones)
    text_encoder: str = DEFAULT_TEXT_ENCODER  # what embeds the rationales for the teacher's judgment
    timeout: float = 60.0  # seconds per request
    retries: int = 3  # attempts per request
    backoff: float = 1.0  # seconds before the first retry, doubling
    judgment: str = "teacher"  # which negatives are kept: teacher (the most plausible, JRG) or random


@dataclass(frozen=True)
class ExportConfig:
    """What ``mipd-edge export`` writes."""

    formats: tuple[str, ...] = ("onnx", "openvino")  # graph formats: onnx, openvino, tensorrt (comma list)
    precision: str = "fp32"  # fp32 or fp16 (INT8 bundles come from mipd-edge quantize)
    dynamic_batch: bool = False  # a batch-free encoder graph (decoders always are)
    image_size: Optional[int] = None  # another input size than the student was trained at
    with_text_encoder: bool = False  # ship the text encoder as ONNX: vocabulary edits without torch

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, ("fp32", "fp16", "int8"))


@dataclass(frozen=True)
class QuantizeConfig:
    """How ``mipd-edge quantize`` makes an INT8 bundle."""

    method: str = "auto"  # auto (PTQ, and QAT where PTQ loses more than the gate on dev), ptq or qat
    calib_size: int = 300  # calibration images
    calib_dir: Optional[str] = None  # calibration (and QAT) images from this folder (any images, no labels)
    qat_epochs: int = 3  # epochs of quantization-aware training (qat, and auto where it falls back to it)
    max_drop: Optional[float] = None  # accuracy control: layers back to float until dev drops at most this
    formats: tuple[str, ...] = ("onnx", "openvino")  # graph families to quantize: onnx, openvino
    dynamic_batch: bool = False  # a batch-free encoder graph
    from_bundle: Optional[str] = None  # an FP32 bundle of the same weights: its verified graphs are copied
    evaluate: bool = True  # measure FP32 against INT8 on dev (the accuracy gate auto reads)
    eval_split: str = "dev"  # the split that measurement runs on

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("auto", "ptq", "qat"))


@dataclass(frozen=True)
class ServeConfig:
    """How ``mipd-edge serve`` listens and batches."""

    host: str = "127.0.0.1"  # the address to listen on (0.0.0.0: every interface)
    port: int = 8000  # the port to listen on
    max_batch: int = 8  # images run as one batch at most
    max_delay_ms: float = 5.0  # how long a batch waits for more images while more are arriving
    max_queue: int = 64  # images waiting or running at once; beyond, 503 with Retry-After
    workers: int = 1  # batches run at once (more where the backend runs parallel inferences)
    max_body_mb: float = 16.0  # the largest request body taken (413 above)
    admin_token: Optional[str] = None  # where the vocabulary-edit token is read: env:VARIABLE or file:PATH


@dataclass(frozen=True)
class SmoothingConfig:
    """How a stream steadies each source's verb over its frames (``deploy/streams/smoothing.py``)."""

    smooth: str = "vote"  # vote (the most frequent best verb over a window), ema (a moving average of scores) or off
    smooth_alpha: float = 0.3  # ema: the newest frame's weight (1: no smoothing)
    smooth_window: int = 5  # vote: the frames that vote

    def __post_init__(self) -> None:
        check_choice("--smooth", self.smooth, ("ema", "vote", "off"))
        if not 0 < self.smooth_alpha <= 1 or self.smooth_window < 1:
            raise MipdEdgeError("smoothing needs 0 < --smooth-alpha <= 1 and --smooth-window of at least 1")


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how wide ``mipd-edge serve --ray`` and ``mipd-edge predict --ray`` run."""

    ray: bool = False  # run on Ray: serve with Ray Serve replicas, predict a folder with Ray Data workers
    ray_address: Optional[str] = None  # auto: this machine's cluster, ray://HEAD:10001 another (default: start one)
    min_replicas: int = 1  # serve: replicas kept running
    max_replicas: int = 1  # serve: replicas the autoscaler may add under load
    ray_workers: int = 2  # predict: workers, each holding its own Predictor
    cpus_per_worker: float = 1.0  # CPUs Ray reserves for each replica or worker

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise MipdEdgeError(f"replicas: 1 <= --min-replicas <= --max-replicas, got {self.min_replicas} and "
                                f"{self.max_replicas}")
        if self.ray_workers < 1 or self.cpus_per_worker <= 0:
            raise MipdEdgeError("--ray-workers must be at least 1 and --cpus-per-worker above 0")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise MipdEdgeError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


# -- building configs ------------------------------------------------------------------------------

def config_from(cls: type[C], obj: Mapping[str, Any], where: str = "config") -> C:
    """A config from a mapping of some of its fields (the rest at their defaults); nested
    config sections are mappings too, and an unknown key anywhere is refused."""
    if not isinstance(obj, Mapping):
        raise MipdEdgeError(f"{where}: expected a mapping of keys to values, got {type(obj).__name__}")
    reject_unknown_keys(obj, cls, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in obj.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = config_from(kind, value, f"{where}'s {key}")
        elif plain_type(kind) is tuple and isinstance(value, (list, str)):
            value = tuple(split_list(value) if isinstance(value, str) else value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise MipdEdgeError(f"{where}: {exc}") from None


def read_config(cls: type[C], path: Optional[PathLike] = None, given: Optional[Mapping[str, Any]] = None) -> C:
    """The defaults, then the YAML file at ``path``, then the ``given`` values that are not
    None. Nested sections merge field by field."""
    merged = dataclasses.asdict(cls())
    if path is not None:
        merged = deep_merge(merged, read_yaml(path))
    merged = deep_merge(merged, {k: v for k, v in (given or {}).items() if v is not None})
    return config_from(cls, merged, f"{cls.__name__} ({path})" if path else cls.__name__)


def read_yaml(path: PathLike) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MipdEdgeError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise MipdEdgeError(f"{path}: a config is a mapping of keys to values")
    return raw


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# -- the command line, from the fields -------------------------------------------------------------

def plain_type(hint: Any) -> Any:
    """``Optional[int]`` -> ``int``, ``tuple[str, ...]`` -> ``tuple``; anything else as it is."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return plain_type(args[0]) if len(args) == 1 else hint
    return origin or hint


def field_help(cls: type) -> dict[str, str]:
    """The comment beside each field in the class's source: its help text."""
    found = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^#]*#\s*(.+)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def add_config_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       choices: Optional[Mapping[str, tuple]] = None) -> None:
    """``--field-name`` for each plain field of ``cls`` (default None: "not given", so that a
    ``--config`` file's value stands unless the flag overrides it); ``choices`` restricts some."""
    hints, helps = typing.get_type_hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        kind = plain_type(hints[f.name])
        if f.name in skip or kind not in (bool, int, float, str, tuple):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(default) if isinstance(default, tuple) else default
        text = f"{helps.get(f.name, f.name.replace('_', ' '))} (default: {shown})"
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif kind is tuple:
            parser.add_argument(flag, type=split_list, default=None, help=text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=text, choices=(choices or {}).get(f.name))


def given_options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` a user gave as flags."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def config_of_args(cls: type[C], args: argparse.Namespace) -> C:
    """A command's config: the defaults, then ``--config FILE``, then its flags."""
    return read_config(cls, getattr(args, "config", None), given_options(args, cls))
