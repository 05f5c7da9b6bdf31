"""dvc.yaml declares what each stage's code is made of, and the flow runs dvc.yaml's stages.

A stage's code is its task's module and every project module that module imports, transitively
(imports inside functions included). dvc.yaml must list each of those files (or a folder holding
it) as a dep, and no code dep that none of them is: a missing one lets both entry points reuse
stale outputs after a change, an extra one reruns a stage for nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from adapters.dvc import read_stages, stage_outputs
from core import CODE_PACKAGES
from flows.training import STAGES, stage_order
from tests.conftest import ROOT
from tests.unit.test_layout import import_graph, project_modules

# Imported by every stage, and no stage output depends on their code: error types (messages
# only), MLflow logging (the tracking store is not a DVC output), params parsing (what a stage
# reads from params.yaml is declared as that stage's params; tests/integration checks it) and
# the atomic-write and path plumbing.
NOT_OUTPUT_CODE = {
    "core/errors.py",
    "inference/errors.py",
    "adapters/tracking.py",
    "core/config.py",
    "core/io.py",
}


def stage_modules() -> dict[str, str]:
    """stage -> the module of its task."""
    return {name: task.fn.__module__ for name, task in STAGES.items()}


def code_files(
    root: Path, module: str, graph: dict[str, set[str]], modules: dict[str, Path]
) -> set[str]:
    """The files of `module` and of every project module it imports, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return {str(modules[m].relative_to(root)) for m in seen} - NOT_OUTPUT_CODE


def _covers(dep: str, file: str) -> bool:
    dep = dep.rstrip("/")
    return file == dep or file.startswith(dep + "/")


def code_dep_problems(root: Path) -> dict[str, dict[str, list[str]]]:
    """stage -> {"undeclared": imported files no dep covers, "unused": code deps covering no
    imported file}; stages without problems are left out."""
    problems: dict[str, dict[str, list[str]]] = {}
    graph, modules, tasks = import_graph(root), project_modules(root), stage_modules()
    for name, spec in read_stages(root).items():
        files = code_files(root, tasks[name], graph, modules)
        deps = [str(d) for d in spec.get("deps", [])]
        code = [d for d in deps if d.split("/")[0] in CODE_PACKAGES]
        undeclared = sorted(f for f in files if not any(_covers(d, f) for d in deps))
        unused = sorted(d for d in code if not any(_covers(d, f) for f in files))
        if undeclared or unused:
            problems[name] = {"undeclared": undeclared, "unused": unused}
    return problems


def test_every_stage_declares_the_code_it_imports() -> None:
    assert code_dep_problems(ROOT) == {}


def _copy_project(dest: Path) -> Path:
    for package in CODE_PACKAGES:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(ROOT / "dvc.yaml", dest / "dvc.yaml")
    return dest


def test_an_undeclared_import_fails_the_check(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    drift = root / "tasks" / "drift.py"
    drift.write_text(drift.read_text() + "\nfrom tasks.tune import search  # noqa: E402,F401\n")
    assert code_dep_problems(root) == {
        "drift": {"undeclared": ["tasks/tune/__init__.py", "tasks/tune/search.py"], "unused": []}
    }


def test_a_dropped_dep_and_a_needless_dep_fail_the_check(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc["stages"]["compress"]["deps"].remove("tasks/evaluate")
    dvc["stages"]["ingest"]["deps"].append("tasks/drift.py")
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    problems = code_dep_problems(root)
    assert set(problems) == {"compress", "ingest"}
    assert "tasks/evaluate/metrics.py" in problems["compress"]["undeclared"]
    assert problems["ingest"] == {"undeclared": [], "unused": ["tasks/drift.py"]}


def test_the_flow_runs_the_stages_of_dvc_yaml_in_its_order() -> None:
    assert stage_order(ROOT) == list(read_stages(ROOT)) and set(STAGES) == set(read_stages(ROOT))


def test_a_stage_missing_from_dvc_yaml_is_an_error(tmp_path: Path) -> None:
    import pytest

    from flows.training import StageGraphError

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    del dvc["stages"]["drift"]
    dvc["stages"]["deploy"] = {"cmd": "true"}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    with pytest.raises(
        StageGraphError, match="no task for stage.s. deploy; stage.s. drift missing"
    ):
        stage_order(tmp_path)


def test_each_stage_comes_after_the_stages_whose_outputs_it_reads() -> None:
    stages = read_stages(ROOT)
    order = list(stages)
    producer = {out: name for name, spec in stages.items() for out in stage_outputs(spec)}
    for name, spec in stages.items():
        for dep in spec.get("deps", []):
            made_by = next((s for out, s in producer.items() if _covers(out, str(dep))), None)
            if made_by is not None and made_by != name:
                assert order.index(made_by) < order.index(name), (name, dep, made_by)
