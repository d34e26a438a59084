"""The distillation methods in one table: what each needs, and the function that builds its
objective for each task it trains.

Torch-free, so the command line can offer the methods without importing training code: a
builder is named as ``"module:function"`` and imported only when training starts. A method
defined outside the package (the comparisons in ``benchmarks/``) joins the table through
``register_method`` with builders of its own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from .errors import MipdEdgeError

Builder = Union[str, Callable[..., Any]]


@dataclass(frozen=True)
class Method:
    """A distillation method: what it needs, and per task the builder of its objective. A
    situation builder takes ``train.distill.ObjectiveInputs``; an interaction builder is
    called as ``train.hoi.distill_hoi`` documents."""

    name: str
    teacher: bool  # distils from a teacher (its cached features and verb distribution)
    rationales: bool  # aligns with JRG rationales through NMPA
    objectives: Mapping[str, Builder]  # task -> builder of its objective
    what: str

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks that can train with it."""
        return tuple(self.objectives)


METHOD_TABLE: dict[str, Method] = {m.name: m for m in (
    Method("none", teacher=False, rationales=False, what="task losses only",
           objectives={"gsr": "mipd_edge.train.distill:no_distillation",
                       "hoi": "mipd_edge.train.hoi:no_distillation"}),
    Method("kd", teacher=True, rationales=False,
           what="plain distillation of the teacher's global and region features and soft labels",
           objectives={"gsr": "mipd_edge.train.distill:kd_objective"}),
    Method("mipd", teacher=True, rationales=True,
           what="MIPD: knowledge that NMPA aligned with the rationales, and soft labels",
           objectives={"gsr": "mipd_edge.train.distill:mipd_objective",
                       "hoi": "mipd_edge.train.hoi:hoi_mipd_objective"}),
)}
# the methods the package ships (what the command line offers)
METHODS = tuple(METHOD_TABLE)


def register_method(method: Method) -> None:
    """Add a method (or replace one of the same name) for training in this process."""
    if not method.objectives:
        raise MipdEdgeError(f"method {method.name!r} names no objective builder for any task")
    METHOD_TABLE[method.name] = method


def method_info(name: str, task: str = "gsr") -> Method:
    """The method called ``name``, checked to train ``task``."""
    if name not in METHOD_TABLE:
        raise MipdEdgeError(f"method must be one of {tuple(METHOD_TABLE)}, got {name!r}")
    method = METHOD_TABLE[name]
    if task not in method.objectives:
        raise MipdEdgeError(f"{task} training supports methods {methods_for(task)}, got {name!r}")
    return method


def objective_builder(name: str, task: str) -> Callable[..., Any]:
    """The function that builds method ``name``'s objective for ``task``."""
    builder = method_info(name, task).objectives[task]
    if callable(builder):
        return builder
    module, _, function = builder.partition(":")
    return getattr(importlib.import_module(module), function)


def methods_for(task: str) -> tuple[str, ...]:
    return tuple(m.name for m in METHOD_TABLE.values() if task in m.objectives)
