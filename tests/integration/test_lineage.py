"""Lineage in daily use: a rerun changes nothing under git and registers nothing, a dirty tree
registers with its diff, a DVC experiment never takes @champion, a copied project registers
nothing new."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration
MODEL = "credit-scoring"


def _client(project: Project):  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    return mlflow.MlflowClient()


def _versions(project: Project) -> list[str]:
    return sorted(str(v.version) for v in _client(project).search_model_versions(f"name='{MODEL}'"))


def _champion(project: Project) -> str:
    return str(_client(project).get_model_version_by_alias(MODEL, "champion").version)


def test_reruns_dirty_trees_experiments_and_copies(tmp_path: Path, credit_small) -> None:
    # A margin no candidate misses: every gate verdict is promote unless held back.
    project = make_project(
        tmp_path,
        credit_small,
        compress={"enabled": True, "latency_rows": 3},
        gate={"rule": "non_inferior", "margin": 1.0},
        evaluate={"n_boot": 200, "shap_sample": 100},
    )
    project.flow("run")
    first = project.run("git", "status", "--porcelain").stdout
    v1 = _client(project).get_model_version(MODEL, "1")
    assert not v1.tags["git_commit"].endswith("-dirty") and "git_diff" not in v1.tags
    assert v1.tags["git_branch"] and v1.tags["dvc_experiment"] == ""
    # timings are in MLflow and an ignored file, not in the tracked outputs
    assert "p50_single_row_ms" not in (project.root / "reports/compress/pareto.csv").read_text()
    assert project.run("git", "check-ignore", "reports/timings/compress.json").returncode == 0
    assert "reports/model_card.md" not in first
    run = _client(project).get_run(v1.run_id)
    assert run.data.metrics["compress_latency_ratio"] > 0

    # compress again on the same inputs: the same bytes, so register stays current
    assert "Running stage 'compress'" in project.dvc("repro", "-f", "-s", "compress").stdout
    assert project.run("git", "status", "--porcelain").stdout == first
    assert "up to date" in project.dvc("status").stdout
    assert "stages run:     none" in project.flow("run").stdout and _versions(project) == ["1"]

    # uncommitted params: registered, tagged dirty, the diff kept with the run
    project.set_params(gate={"margin": 0.9})
    project.flow("run")
    v2 = _client(project).get_model_version(MODEL, "2")
    assert v2.tags["git_commit"].endswith("-dirty") and _champion(project) == "2"
    diff = Path(_client(project).download_artifacts(v2.run_id, v2.tags["git_diff"], str(tmp_path)))
    assert "+  margin: 0.9" in diff.read_text() and "dvc.lock" not in diff.read_text()

    # an experiment registers as @challenger at most; the champion stays
    project.dvc("exp", "run", "-S", "features.imbalance=class_weight")
    v3 = _client(project).get_model_version(MODEL, "3")
    assert v3.tags["dvc_experiment"] and v3.tags["gate.decision"] == "hold"
    assert v3.aliases == ["challenger"] and _champion(project) == "2"

    # a copy of the project (store included) registers nothing new
    copy = Project(tmp_path / "copy", {**project.env, "PYTHONPATH": str(tmp_path / "copy")})
    shutil.copytree(project.root, copy.root, symlinks=True)
    copy.flow("run")
    assert _versions(copy) == _versions(project)
