"""The layout keeps its promises: no import cycles, the inference package stands alone, and stage
modules stay readable (no function longer than a screen)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import CODE_PACKAGES
from tests.conftest import ROOT

MAX_STAGE_FUNCTION_LINES = 60
# What the registered model's code may import besides itself (MLflow only for its pyfunc API).
INFERENCE_ALLOWED_PROJECT = {"inference"}
INFERENCE_FORBIDDEN = {
    "prefect",
    "mlflow.tracking",
    "mlflow.client",
    "dvc",
    "optuna",
    "great_expectations",
}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """module name -> file, for every .py file of the code packages under `root`."""
    out: dict[str, Path] = {}
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            name = ".".join(rel.parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports_of(path: Path) -> set[str]:
    """Every absolute module name imported anywhere in the file (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_itself_through_others() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {
        "tasks.register.stage": {"tasks.compress.stage"},
        "tasks.compress.stage": {"tasks.register.stage"},
        "core.io": set(),
    }
    assert find_cycle(graph) == [
        "tasks.compress.stage",
        "tasks.register.stage",
        "tasks.compress.stage",
    ]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_inference_package_imports_only_itself_and_libraries() -> None:
    modules = project_modules()
    for name, path in modules.items():
        if not name.startswith("inference"):
            continue
        imported = imports_of(path)
        project = {m.split(".")[0] for m in imported if m.split(".")[0] in CODE_PACKAGES}
        assert project <= INFERENCE_ALLOWED_PROJECT, (name, project)
        bad = {m for m in imported for f in INFERENCE_FORBIDDEN if m == f or m.startswith(f + ".")}
        assert not bad, (name, bad)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tasks").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_stage_functions_fit_on_a_screen(path: Path) -> None:
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_STAGE_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: {', '.join(long)}"
