"""The real Prefect flow and the real `dvc repro` on small data, sharing one state."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.conftest import make_project

pytestmark = pytest.mark.integration


def _stages_run(dvc_output: str) -> list[str]:
    return [
        line.split("'")[1] for line in dvc_output.splitlines() if line.startswith("Running stage")
    ]


def _load_champion(project, name: str = "credit-scoring"):  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{name}@champion"), mlflow.MlflowClient()


def test_flow_registers_a_champion_that_scores_raw_rows(tmp_path, credit_small) -> None:
    # As `make run` does: a temporary Prefect server; trials in worker processes (the default
    # runner), still deterministic across reruns; the compact model compiled. On this data model
    # selection blends LightGBM trials with the linear model: the champion is an ensemble, and
    # its compact model a student of it (a small student of a blend loses more than pruned
    # trees of one model, and the bound on a valid split of ~180 rows is wide: it gets a
    # tolerance it can meet).
    max_drop = 0.06
    project = make_project(
        tmp_path,
        credit_small,
        shared_prefect=False,
        tune={"enabled": True, "runner": {"kind": "process"}},
        compress={"enabled": True, "compile": True, "max_metric_drop": max_drop},
    )
    first = project.flow("run")
    out = first.stdout + first.stderr
    assert "Traceback" not in out and "CancelledError" not in out
    assert "version 1 @champion" in first.stdout
    assert "roc_auc=" in first.stdout
    selection = json.loads((project.root / "models/selection.json").read_text())
    assert selection["winner"].startswith("ensemble of"), selection["cv"]
    assert selection["cv"]["chosen"] > selection["cv"]["best_single"]["score"]
    assert f"model:          {selection['winner']}" in first.stdout

    # Shared state: DVC agrees everything is current, and a second flow run skips every stage.
    assert "up to date" in project.dvc("status").stdout
    again = project.flow("run")
    assert "stages run:     none" in again.stdout
    assert _stages_run(project.dvc("repro").stdout) == []

    model, client = _load_champion(project)
    rows = credit_small.drop(columns="Status").head(6).copy()
    rows.loc[0, "Home"] = "martian"  # unseen level
    rows.loc[1, ["Income", "Assets", "Debt"]] = np.nan  # missing values
    rows.loc[2, "Job"] = None
    assert pd.api.types.is_integer_dtype(rows["Seniority"])  # raw rows, dtypes as ingested
    pred = model.predict(rows)
    assert list(pred.columns) == ["probability", "label"]
    assert pred["probability"].between(0, 1).all() and len(pred) == 6
    # What is registered is the ensemble, shipped (every labelled row) beside its evaluation twin
    # (the train split only), with the selection's weights and threshold.
    from inference.ensemble import WeightedEnsemble

    wrapper = model.unwrap_python_model()
    shipped, twin = wrapper.model, wrapper.evaluation_model()
    weights = {m["name"]: m["weight"] for m in selection["members"]}
    for fitted in (shipped, twin):
        assert isinstance(fitted.estimator, WeightedEnsemble)
        assert fitted.estimator.weights() == weights
        assert fitted.threshold == selection["threshold"]
    train = pd.read_parquet(project.root / "data/processed/train.parquet")
    assert twin.metadata["rows"] == len(train) < shipped.metadata["rows"]
    assert not np.allclose(twin.predict_scores(rows), pred["probability"])
    # An integer column of the training data refuses a missing value, naming the column.
    holes = rows.astype({"Seniority": "float64"})
    holes.loc[3, "Seniority"] = np.nan
    with pytest.raises(Exception, match="Seniority"):
        model.predict(holes)

    version = client.get_model_version_by_alias("credit-scoring", "champion")
    tags = version.tags
    raw = (project.root / "data/raw/raw.parquet").read_bytes()
    assert tags["data_md5"] == hashlib.md5(raw).hexdigest()
    assert len(tags["git_commit"]) >= 40 and tags["prefect_flow_run_id"]
    assert tags["dataset_rows"] == str(len(credit_small))
    run = client.get_run(version.run_id)
    assert run.data.metrics["test_roc_auc"] > 0.7
    assert run.data.params["data.target"] == "Status"

    # Deterministic: rerunning every stage reproduces the metrics exactly.
    before = json.loads((project.root / "metrics/test.json").read_text())
    # The gate (params.yaml: non_inferior) promotes an identical retrain: difference exactly 0.
    forced = project.flow("run", "--force")
    assert "version 2 @champion" in forced.stdout
    assert "improvement +0.0000 [95% CI +0.0000, +0.0000]" in forced.stdout
    assert json.loads((project.root / "metrics/test.json").read_text()) == before

    # The compact model follows the full one: v2 of both are @champion; it scores raw rows
    # (the same edge cases) with its compiled library, within the stated bound of its trees.
    compact, _ = _load_champion(project, "credit-scoring-compact")
    cv = client.get_model_version_by_alias("credit-scoring-compact", "champion")
    assert str(cv.version) == "2" and cv.tags["full_version"] == "2"
    assert cv.tags["compiled"] == "true" and float(cv.tags["size_ratio"]) > 1
    assert float(cv.tags["valid_metric_drop"]) <= max_drop
    out = compact.predict(rows)
    assert list(out.columns) == ["probability", "label"] and len(out) == 6
    assert out["probability"].between(0, 1).all()
    assert np.corrcoef(out["probability"], pred["probability"])[0, 1] > 0.8
    needed = cv.tags["raw_columns"].split(",")
    only_needed = compact.predict(rows[needed])
    assert np.allclose(only_needed["probability"], out["probability"])
    assert "compact model:  credit-scoring-compact version 2 @champion" in forced.stdout
    pareto = pd.read_csv(project.root / "reports/compress/pareto.csv")
    assert pareto["chosen"].sum() == 1 and (pareto["kind"] == "compiled").any()
    # An ensemble is compressed by students only (no tree pruning of one member).
    assert set(pareto["kind"]) <= {"full", "distill", "hard_labels", "quantize", "compiled"}


def test_dvc_repro_reruns_only_what_changed(tmp_path, credit_small) -> None:
    import mlflow

    # Tuning off: the selection is train.params with its round count from one CV (the tune
    # stage), so changing one of them reruns tune and everything after it (with tuning on, the
    # study chooses the params and train.params do not matter).
    project = make_project(
        tmp_path, credit_small, tune={"enabled": False}, compress={"enabled": True}
    )
    first = project.dvc("repro")
    assert _stages_run(first.stdout) == [
        "ingest",
        "validate",
        "preprocess",
        "features",
        "tune",
        "train",
        "evaluate",
        "compress",
        "register",
        "drift",
    ]
    assert "Traceback" not in first.stderr
    assert _stages_run(project.dvc("repro").stdout) == []

    compact_v1 = json.loads((project.root / "models/registration.json").read_text())["compact"]
    assert compact_v1["version"] == 1 and compact_v1["alias"] == "champion"

    # compress.enabled: false skips it; the new full version has no compact twin, so the
    # compact model's alias (which follows the full model's) moves only if v2 becomes champion.
    project.set_params(train={"params": {"learning_rate": 0.05}}, compress={"enabled": False})
    second = project.dvc("repro")
    assert _stages_run(second.stdout) == [
        "tune",
        "train",
        "evaluate",
        "compress",
        "register",
        "drift",
    ]
    selection = json.loads((project.root / "models/selection.json").read_text())
    assert selection["winner"] == "train.params"
    assert selection["members"][0]["params"]["learning_rate"] == 0.05
    registration = json.loads((project.root / "models/registration.json").read_text())
    assert registration["version"] == 2 and registration["compact"] is None
    assert (
        registration["alias"]
        == {"promote": "champion", "keep": "challenger"}[registration["gate"]["action"]]
    )
    _use(project)
    # (search_model_versions does not fill in aliases: read them off the registered model.)
    compact = mlflow.MlflowClient().get_registered_model("credit-scoring-compact")
    compact_aliases = {k: str(v) for k, v in compact.aliases.items()}
    assert compact_aliases == ({} if registration["alias"] == "champion" else {"champion": "1"})

    metrics = project.dvc("metrics", "show", "--json")
    assert "roc_auc" in metrics.stdout
    plots = project.dvc("plots", "show", "-o", str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "index.html").stat().st_size > 1000
    assert "Traceback" not in plots.stderr

    runs = (
        mlflow.search_runs(
            experiment_names=["credit-scoring"],
            filter_string="tags.`pipeline.entry` = 'dvc'",
            order_by=["start_time ASC"],
        )
        if _use(project)
        else None
    )
    assert runs is not None and len(runs) == 2  # one parent run per `dvc repro`
    assert set(runs["status"]) == {"FINISHED"}
    assert runs.iloc[1]["params.train.params.learning_rate"] == "0.05"
    assert not np.isnan(runs.iloc[1]["metrics.test_roc_auc"])

    # And the flow sees DVC's outputs as current.
    last = project.flow("run").stdout
    assert "stages run:     none" in last and "tuning:         off" in last


def _use(project) -> bool:  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    return True


def test_multiclass_from_csv(tmp_path) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    frame = wine.frame.rename(columns={"target": "cultivar"})
    frame["cultivar"] = frame["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    project = make_project(
        tmp_path,
        frame,
        suggest_suites=True,
        data={"target": "cultivar", "task": "multiclass", "positive_label": None},
        register={"model_name": "wine"},
        gate={"criteria": {}},
        compress={"enabled": True},
    )  # multiclass candidates
    result = project.flow("run")
    assert "macro_f1=" in result.stdout and "version 1 @champion" in result.stdout
    model, _ = _load_champion(project, "wine")
    pred = model.predict(frame.drop(columns="cultivar").head(5))
    assert {"proba_barbera", "proba_barolo", "proba_grignolino", "label"} == set(pred.columns)
    assert np.allclose(pred.filter(like="proba_").sum(axis=1), 1.0)
    assert (project.root / "plots/confusion.csv").is_file()


def test_regression_from_parquet_through_dvc(tmp_path) -> None:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    project = make_project(
        tmp_path,
        frame,
        file_name="diabetes.parquet",
        suggest_suites=True,
        data={"target": "target", "task": "regression"},
        register={"model_name": "diabetes"},
        gate={"criteria": {}},
        tune={"enabled": True},
    )  # regression CV (RMSE)
    # The binary-only params as a user of a regression table leaves them: absent or null.
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    del params["data"]["positive_label"]
    params["evaluate"]["threshold"] = None
    (project.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    project.dvc("repro")
    metrics = json.loads((project.root / "metrics/test.json").read_text())["test"]
    assert set(metrics) == {"rmse", "mae", "r2"} and metrics["r2"] > 0.2
    # A positive target: the linear model is also scored on log1p(target).
    tuning = json.loads((project.root / "metrics/tuning.json").read_text())
    assert {"linear", "linear (log target)"} <= set(tuning["candidates"])
    assert (project.root / "plots/residuals.png").stat().st_size > 5000
    model, _ = _load_champion(project, "diabetes")
    pred = model.predict(frame.drop(columns="target").head(3))
    assert list(pred.columns) == ["prediction"]
    assert (project.root / "plots/residuals.csv").is_file()


def test_bad_params_fail_before_anything_runs(tmp_path, credit_small) -> None:
    project = make_project(tmp_path, credit_small)
    project.set_params(train={"n_estimators": "many"})
    result = project.flow("run", check=False)
    assert result.returncode != 0
    assert "train.n_estimators" in result.stderr and "Traceback" not in result.stderr
    assert not (project.root / "data/raw").exists()


def test_missing_target_stops_the_run_without_registering(tmp_path, credit_small) -> None:
    project = make_project(tmp_path, credit_small.drop(columns="Status"))
    result = project.flow("run", check=False)
    assert result.returncode != 0
    assert "target column 'Status'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project.root / "models/registration.json").exists()
    stage = project.dvc("repro", check=False)
    assert stage.returncode != 0 and "target column 'Status'" in stage.stderr


def test_frame_fixture_is_untouched(credit_small: pd.DataFrame) -> None:
    assert "Status" in credit_small.columns
