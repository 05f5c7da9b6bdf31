from pathlib import Path

import pytest

from adapters.tracking import RunContext, join_or_start_dvc_run, log_to_run


def test_stages_of_one_invocation_share_a_parent_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    pointer = tmp_path / ".pipeline" / "run.json"
    monkeypatch.setattr("adapters.tracking.dvc_invocation_key", lambda: "dvc-1")
    first = join_or_start_dvc_run(uri, "exp", tmp_path / "art", pointer, params={"a": 1})
    second = join_or_start_dvc_run(uri, "exp", tmp_path / "art", pointer)
    assert first.run_id == second.run_id and first.entry == "dvc"
    monkeypatch.setattr("adapters.tracking.dvc_invocation_key", lambda: "dvc-2")
    third = join_or_start_dvc_run(uri, "exp", tmp_path / "art", pointer)
    assert third.run_id != first.run_id
    log_to_run(first, metrics={"m": 1.5})
    run = mlflow.MlflowClient(uri).get_run(first.run_id)
    assert run.data.metrics["m"] == 1.5 and run.data.params["a"] == "1"
    assert run.info.status == "FINISHED"


def test_disabled_context_logs_nothing() -> None:
    log_to_run(RunContext(), metrics={"m": 1.0})  # must not touch any store


def test_experiments_are_tagged_as_model_training_for_the_ui(tmp_path: Path) -> None:
    import mlflow

    from adapters.tracking import (
        EXPERIMENT_KIND,
        EXPERIMENT_KIND_TAG,
        configure_mlflow,
        ensure_experiment,
    )

    configure_mlflow(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient()
    created = ensure_experiment("new", tmp_path / "art")
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    untagged = client.create_experiment("by-hand")
    assert ensure_experiment("by-hand", tmp_path / "art") == untagged
    assert client.get_experiment(untagged).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    client.set_experiment_tag(untagged, EXPERIMENT_KIND_TAG, "genai_development")
    ensure_experiment("by-hand", tmp_path / "art")  # a kind someone chose is kept
    assert client.get_experiment(untagged).tags[EXPERIMENT_KIND_TAG] == "genai_development"
