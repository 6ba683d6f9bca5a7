"""Every private name of a library (Optuna, torch, torchvision, Lightning) that the project
uses is listed, with its reason, in ``sweep.optuna_private.PRIVATE`` or
``models.private_api.PRIVATE``; a new one anywhere else fails here, and so does a listed name
nothing uses any more.

A name is the library's when the project never defines it: an attribute read or written on
something other than ``self``/``cls``, a module path with a ``_part``, a ``_name`` imported
from a library, or a ``_method`` a class of ours overrides from a library's base class.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

from models import private_api
from sweep import optuna_private

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "sweep")
# What Python itself puts on classes (ABCMeta, Protocol), not a library's API.
LANGUAGE = {"_abc_impl", "_is_protocol"}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined(trees: list[ast.AST]) -> set[str]:
    """The names the project defines itself: functions, classes, variables, arguments and
    attributes of ``self``/``cls``."""
    names: set[str] = set()
    for tree in trees:
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
            elif isinstance(n, ast.arg):
                names.add(n.arg)
            elif (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
                  and isinstance(n.value, ast.Name) and n.value.id in ("self", "cls")):
                names.add(n.attr)
    return names


def used(trees: list[ast.AST], ours: set[str]) -> set[str]:
    """The libraries' private names that ``trees`` use (see the module docstring)."""
    found: set[str] = set()
    for tree in trees:
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute):
                if private(n.attr) and (n.attr not in ours or isinstance(n.ctx, ast.Store)
                                        and not (isinstance(n.value, ast.Name)
                                                 and n.value.id in ("self", "cls"))):
                    found.add(n.attr)
                if ast.unparse(n.value) == "torch.ops":
                    found.add(f"torch.ops.{n.attr}")
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0 \
                    and not n.module.startswith(PACKAGES):
                if any(private(part) for part in n.module.split(".")):
                    found.add(n.module)
                found |= {f"{n.module}:{a.name}" for a in n.names if private(a.name)}
            elif isinstance(n, ast.Import):
                found |= {a.name for a in n.names
                          if any(private(part) for part in a.name.split("."))}
    return found


def overridden() -> set[str]:
    """The ``_methods`` our classes define over a library base class's."""
    found: set[str] = set()
    for package in PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__,
                                          f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for cls in vars(module).values():
                if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                    continue
                for attr in set(vars(cls)) - LANGUAGE:
                    if private(attr) and any(attr in vars(base) for base in cls.__mro__[1:]
                                             if not base.__module__.startswith(PACKAGES)):
                        found.add(attr)
    return found


def project_trees() -> list[ast.AST]:
    return [ast.parse(p.read_text()) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def test_a_planted_private_name_is_found_and_our_own_are_not(tmp_path):
    planted = ast.parse(
        "import optuna.storages._rdb\n"
        "from optuna.study._optimize import _run_trial\n"
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def f(self, study, other):\n"
        "        other._mine = 2\n"
        "        return self._mine, study._storage, torch.ops.image.decode_png\n")
    assert used([planted], defined([planted])) == {
        "optuna.storages._rdb", "optuna.study._optimize",
        "optuna.study._optimize:_run_trial", "_storage", "_mine", "torch.ops.image"}


def test_every_private_library_name_used_is_listed_with_its_reason():
    listed = {**optuna_private.PRIVATE, **private_api.PRIVATE}
    trees = project_trees()
    found = used(trees, defined(trees)) | overridden()
    assert found - set(listed) == set(), "private names used but not listed"
    assert set(listed) - found == set(), "listed but no longer used"
    assert all(reason.strip() for reason in listed.values())
