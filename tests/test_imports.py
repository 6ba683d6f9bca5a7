"""Only the command line knows flags: no module outside ``sweep.cli`` and ``sweep.commands``
imports argparse or raises an error naming a ``--flag`` (a library error names its
parameter). The import graph's layers and its lack of cycles are import-linter contracts
(pyproject.toml's ``[tool.importlinter]``, run by ``lint-imports`` in .ci/run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "sweep")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Only the command line knows flags: argparse, and errors that name a --flag.
CLI = ("sweep.cli", "sweep.commands")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(-[a-z0-9]+)*\b")


def flag_strings(path: Path) -> list[str]:
    """The strings of ``path``'s raise statements that name a --flag: a library error names
    its parameter (``n_trials``); the command line maps parameters to flags."""
    raises = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Raise)]
    return [node.value for r in raises for node in ast.walk(r)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and FLAG.search(node.value)]


def test_a_planted_flag_error_is_found():
    assert FLAG.search("refused; pass --n-trials 3") and not FLAG.search("a 2--3 range")
    planted = ROOT / "tests" / "planted_flag_error.py"
    try:
        planted.write_text("def f(n):\n    raise ValueError(f'--n-trials must be >= 0, got {n}')\n")
        assert flag_strings(planted) == ["--n-trials must be >= 0, got "]
    finally:
        planted.unlink()


def test_only_the_command_line_knows_argparse_and_flags():
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found = []
    for name, path in modules.items():
        if name.startswith(CLI):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names)
               or isinstance(n, ast.ImportFrom) and n.module == "argparse"
               for n in ast.walk(tree)):
            found.append(f"{name}: imports argparse")
        found += [f"{name}: {s!r}" for s in flag_strings(path)]
    assert found == []
