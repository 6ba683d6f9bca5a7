"""The project's modules import each other without a cycle (lazy imports inside functions
count too: a cycle there is still two modules that cannot be understood apart; imports
for type checking only do not run, and do not count)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "sweep")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return out


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in runtime_nodes(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports the module pkg.mod when there is one
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert "sweep.cli" in graph and "sweep.errors" in graph["sweep.cli"]
    assert cycles(graph) == []


def test_models_never_import_the_sweep():
    graph = import_graph()
    assert not {t for m, ts in graph.items() if m.startswith("models") for t in ts
                if t.startswith("sweep")}


# The layers, lowest first: a module imports only from its own layer or the ones below.
LAYERS = (
    ("models",),
    ("sweep.errors", "sweep.logs", "sweep.provenance", "sweep.space", "sweep.configfile",
     "sweep.pruning", "sweep.optuna_private", "sweep.scoped", "sweep.storage.outages"),
    ("sweep.storage",),
    ("sweep.answer",),
    ("sweep.runner",),
    ("sweep",),
    ("sweep.bench",),
    ("sweep.commands", "sweep.cli", "sweep.__main__"),
)
# Only the command line knows flags: argparse, and errors that name a --flag.
CLI = ("sweep.cli", "sweep.commands")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(-[a-z0-9]+)*\b")


def layer(module: str) -> int:
    """The index of the layer ``module`` belongs to (the longest matching prefix wins)."""
    best, found = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found >= 0, f"{module} is in no layer: add it to LAYERS"
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if layer(t) > layer(m))


def flag_strings(path: Path) -> list[str]:
    """The strings of ``path``'s raise statements that name a --flag: a library error names
    its parameter (``n_trials``); the command line maps parameters to flags."""
    raises = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Raise)]
    return [node.value for r in raises for node in ast.walk(r)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and FLAG.search(node.value)]


def test_layers_are_checked_and_a_planted_upward_import_is_found():
    assert upward({"sweep.storage.stores": {"sweep.answer.report"}}) == [
        "sweep.storage.stores -> sweep.answer.report"]
    assert upward({"sweep.answer.report": {"sweep.storage.stores"}}) == []
    assert FLAG.search("refused; pass --n-trials 3") and not FLAG.search("a 2--3 range")
    planted = ROOT / "tests" / "planted_flag_error.py"
    try:
        planted.write_text("def f(n):\n    raise ValueError(f'--n-trials must be >= 0, got {n}')\n")
        assert flag_strings(planted) == ["--n-trials must be >= 0, got "]
    finally:
        planted.unlink()


def test_no_module_imports_a_higher_layer():
    assert upward(import_graph()) == []


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
