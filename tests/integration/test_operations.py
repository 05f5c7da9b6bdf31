"""Day-to-day operations on one trained project (trained once for the module): REST serving,
the Prefect deployments on a real server (batch scoring on its schedule), the DVC remote,
reproduction of a registered version, the registry UI in a headless browser, and faults
(unusable tracking store, a run killed mid-stage). Batch scoring itself: test_scoring.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration

MODEL = "credit-scoring"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, credit: pd.DataFrame) -> Project:
    tmp = tmp_path_factory.mktemp("ops")
    frame = credit.sample(900, random_state=11).reset_index(drop=True)
    project = make_project(
        tmp,
        frame,
        remote={"url": str(tmp / "dvc-remote")},
        evaluate={"n_boot": 200},
        compress={"enabled": True},
        scoring={"settle_s": 0},  # the scheduled run scores the file written just before
    )
    project.frame = frame  # type: ignore[attr-defined]
    project.unused = credit.drop(index=frame.index, errors="ignore")  # type: ignore[attr-defined]
    project.flow("run")
    return project


def _client(project: Project):  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    return mlflow.MlflowClient()


def _champion_version(project: Project) -> str:
    return str(_client(project).get_model_version_by_alias(MODEL, "champion").version)


def _in_process_predictions(project: Project, rows: pd.DataFrame) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    saved = list(sys.path)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        direct = model.unwrap_python_model().predict(None, rows)
        out = model.predict(rows)  # raw rows as ingested, integer columns included
    finally:
        sys.path[:] = saved
    pd.testing.assert_frame_equal(out, direct)
    return out


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _settings(project: Project):  # type: ignore[no-untyped-def]
    from core.config import load_settings

    return load_settings(project.root / "params.yaml")


def _env_with_mlflow(project: Project) -> dict[str, str]:
    return {**project.env, "MLFLOW_TRACKING_URI": project.tracking_uri}


# ------------------------------------------------------------------------------------------------
# the registered model carries only the inference package
# ------------------------------------------------------------------------------------------------
BLOCK_TRAINING_CODE = """
import importlib.abc, sys
TRAINING = {"tasks", "flows", "core", "adapters", "ops", "prefect"}
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAINING:
            raise ModuleNotFoundError(f"{name} is not importable here", name=name)
sys.meta_path.insert(0, Blocked())
import json, mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
rows = pd.read_parquet(sys.argv[2])
for uri in sys.argv[3:]:
    out = mlflow.pyfunc.load_model(uri).predict(rows)  # raw rows, dtypes as ingested
    print(json.dumps({"uri": uri, "rows": len(out), "columns": list(out.columns),
                      "training_code_loaded": sorted(m for m in sys.modules
                                                     if m.split(".")[0] in TRAINING)}))
