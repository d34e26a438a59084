"""MkDocs hooks: the Python API reference covers the public API, and every object it shows is
documented, so that `mkdocs build --strict` (run by tests/test_docs.py) fails on an
undocumented public symbol as it fails on a broken link."""

from __future__ import annotations

import importlib
import inspect
import logging
import re

log = logging.getLogger("mkdocs.hooks.api_reference")

API_PAGE = "api.md"


def resolve(path: str):
    """``a.b.C.d`` -> the object, importing the longest module prefix."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def undocumented(path: str) -> list[str]:
    """``path`` and its public members that have no docstring of their own."""
    obj = resolve(path)
    doc = inspect.getdoc(obj) or ""
    generated = inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")  # a dataclass's own signature
    missing = [] if doc and not generated else [path]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            if not (member.__doc__ or "").strip():
                missing.append(f"{path}.{name}")
    return missing


def problems(markdown: str) -> list[str]:
    import mipd_edge

    shown = re.findall(r"^::: ([\w.]+)", markdown, re.M)
    names = {p.rsplit(".", 1)[-1] for p in shown}
    out = [f"mipd_edge.{name} is public (mipd_edge.__all__) but not in the API reference"
           for name in mipd_edge.__all__ if not name.startswith("_") and name not in names]
    for path in shown:
        out += [f"{m} has no docstring" for m in undocumented(path)]
    return out


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == API_PAGE:
        for problem in problems(markdown):
            log.warning(problem)
    return markdown
