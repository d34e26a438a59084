"""Backends behind one ``Runtime`` interface, imported only when asked for.

``load_runtime`` loads a backend of the table in ``deploy/backends.py``; a backend that is not
installed is a clear error naming the pip extra that provides it. ``selection.select_runtime`` is ``backend="auto"``:
it measures the candidates and keeps the fastest.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional

from ...errors import MissingDependencyError
from ..backends import BACKENDS, backend_info, installed
from ..bundle import BundleManifest
from .base import Runtime


def load_runtime(name: str, bundle: Path, manifest: BundleManifest, device: str = "CPU",
                 precision: Optional[str] = None, threads: Optional[int] = None, **options: Any) -> Runtime:
    backend = backend_info(name)
    if not backend.installed():
        raise MissingDependencyError(f"the {name} backend needs '{backend.package}', which is not installed: "
                                     f"pip install 'mipd-edge[{backend.extra}]'")
    runtime = runtime_class(name)(bundle, manifest, device=device, precision=precision, threads=threads, **options)
    runtime.name = name  # the table's name, also for a subclass registered under its own
    return runtime


def runtime_class(name: str) -> type[Runtime]:
    """The ``Runtime`` class of a backend (its module imported now)."""
    module, _, cls = backend_info(name).runtime.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["Runtime", "BACKENDS", "installed", "load_runtime", "runtime_class"]
