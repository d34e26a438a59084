"""The house rules a tool can check: the import layers (import-linter contracts in
pyproject.toml) and lint with import order (ruff, configured there too)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the tools the dev extra installs beside this interpreter


def test_import_layers_hold():
    r = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_ruff_lint_passes():
    r = subprocess.run([str(BIN / "ruff"), "check", "mipd_edge", "tests", "benchmarks", "examples"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_no_function_takes_more_than_8_parameters():
    """Configs, the run context and small records (``CachedImages``, ``RationaleWriter``) carry
    what long argument lists used to, private helpers included (self and cls not counted)."""
    import ast

    long = []
    for path in sorted([*(ROOT / "mipd_edge").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                count = len(names) + bool(a.vararg) + bool(a.kwarg)
                if count > 8:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({count})")
    assert not long, long
