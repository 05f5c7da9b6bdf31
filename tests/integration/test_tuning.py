"""Tuning on a real local Dask cluster (2 worker processes) through the Prefect flow."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import make_project

pytestmark = pytest.mark.integration


def test_flow_tunes_on_a_local_dask_cluster_and_trains_what_model_selection_chose(
    tmp_path, credit_small
) -> None:
    import mlflow

    project = make_project(
        tmp_path,
        credit_small,
        tune={"enabled": True, "n_trials": 4, "runner": {"kind": "dask", "workers": 2}},
    )
    result = project.flow("run")
    out = result.stdout + result.stderr
    # Known noise: distributed can log a closed-comm traceback while the local cluster shuts down
    # (batched.py _background_send); any other traceback fails the test.
    tracebacks = out.count("Traceback")
    assert tracebacks == out.count("distributed/batched.py"), out[-3000:]
    assert "dask runner with 2 worker(s) x 1 LightGBM thread(s)" in out
    assert "4/4 trials" in out and "best roc_auc" in out  # the progress line

    tuning = json.loads((project.root / "metrics/tuning.json").read_text())
    assert tuning["runner"] == {"kind": "dask", "workers": 2, "queued": 2, "threads_per_trial": 1}
    assert tuning["cv_metric"] == "roc_auc" and 0.5 < tuning["cv_mean"] <= 1
    assert sum(tuning["trials"].values()) == 4 and tuning["trials"]["failed"] == 0
    assert tuning["fidelity"]["level"] == "full" and tuning["fidelity"]["n_folds"] == 3
    # Model selection: LightGBM's defaults are trial 0, the best trial is never below them, the
    # linear model was scored in the same folds, and what won is what train fitted.
    assert tuning["best_trial_score"] >= tuning["lightgbm_defaults"] > 0.5
    assert "linear" in tuning["candidates"]
    assert "trial 0 (lightgbm_defaults)" in tuning["candidates"]
    selection = json.loads((project.root / "models/selection.json").read_text())
    assert (
        tuning["winner"] == selection["winner"] and tuning["cv_mean"] == selection["cv"]["chosen"]
    )
    assert tuning["cv_mean"] >= tuning["best_single"]["score"]
    assert sum(tuning["weights"].values()) == pytest.approx(1.0, abs=1e-5)
    assert not any("second" in key for key in tuning)  # timings go to MLflow only
    train = json.loads((project.root / "metrics/train.json").read_text())
    assert train["winner"] == selection["winner"] and train["members"] == tuning["weights"]
    assert f"train: {selection['winner']}; evaluation model on" in out
    test = json.loads((project.root / "metrics/test.json").read_text())
    assert test["cv"] == {"mean": tuning["cv_mean"], "std": tuning["cv_std"], "metric": "roc_auc"}

    mlflow.set_tracking_uri(project.tracking_uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["credit-scoring"])
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert len(children) == 4 and set(children["tags.tune.state"]) <= {"complete", "pruned"}
    assert parent["params.tune.best.learning_rate"]
    assert parent["metrics.tune_cv_roc_auc"] == tuning["cv_mean"]
    assert parent["metrics.tune_lightgbm_defaults_roc_auc"] == tuning["lightgbm_defaults"]
    assert parent["metrics.tune_seconds_total"] > 0
    artifacts = {a.path for a in client.list_artifacts(parent["run_id"], "tuning")}
    assert {
        "tuning/optimization_history.png",
        "tuning/param_importance.png",
        "tuning/trials.csv",
    } <= artifacts


def test_kill_9_during_tune_leaves_no_server_or_workers_behind(tmp_path, credit_small) -> None:
    """`python -m flows stage tune` (what `dvc repro` runs) with trials in worker processes and
    Prefect's temporary server: SIGKILL of the stage stops them too."""
    import subprocess
    import sys
    import time

    import psutil

    project = make_project(
        tmp_path,
        credit_small,
        shared_prefect=False,
        tune={"enabled": True, "n_trials": 400, "runner": {"kind": "process", "workers": 2}},
    )
    project.dvc("repro", "features")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "stage", "tune"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started: list[psutil.Process] = []
    try:
        stage = psutil.Process(proc.pid)
        deadline = time.monotonic() + 300
        # the watchdog, the temporary server and two pool workers (trials running)
        while len(stage.children(recursive=True)) < 4:
            assert proc.poll() is None and time.monotonic() < deadline, "tune did not start"
            time.sleep(0.5)
        time.sleep(1.0)
        started = stage.children(recursive=True)
        proc.kill()
        proc.wait()
        time.sleep(10)
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [" ".join(p.cmdline()[:4]) for p in left]
    finally:
        proc.kill()
        for p in started:  # whatever a failure left
            if p.is_running():
                p.kill()
