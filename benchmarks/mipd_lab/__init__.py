"""Research code that compares MIPD with its parts, with the authors' formulation and with
other architectures. It imports ``mipd_edge`` and is never imported by it (an import-linter
contract in ``pyproject.toml``): the installed package holds what a user runs.

The scripts in ``benchmarks/`` import it as ``mipd_lab`` (their own folder is on the path).
"""