"""


def test_registered_models_load_and_predict_without_the_training_code(
    trained: Project, tmp_path: Path
) -> None:
    import mlflow

    client = _client(trained)
    uris = [f"models:/{MODEL}@champion", f"models:/{MODEL}-compact@champion"]
    for uri in uris:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / uri[8:])))
        assert sorted(p.name for p in (local / "code").iterdir()) == ["inference"], uri
    assert client.get_registered_model(f"{MODEL}-compact")
    rows = trained.frame.drop(columns=["Status"]).head(20)  # type: ignore[attr-defined]
    rows.to_parquet(tmp_path / "rows.parquet")
    env = {k: v for k, v in trained.env.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TRAINING_CODE,
            trained.tracking_uri,
            str(tmp_path / "rows.parquet"),
            *uris,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["uri"] for r in results] == uris
    for r in results:
        assert r["rows"] == 20 and "probability" in r["columns"] and "label" in r["columns"]
        assert r["training_code_loaded"] == []


# ------------------------------------------------------------------------------------------------
# REST serving
# ------------------------------------------------------------------------------------------------
def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _split(rows: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split"))}).encode()


def test_mlflow_models_serve_answers_like_the_in_process_model(
    trained: Project, tmp_path: Path
) -> None:
    from adapters.prefect import free_port, stop_process_group, wait_until_healthy

    port = free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    server_log = tmp_path / "serve.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            [
                mlflow_bin,
                "models",
                "serve",
                "-m",
                f"models:/{MODEL}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=trained.root,
            env=_env_with_mlflow(trained),
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{base}/ping", server, 120, what="mlflow models serve")
        rows = trained.frame.drop(columns="Status").iloc[20:27].copy()  # type: ignore[attr-defined]
        assert pd.api.types.is_integer_dtype(rows["Age"])
        rows.loc[rows.index[0], "Income"] = np.nan  # missing where training had missing values
        local = _in_process_predictions(trained, rows)

        def same_as_local(text: str) -> None:
            served = pd.DataFrame(json.loads(text)["predictions"])
            np.testing.assert_allclose(
                served["probability"].to_numpy(), local["probability"].to_numpy(), atol=1e-12
            )
            assert served["label"].tolist() == local["label"].tolist()

        status, text = _post(f"{base}/invocations", _split(rows))
        assert status == 200, text
        same_as_local(text)
        # MLflow's other standard input: CSV (integers, a missing value, text columns).
        status, text = _post(f"{base}/invocations", rows.to_csv(index=False).encode(), "text/csv")
        assert status == 200, text
        same_as_local(text)

        def assert_readable_400(status: int, text: str, *names: str) -> None:
            assert 400 <= status < 500, (status, text)
            assert "Traceback" not in text and 'File "' not in text and ".py" not in text, text
            assert str(trained.root) not in text and "site-packages" not in text, text
            for name in names:
                assert name in text, text

        wrong = rows.astype({"Age": object})
        wrong.loc[wrong.index[2], "Age"] = "thirty"
        assert_readable_400(*_post(f"{base}/invocations", _split(wrong)), "Age")
        # Age never had a missing value in training: the signature says so, and MLflow names it.
        holes = rows.astype({"Age": "float64"})
        holes.loc[holes.index[1], "Age"] = np.nan
        assert_readable_400(*_post(f"{base}/invocations", _split(holes)), "Age")
        status, text = _post(f"{base}/invocations", b'{"dataframe_split": {"columns": ["Age"]')
        assert_readable_400(status, text)
        assert "json" in text.lower() or "parse" in text.lower(), text
        assert_readable_400(
            *_post(f"{base}/invocations", _split(rows.drop(columns="Income"))), "Income"
        )
        # An unknown extra column is ignored (same predictions) and named in the server's log.
        status, text = _post(f"{base}/invocations", _split(rows.assign(Nickname="bob")))
        assert status == 200, text
        same_as_local(text)
    finally:
        stop_process_group(server)
    assert server.poll() is not None
    log_text = server_log.read_text(errors="replace")
    assert "extra inputs" in log_text and "Nickname" in log_text, log_text[-3000:]


# ------------------------------------------------------------------------------------------------
# Prefect deployments on a real server
# ------------------------------------------------------------------------------------------------
def _api(api: str, path: str, body: dict | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{api}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _flow_runs(api: str) -> list[dict]:
    return _api(api, "/flow_runs/filter", {})


def _deployments(api: str) -> dict[str, dict]:
    return {d["id"]: d for d in _api(api, "/deployments/filter", {})}


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One Prefect server for this module's deployment tests, UI on, on a free port (never the
    default 4200): the API URL and the server's PREFECT_HOME."""
    from adapters.prefect import free_port, start_server, stop_process_group

    home = tmp_path_factory.mktemp("prefect-home")
    server, api = start_server(home, port=free_port(), ui=True)
    yield api, home
    stop_process_group(server)


