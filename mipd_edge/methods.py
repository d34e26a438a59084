"""The distillation methods in one table: what each needs and which tasks it trains.

Torch-free, so the command line can offer the methods without importing training code.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MipdEdgeError


@dataclass(frozen=True)
class Method:
    """What a distillation method needs and where it runs; the objective itself is built by
    ``train/distill.py`` (situations) or ``train/hoi.py`` (interactions)."""

    name: str
    teacher: bool  # distils from a teacher (its cached features and verb distribution)
    rationales: bool  # aligns with JRG rationales through NMPA
    tasks: tuple[str, ...]  # the tasks that can train with it
    what: str


METHOD_TABLE: dict[str, Method] = {m.name: m for m in (
    Method("none", teacher=False, rationales=False, tasks=("gsr", "hoi"), what="task losses only"),
    Method("kd", teacher=True, rationales=False, tasks=("gsr",),
           what="plain distillation of the teacher's global and region features and soft labels"),
    Method("mipd", teacher=True, rationales=True, tasks=("gsr", "hoi"),
           what="MIPD: knowledge that NMPA aligned with the rationales, and soft labels"),
)}
METHODS = tuple(METHOD_TABLE)


def method_info(name: str, task: str = "gsr") -> Method:
    """The method called ``name``, checked to train ``task``."""
    if name not in METHOD_TABLE:
        raise MipdEdgeError(f"method must be one of {METHODS}, got {name!r}")
    method = METHOD_TABLE[name]
    if task not in method.tasks:
        raise MipdEdgeError(f"{task} training supports methods {methods_for(task)}, got {name!r}")
    return method


def methods_for(task: str) -> tuple[str, ...]:
    return tuple(m.name for m in METHOD_TABLE.values() if task in m.tasks)
