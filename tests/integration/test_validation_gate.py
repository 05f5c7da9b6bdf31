"""The validate gate on real files: each bad input gets a clear error and changes nothing.

The stage functions run in-process on small files (fast); one test drives the real flow twice to
show the exit code, the Failed flow run, the untouched registry and the Data Docs in MLflow.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapters.tracking import NO_RUN
from core.errors import DataError
from core.io import ArtifactPaths
from tasks.ingest import ingest_stage
from tasks.validate import REASON, validate_stage
from tests.conftest import ROOT, make_settings
from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration

SUITES = {
    "raw_suite": str(ROOT / "expectations/raw.json"),
    "model_input_suite": str(ROOT / "expectations/model_input.json"),
}


def _settings(root: Path, source: str = "data/source/data.csv", **sections: dict):  # type: ignore[no-untyped-def]
    sections = {k: dict(v) for k, v in sections.items()}
    sections["data"] = {"source": source, **sections.get("data", {})}
    sections["validate"] = {**SUITES, **sections.get("validate", {})}
    return make_settings(root, **sections)


def _run(settings) -> None:  # type: ignore[no-untyped-def]
    ingest_stage.fn(settings, NO_RUN)
    validate_stage.fn(settings, NO_RUN)


def _snapshot(root: Path) -> dict[str, str]:
    """Hash of every file under the validate stage's outputs (and anything left lying around)."""
    out = {}
    for folder in ("data/validated", "data/quarantine", "reports"):
        for p in sorted((root / folder).rglob("*")):
            if p.is_file() and "static" not in p.parts:
                out[str(p.relative_to(root))] = hashlib.md5(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def _validated_once(tmp_path_factory: pytest.TempPathFactory, credit: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("validated")
    (root / "data/source").mkdir(parents=True)
    credit.sample(600, random_state=0).reset_index(drop=True).to_csv(
        root / "data/source/data.csv", index=False
    )
    _run(_settings(root))
    return root


@pytest.fixture
def good_project(tmp_path: Path, _validated_once: Path) -> tuple[Path, dict[str, str]]:
    """A folder where a good file has passed validate (copied: one real run per module)."""
    root = tmp_path / "project"
    shutil.copytree(_validated_once, root)
    return root, _snapshot(root)


def test_good_file_passes_with_report_docs_and_empty_quarantine(good_project) -> None:
    root, _snap = good_project
    report = json.loads((root / "reports/validation.json").read_text())
    assert report["raw_rows"] == 600 and report["quarantined_rows"] == 0
    assert (root / "reports/data_docs/raw/index.html").stat().st_size > 1000
    assert pd.read_parquet(root / "data/quarantine/quarantine.parquet").empty
    assert not [p for p in (root / "reports/data_docs").iterdir() if p.name.startswith(".")]


def test_quarantine_accounting_on_a_file(good_project, credit_sample: pd.DataFrame) -> None:
    root, _ = good_project
    df = credit_sample.copy()
    df.loc[[1, 2], "Amount"] = -50  # negative amount
    df.loc[3, "Marital"] = "complicated"  # unknown category
    df.loc[4, "Status"] = np.nan  # no target
    df = pd.concat([df, df.iloc[[20, 21, 22]]], ignore_index=True)  # 3 exact duplicates
    df.to_csv(root / "data/source/data.csv", index=False)
    _run(_settings(root))
    report = json.loads((root / "reports/validation.json").read_text())
    q = pd.read_parquet(root / "data/quarantine/quarantine.parquet")
    kept = pd.read_parquet(root / "data/validated/validated.parquet")
    assert (
        report["raw_rows"],
        report["kept_rows"],
        report["quarantined_rows"],
        report["duplicate_rows"],
    ) == (603, 596, 4, 3)
    assert report["raw_rows"] == len(kept) + len(q) + report["duplicate_rows"]
    assert sorted(q[REASON]) == ["expect_column_values_to_be_between(Amount)"] * 2 + [
        "expect_column_values_to_be_in_set(Marital)",
        "expect_column_values_to_not_be_null(Status)",
    ]


def _csv(df: pd.DataFrame, d: Path, **kw) -> str:  # type: ignore[no-untyped-def]
    df.to_csv(d / "data.csv", index=False, **kw)
    return "data/source/data.csv"


def _text(text: str | bytes, name: str = "data.csv") -> Callable[[pd.DataFrame, Path], str]:
    def write(df: pd.DataFrame, d: Path) -> str:
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        return f"data/source/{name}"

    return write


def _mutate(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path], str]:
    return lambda df, d: _csv(fn(df.copy()), d)


def _set(df: pd.DataFrame, rows: object, col: str, value: object) -> pd.DataFrame:
    df.loc[rows, col] = value
    return df


def _folder(df: pd.DataFrame, d: Path) -> str:
    (d / "data.csv").unlink(missing_ok=True)
    (d / "data.csv").mkdir()
    return "data/source/data.csv"


BAD_INPUTS = {
    "empty file": (_text(""), {}, r"data\.csv: the file is empty"),
    "header only": (_text("Status,Seniority,Home\n"), {}, "the table has a header but no rows"),
    "file not found": (lambda df, d: "data/source/nope.csv", {}, r"nope\.csv: data file not found"),
    "unreadable file": (_folder, {}, r"data\.csv: is not a file"),
    "wrong delimiter": (
        lambda df, d: _csv(df, d, sep=";"),
        {},
        r"semicolon \(';'\) as its delimiter.*csv_separator: ';'",
    ),
    "non-UTF-8 bytes": (
        _text("Status,Home\nbad,caf\xe9\n".encode("latin-1")),
        {},
        "not valid UTF-8",
    ),
    "missing target column": (
        _mutate(lambda df: df.drop(columns="Status")),
        {},
        r"target column 'Status' \(data.target in params.yaml\) is not in",
    ),
    "single class": (
        _mutate(lambda df: df[df.Status == "good"]),
        {},
        "1 distinct value.*two classes",
    ),
    "target level not in suite": (
        _mutate(lambda df: _set(df, [0, 1], "Status", "unknown")),
        {},
        r"on column 'Status': 2 value\(s\) not in the allowed set.*'unknown'",
    ),
    "feature column missing": (
        _mutate(lambda df: df.drop(columns="Records")),
        {},
        r"expect_table_columns_to_match_set: missing column\(s\) 'Records'",
    ),
    "numeric column holding text": (
        _mutate(lambda df: _set(df.astype({"Age": object}), 5, "Age", "forty")),
        {},
        r"'Age': expected int64/float64 values but the column holds "
        r"str; values that are not numbers: 'forty'",
    ),
    "column entirely missing": (
        _mutate(lambda df: df.assign(Assets=np.nan)),
        {},
        r"'Assets' are entirely missing",
    ),
    "infinite values": (
        _text("Status,Seniority\nbad,inf\ngood,1\n"),
        {},
        r"column 'Seniority' holds 1 infinite value",
    ),
    "duplicated column names": (
        _text("Status,Age,Age\nbad,1,2\ngood,3,4\n"),
        {},
        "duplicated column names: Age",
    ),
    "corrupt parquet": (
        _text(b"PAR1\x00\x01garbage", "data.parquet"),
        {},
        r"data\.parquet: cannot be read as PARQUET",
    ),
    "over the quarantine threshold": (
        _mutate(lambda df: _set(df, range(40), "Age", 250)),
        {},
        r"(?s)40 of 600 rows \(6.7%\) fail row-level checks.*"
        r"between on column 'Age'.*e.g. 250$",
    ),
    "params target does not exist": (
        _csv,
        {"data": {"target": "Defaulted"}},
        r"target column 'Defaulted' \(data.target in params.yaml\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    case: str, good_project, credit_sample: pd.DataFrame
) -> None:
    root, before = good_project
    write, overrides, message = BAD_INPUTS[case]
    source = write(credit_sample, root / "data/source")
    with pytest.raises(DataError, match=message) as info:
        _run(_settings(root, source, **overrides))
    assert "Traceback" not in str(info.value)
    assert _snapshot(root) == before  # validated data, quarantine, report, docs: untouched
    assert not [p for p in (root / "reports/data_docs").iterdir() if p.name.startswith(".")]


def test_missing_suite_tells_the_user_what_to_run(good_project) -> None:
    root, _ = good_project
    with pytest.raises(DataError, match="python -m flows suggest-expectations"):
        _run(_settings(root, validate={"raw_suite": "expectations/none.json"}))


def test_flow_fails_on_bad_data_and_leaves_registry_and_artifacts_alone(
    tmp_path, credit_small
) -> None:
    import mlflow

    project = make_project(tmp_path, credit_small)
    first = project.flow("run")
    out = first.stdout + first.stderr
    assert "Calculating Metrics" not in out and "Traceback" not in out
    assert "900 raw rows = " in first.stdout and " + 0 quarantined" in first.stdout
    paths = ArtifactPaths(project.root)
    watched = [
        paths.validated,
        paths.split("train"),
        paths.preprocessor,
        paths.model,
        paths.test_metrics,
        paths.registration,
        project.root / "dvc.lock",
    ]
    before = {p: p.read_bytes() for p in watched}

    mlflow.set_tracking_uri(project.tracking_uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["credit-scoring"])
    docs = [a.path for a in client.list_artifacts(runs.iloc[0]["run_id"], "data_docs")]
    assert {"data_docs/raw", "data_docs/model_input"} <= set(docs)

    bad = credit_small.copy()
    bad.loc[:99, "Amount"] = -1  # 11% of rows fail a row-level check
    bad.to_csv(project.root / "data/source/data.csv", index=False)
    second = project.flow("run", check=False)
    assert second.returncode != 0
    assert "100 of 900 rows" in second.stderr and "on column 'Amount'" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    assert "Flow run" in second.stdout + second.stderr and "Failed" in second.stdout + second.stderr
    assert {p: p.read_bytes() for p in watched if p.name != "dvc.lock"} == {
        p: b for p, b in before.items() if p.name != "dvc.lock"
    }
    versions = client.search_model_versions("name='credit-scoring'")
    assert len(versions) == 1
    assert str(client.get_model_version_by_alias("credit-scoring", "champion").version) == "1"
    runs = mlflow.search_runs(experiment_names=["credit-scoring"], order_by=["start_time DESC"])
    assert runs.iloc[0]["status"] == "FAILED"


def test_a_failing_stage_under_dvc_repro_leaves_the_last_good_outputs(
    tmp_path, credit_small
) -> None:
    """DVC deletes a stage's outputs before running it; a stage that fails puts them back (from
    the DVC cache, and from git for the `cache: false` ones)."""
    from adapters.prefect import free_port

    project = make_project(tmp_path, credit_small)
    project.dvc("repro", "preprocess")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "outputs")
    paths = ArtifactPaths(project.root)
    watched = [
        paths.validated,
        paths.quarantine,
        paths.validation_report,
        paths.data_docs("raw") / "index.html",
        paths.split("train"),
        paths.split("test"),
        paths.preprocessor,
    ]
    before = {p: p.read_bytes() for p in watched}

    # An unreachable tracking store: preprocess stops in its preflight.
    closed = {**project.env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    offline = Project(project.root, closed).dvc("repro", "-s", "-f", "preprocess", check=False)
    assert offline.returncode != 0 and "unreachable" in offline.stderr
    assert "back in place: data/processed, models/preprocessor.joblib" in offline.stderr

    # Bad data: validate stops the run.
    bad = credit_small.copy()
    bad.loc[:99, "Amount"] = -1
    bad.to_csv(project.root / "data/source/data.csv", index=False)
    failed = project.dvc("repro", check=False)
    assert failed.returncode != 0 and "on column 'Amount'" in failed.stderr
    assert "back in place" in failed.stderr and "reports/validation.json" in failed.stderr
    assert {p: p.read_bytes() for p in watched} == before


def test_an_edited_source_outside_the_project_reruns_ingest(
    tmp_path, credit_small, monkeypatch
) -> None:
    from adapters.dvc import DvcState

    outside = tmp_path / "shared" / "credit.csv"
    outside.parent.mkdir()
    credit_small.to_csv(outside, index=False)
    project = make_project(tmp_path, data={"source": str(outside)})
    project.dvc("repro", "ingest")
    assert "up to date" in project.dvc("status", "ingest").stdout
    credit_small.head(700).to_csv(outside, index=False)  # edited in place
    assert "modified" in project.dvc("status", "ingest").stdout
    monkeypatch.chdir(project.root)  # as the flow runs
    state = DvcState(project.root)
    try:
        assert not state.is_current("ingest")  # what the Prefect flow asks before a stage
    finally:
        state.close()
    project.dvc("repro", "ingest")
    assert len(pd.read_parquet(ArtifactPaths(project.root).raw)) == 700
    assert "up to date" in project.dvc("status", "ingest").stdout
