"""The import graph of ``src/ifscope`` runs one way: no cycle, and no module imports a higher floor.

Every import counts, including those inside functions (a lazy import is still a dependency). Floors, bottom up, are
named in ``FLOORS``; a new top-level module or subpackage must be given one here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ifscope"

FLOORS = {
    "_version": 0,
    "core": 1,  # numerical core: tensors, tasks, curvature products, Krylov loops, projections, files
    "options": 2,  # typed options of every command and estimator, and the one resolver
    "truth": 3,  # deterministic training, replays, ground truth, the adjoint
    "estimators": 4,
    "recipes": 4,  # built-in models and how users plug theirs in
    "run": 5,  # run directory, distributed scoring
    "influence": 6,
    "experiments": 7,  # fade, validity, diagnose, correct, evaluate
    "report": 8,
    "cli": 9,
    "__init__": 9,
    "__main__": 10,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the ifscope modules (or packages) ``path`` imports."""
    module = _module(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ifscope" or target.startswith("ifscope."):
                names = [f"{target}.{a.name}" for a in node.names]
                subs = [n for n in names if _exists(n)]
                out.update(subs or [target])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("ifscope"))
    return out


def _exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def _floor(name: str) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in FLOORS:
        raise AssertionError(f"{name}: top-level name {top!r} has no floor in FLOORS; give it one")
    return FLOORS[top]


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in SRC.rglob("*.py")}


def test_no_module_imports_a_higher_floor():
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            if target != "ifscope" and _floor(target) > _floor(module):
                bad.append(f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})")
    assert not bad, "\n".join(sorted(bad))


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph or nxt == node or nxt == "ifscope":
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The checker itself: a core module importing the CLI is reported (the test above can fail)."""
    pkg = tmp_path / "ifscope"
    (pkg / "core").mkdir(parents=True)
    (pkg / "cli").mkdir()
    for init in (pkg / "__init__.py", pkg / "core" / "__init__.py", pkg / "cli" / "__init__.py"):
        init.write_text("")
    (pkg / "core" / "low.py").write_text("from ..cli import high\n")
    (pkg / "cli" / "high.py").write_text("from ..core import low\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", pkg)
    graph = _graph()
    assert "ifscope.cli.high" in graph["ifscope.core.low"]
    with pytest.raises(AssertionError, match="imports ifscope.cli.high"):
        test_no_module_imports_a_higher_floor()
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_the_import_graph_has_no_cycle()