def _serve(project: Project, api: str, home: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows", "serve", *args],
        cwd=project.root,
        env={**project.env, "PREFECT_HOME": str(home), "PREFECT_API_URL": api},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop_serving(serve: subprocess.Popen[bytes]) -> None:
    from adapters.prefect import stop_process_group

    serve.send_signal(signal.SIGINT)  # cancels a run in flight, pauses the schedules, stops
    with contextlib.suppress(subprocess.TimeoutExpired):
        serve.wait(timeout=60)
    stop_process_group(serve)


def test_prefect_ui_on_another_port_calls_that_ports_api(prefect_ui: tuple[str, Path]) -> None:
    api, _ = prefect_ui
    base = api.removesuffix("/api")
    assert not base.endswith(":4200")
    with urllib.request.urlopen(f"{base}/ui-settings", timeout=10) as r:
        assert json.loads(r.read())["api_url"] == api
    with urllib.request.urlopen(f"{base}/", timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read().lower()


def test_served_deployments_run_on_schedule(trained: Project, prefect_ui: tuple[str, Path]) -> None:
    from flows.deploy import SCORING_DEPLOYMENT

    api, home = prefect_ui
    incoming = trained.root / "data" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    trained.frame.drop(columns="Status").iloc[40:45].to_csv(  # type: ignore[attr-defined]
        incoming / "scheduled.csv", index=False
    )
    serve = _serve(trained, api, home, "--interval", "10", "--only", "scoring")
    try:
        done: dict[str, dict] = {}
        deadline = time.monotonic() + 240
        while not done and time.monotonic() < deadline:
            time.sleep(2)
            assert serve.poll() is None, serve.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            deployments = _deployments(api)
            for run in _flow_runs(api):
                dep = deployments.get(run.get("deployment_id") or "", {})
                if dep.get("name") != SCORING_DEPLOYMENT:
                    continue
                state = run["state"]["type"] if run.get("state") else None
                assert state not in ("FAILED", "CRASHED"), run
                if state == "COMPLETED":
                    done[dep["name"]] = run
        assert set(done) == {SCORING_DEPLOYMENT}, done
        schedules = {d["name"]: d["schedules"] for d in _deployments(api).values()}
        assert schedules[SCORING_DEPLOYMENT][0]["schedule"]["interval"] == 10
        predictions = list(
            (trained.root / "data/predictions").glob("scheduled.*.predictions.parquet")
        )
        assert len(predictions) == 1 and len(pd.read_parquet(predictions[0])) == 5
        assert (trained.root / "data/incoming/processed/scheduled.csv").is_file()
    finally:
        _stop_serving(serve)
    assert serve.poll() is not None


@pytest.fixture(scope="module")
def served_training(
    trained: Project, prefect_ui: tuple[str, Path]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m flows serve --only training` against the module's server: the API URL, the
    serving process (a test may stop it) and, once registered, the deployment's id."""
    from flows.deploy import TRAINING_DEPLOYMENT

    api, home = prefect_ui
    serve = _serve(trained, api, home, "--only", "training")
    try:
        deadline = time.monotonic() + 120
        while not [d for d in _deployments(api).values() if d["name"] == TRAINING_DEPLOYMENT]:
            assert serve.poll() is None, serve.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the training deployment was never registered"
            time.sleep(1)
        yield api, serve
    finally:
        _stop_serving(serve)


def _trigger_training(api: str, parameters: dict[str, Any] | None = None) -> str:
    from flows.deploy import TRAINING_DEPLOYMENT

    (dep,) = [d for d in _deployments(api).values() if d["name"] == TRAINING_DEPLOYMENT]
    return _api(api, f"/deployments/{dep['id']}/create_flow_run", {"parameters": parameters or {}})[
        "id"
    ]


def _wait_for_state(api: str, run_id: str, states: set[str], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = _api(api, f"/flow_runs/{run_id}")
        if run.get("state") and run["state"]["type"] in states:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} never reached {states}: {run.get('state')}")


def _run_log(api: str, run_id: str) -> list[dict]:
    time.sleep(2)  # the run's process sends its last lines in batches
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    return _api(api, "/logs/filter", body)


def test_scheduled_training_run_logs_every_stage_like_make_run(
    trained: Project, served_training: tuple[str, subprocess.Popen[bytes]]
) -> None:
    api, _ = served_training
    (trained.root / "reports/drift.json").unlink()  # so that exactly one stage has work to do
    run_id = _trigger_training(api)
    run = _wait_for_state(api, run_id, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
    logs = _run_log(api, run_id)
    assert run["state"]["type"] == "COMPLETED", [entry["message"] for entry in logs]
    ours = [(e["name"], e["message"]) for e in logs if not e["name"].startswith("prefect")]
    skipped = [
        "ingest", "validate", "preprocess", "features", "tune", "train", "evaluate", "compress",
        "register",
    ]  # fmt: skip
    for stage in skipped:
        assert ("flows.training", f"{stage}: up to date (dvc.lock), skipped") in ours, ours
    assert any(name == "tasks.drift" and msg.startswith("drift: ") for name, msg in ours), ours
    assert ours[-1] == (
        "flows.training",
        f"training: stages run: drift; skipped: {', '.join(skipped)} (current in dvc.lock)",
    )
    assert (trained.root / "reports/drift.json").is_file()


def test_scheduled_training_run_fails_where_the_cli_exits_non_zero(
    trained: Project, served_training: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """The tracking store is down at run time: `python -m flows run` exits 1, the run is Failed
    and its log says why, without a traceback."""
    import yaml

    from adapters.prefect import free_port

    api, _ = served_training
    closed = f"http://127.0.0.1:{free_port()}"
    path = trained.root / "params.yaml"
    saved = path.read_text()
    params = yaml.safe_load(saved)
    params["register"]["tracking_uri"] = closed
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        cli = trained.flow("run", check=False)
        assert cli.returncode == 1 and closed in cli.stderr
        run_id = _trigger_training(api, {})
        run = _wait_for_state(api, run_id, {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
        assert run["state"]["type"] == "FAILED", run["state"]
        text = "\n".join(e["message"] for e in _run_log(api, run_id))
        assert closed in text and "unreachable" in text and "Traceback" not in text, text
    finally:
        path.write_text(saved)


def test_interrupting_the_serving_process_cancels_the_run_in_flight(
    trained: Project, served_training: tuple[str, subprocess.Popen[bytes]]
) -> None:
    api, serve = served_training
    run_id = _trigger_training(api, {"force": True})
    _wait_for_state(api, run_id, {"RUNNING"}, timeout_s=120)
    deadline = time.monotonic() + 120
    while not [e for e in _run_log(api, run_id) if e["name"].startswith("tasks.")]:
        assert time.monotonic() < deadline, "no stage started"  # inside a stage from here on
    serve.send_signal(signal.SIGINT)  # Ctrl-C
    assert serve.wait(timeout=90) == 0
    run = _api(api, f"/flow_runs/{run_id}")
    assert run["state"]["type"] == "CANCELLED", run["state"]
    paused = [d for d in _deployments(api).values() if d["id"] == run["deployment_id"]]
    assert paused[0]["paused"] is True


# ------------------------------------------------------------------------------------------------
# DVC remote and reproduction
# ------------------------------------------------------------------------------------------------
def test_reproduce_a_registered_version(trained: Project) -> None:
    version = _client(trained).get_model_version(MODEL, "1")
    assert not version.tags["git_commit"].endswith("-dirty")
    proc = trained.run(sys.executable, "-m", "flows", "reproduce", "--version", "1")
    assert "result: MATCH" in proc.stdout, proc.stdout + proc.stderr
    assert "test_roc_auc" in proc.stdout and "MISMATCH" not in proc.stdout
    assert "stages validate, preprocess, features, tune, train, evaluate" in proc.stdout
    worktrees = trained.run("git", "worktree", "list").stdout.strip().splitlines()
    assert len(worktrees) == 1  # the temporary worktree is gone


def test_dvc_push_then_pull_in_a_fresh_clone(trained: Project, tmp_path: Path) -> None:
    trained.run("git", "add", "-A")
    trained.run("git", "commit", "-qm", "outputs of the first run")
    assert "remote " in trained.flow("push").stdout
    clone = tmp_path / "clone"
    trained.run("git", "clone", "-q", str(trained.root), str(clone))
    assert not (clone / "models/model.joblib").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "flows", "pull"],
        cwd=clone,
        env={**trained.env, "PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for rel in (
        "data/raw/raw.parquet",
        "data/validated/validated.parquet",
        "data/processed/train.parquet",
        "data/processed/test.parquet",
        "models/model.joblib",
        "models/preprocessor.joblib",
    ):
        assert _md5(clone / rel) == _md5(trained.root / rel), rel
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status"],
        cwd=clone,
        env=trained.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "up to date" in status.stdout, status.stdout + status.stderr


# ------------------------------------------------------------------------------------------------
# registry UI in a real browser
# ------------------------------------------------------------------------------------------------
def test_data_docs_offline_and_the_mlflow_pages_render_in_chromium(
    trained: Project, tmp_path: Path
) -> None:
    """The Data Docs index of both validations (as files, no host resolvable), the experiment's
    training runs and the registry page, each checked for its expected text."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip(
            "/usr/bin/chromium not installed (Debian package `chromium`; .ci/run installs it)"
        )
    tool = Path(__file__).resolve().parents[2] / "tools" / "ui_screenshots.py"
    params = str(trained.root / "params.yaml")
    proc = trained.run(
        sys.executable, str(tool), "--params", params, "--out-dir", str(tmp_path), check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in (
        "data docs raw: a validation row: visible",
        "data docs model_input: a validation row: visible",
        "experiment: a pipeline run: visible",
        "registry: champion alias: visible",
    ):
        assert check in proc.stdout, proc.stdout
    for png in ("data_docs_raw", "data_docs_model_input", "experiment", "registry"):
        assert (tmp_path / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_dvc_plots_show_needs_no_cdn(trained: Project) -> None:
    trained.dvc("plots", "show", "--out", "dvc_plots")
    page = (trained.root / "dvc_plots" / "index.html").read_text()
    assert "<script" not in page and "cdn" not in page.lower()
    assert page.count("<img") >= 6, page[:2000]  # ROC, PR, calibration, confusion, importance, SHAP


# ------------------------------------------------------------------------------------------------
# faults
# ------------------------------------------------------------------------------------------------
def test_unusable_tracking_store_fails_fast_and_moves_no_alias(trained: Project) -> None:
    from adapters.prefect import free_port

    champion = _champion_version(trained)
    closed = f"http://127.0.0.1:{free_port()}"
    versions = len(_client(trained).search_model_versions(f"name='{MODEL}'"))

    env = {**trained.env, "MLFLOW_TRACKING_URI": closed}
    down = subprocess.run(
        [sys.executable, "-m", "flows", "run", "--force"],
        cwd=trained.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 1 and closed in down.stderr and "Traceback" not in down.stderr

    conn = sqlite3.connect(trained.root / "mlflow.db")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        locked = trained.run(
            sys.executable, "-m", "flows", "run", "--force", check=False, timeout=120
        )
    finally:
        conn.rollback()
        conn.close()
    assert locked.returncode == 1 and "mlflow.db" in locked.stderr and "locked" in locked.stderr
    assert _champion_version(trained) == champion
    assert len(_client(trained).search_model_versions(f"name='{MODEL}'")) == versions


def test_killed_repro_restarts_cleanly_and_retrains_on_new_labelled_data(trained: Project) -> None:
    """New labelled rows arrive; `dvc repro` is killed during `train`; the rerun skips the
    finished stages, finishes, appends the rows and reports their drift."""
    new = trained.unused.sample(120, random_state=5).reset_index(drop=True)  # type: ignore[attr-defined]
    new["Income"] = new["Income"] * 4  # a shifted population
    new.to_csv(trained.root / "data/labelled/batch-2026-11.csv", index=False)
    dvc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=trained.root,
        env=trained.env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    try:
        for line in dvc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith("Running stage 'train'"):
                time.sleep(1.5)  # inside the stage's process, before it finishes
                break
    finally:
        os.killpg(dvc.pid, signal.SIGKILL)
        dvc.wait(timeout=30)
    assert any("Running stage 'train'" in s for s in seen), "".join(seen)

    again = trained.dvc("repro")
    out = again.stdout
    for finished in ("ingest", "validate", "preprocess"):
        assert f"Stage '{finished}' didn't change, skipping" in out, out
    assert "Running stage 'train'" in out and "Running stage 'drift'" in out
    assert not [p for p in trained.root.rglob(".*.tmp") if ".dvc" not in p.parts]
    assert "up to date" in trained.dvc("status").stdout
    client = _client(trained)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        client.get_registered_model(f"{MODEL}.promotion-lock")
    raw = pd.read_parquet(trained.root / "data/raw/raw.parquet")
    assert len(raw) == len(trained.frame) + len(new)  # type: ignore[attr-defined]
    drift = json.loads((trained.root / "reports/drift.json").read_text())
    assert drift["new_rows"] == len(new) and "Income" in drift["flagged"]
    assert drift["features"]["Home"]["kind"] == "categorical"
    assert "score" in drift
