"""Evaluation outputs, the promotion gate across runs, and concurrent promotions on a real
MLflow tracking server (SQLite backend in a temp folder, started on 127.0.0.1 by the test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import Project, _free_port, make_project

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"
FAST = {"evaluate": {"n_boot": 200, "shap_sample": 100}}


def _client(uri: str):  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient()


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000, path


def test_two_trainings_gate_aliases_tags_card_and_plots(tmp_path, credit_small) -> None:
    project = make_project(
        tmp_path,
        credit_small,
        gate={"rule": "superior", "margin": 0.0, "criteria": {"min_roc_auc": 0.6}},
        **FAST,
    )
    first = project.flow("run")
    assert "version 1 @champion" in first.stdout and "no current champion" in first.stdout
    assert "roc_auc=" in first.stdout and "threshold:" in first.stdout

    # Evaluation outputs: metrics with intervals, threshold from valid, plots as real images.
    test = json.loads((project.root / "metrics/test.json").read_text())
    auc, ci = test["test"]["roc_auc"], test["ci"]["roc_auc"]
    assert ci["low"] < auc < ci["high"] and test["n_boot"] == 200
    assert (
        test["threshold"]
        == json.loads((project.root / "metrics/train.json").read_text())["threshold"]
    )
    for name in (
        "roc",
        "precision_recall",
        "calibration",
        "confusion",
        "importance",
        "shap_summary",
    ):
        _assert_png(project.root / "plots" / f"{name}.png")
    assert not (project.root / "plots/residuals.png").exists()

    # Second training with clearly weaker params: registered, but the champion stays.
    project.set_params(
        train={"n_estimators": 3, "params": {"num_leaves": 2, "learning_rate": 0.02}}
    )
    second = project.dvc("repro")
    assert "Traceback" not in second.stderr
    client = _client(project.tracking_uri)
    v2 = client.get_model_version("credit-scoring", "2")
    tags = v2.tags
    assert tags["gate.decision"] == "keep" and tags["gate.champion_version"] == "1"
    assert tags["gate.metric"] == "roc_auc" and tags["gate.rule"].startswith("superior")
    assert float(tags["gate.ci_low"]) <= float(tags["gate.diff"]) <= float(tags["gate.ci_high"])
    assert float(tags["gate.ci_low"]) < 0
    assert float(tags["gate.candidate_score"]) < float(tags["gate.champion_score"])
    aliases = client.get_registered_model("credit-scoring").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    assert v2.description.startswith("# Model card: credit-scoring v2")
    assert "does not clear" in v2.description and "class balance" in v2.description
    card_run = client.list_artifacts(v2.run_id, "evaluation")
    assert any(a.path.endswith("model_card.md") for a in card_run)
    assert any(a.path.endswith("shap_summary.png") for a in card_run)

    # The same comparison, on demand, for any two versions.
    compared = project.flow("compare", "2", "1")
    assert "roc_auc: v2" in compared.stdout and "does not clear" in compared.stdout
    assert tags["gate.ci_low"][:6] in compared.stdout.replace("+", "") or "CI" in compared.stdout

    # A candidate below the absolute floor is logged, not registered; fail_on_gate exits 1.
    project.set_params(
        gate={"criteria": {"min_roc_auc": 0.99}, "fail_on_gate": True},
        train={"params": {"num_leaves": 3}},
    )
    third = project.flow("run", check=False)
    assert third.returncode == 1
    assert "rejected by the gate" in third.stderr and "min_roc_auc" in third.stderr
    assert "Traceback" not in third.stderr
    versions = client.search_model_versions("name='credit-scoring'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_regression_plots_replace_classification_plots(tmp_path, credit_small) -> None:
    from sklearn.datasets import load_diabetes

    project = make_project(tmp_path, credit_small, **FAST)
    project.dvc("repro", "evaluate")
    assert (project.root / "plots/roc.png").is_file()
    frame = load_diabetes(as_frame=True).frame
    frame.to_csv(project.root / "data/source/data.csv", index=False)
    project.set_params(
        data={"target": "target", "task": "regression", "positive_label": None},
        gate={"criteria": {}},
    )  # replace the binary criteria
    project.set_params(gate={"criteria": {"max_rmse": 500.0}})
    project.flow("suggest-expectations", "--force")  # a new dataset gets its own suites
    project.dvc("repro", "evaluate")
    names = sorted(p.name for p in (project.root / "plots").iterdir())
    assert "roc.png" not in names and "roc.csv" not in names  # no stale binary plots
    for name in ("residuals", "importance", "shap_summary"):
        _assert_png(project.root / "plots" / f"{name}.png")
    test = json.loads((project.root / "metrics/test.json").read_text())
    assert set(test["ci"]) == {"rmse", "mae", "r2"} and "threshold" not in test


# ------------------------------------------------------------------ concurrent promotion


@pytest.fixture
def mlflow_server(tmp_path):  # type: ignore[no-untyped-def]
    """`mlflow server` on 127.0.0.1 with a SQLite store in tmp; stopped (whole group) at the end."""
    store = tmp_path / "server"
    store.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "GIT_PYTHON_REFRESH": "quiet"}
    log = (store / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--backend-store-uri",
            f"sqlite:///{store}/mlflow.db",
            "--artifacts-destination",
            str(store / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (store / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not become healthy"
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


# The register stage, with a pause between reading @champion and moving the alias, so that two
# runs really overlap inside the read-decide-write section (without the lock both would see
# "no champion" and both would set it).
SLOW_REGISTER = """
import sys, time
import tasks.register.stage as r
original = r.gate_against_champion
def slow(*args, **kwargs):
    decision = original(*args, **kwargs)
    time.sleep(3)
    return decision
r.gate_against_champion = slow
from flows.__main__ import main
sys.exit(main(["stage", "register"]))
"""


def test_concurrent_registrations_keep_versions_and_aliases_consistent(
    tmp_path, credit_small, mlflow_server
) -> None:
    import shutil

    first = make_project(tmp_path, credit_small, **FAST)
    first.dvc("repro", "evaluate")
    second_root = tmp_path / "project2"
    shutil.copytree(first.root, second_root)
    projects = [first, Project(second_root, {**first.env, "PYTHONPATH": str(second_root)})]
    procs = []
    for p in projects:
        env = {**p.env, "MLFLOW_TRACKING_URI": mlflow_server}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SLOW_REGISTER],
                cwd=p.root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [(proc.wait(timeout=300), *proc.communicate()) for proc in procs]
    for rc, _out, err in results:
        assert rc == 0, err[-3000:]
        assert "Traceback" not in err

    client = _client(mlflow_server)
    versions = {v.version: v for v in client.search_model_versions("name='credit-scoring'")}
    assert sorted(int(v) for v in versions) == [1, 2]
    tags = {v: client.get_model_version("credit-scoring", v).tags for v in versions}
    # Exactly one run found no champion; the other was compared against that winner.
    firsts = [v for v, t in tags.items() if t["gate.champion_version"] == "none"]
    assert len(firsts) == 1, tags
    winner = firsts[0]
    (other,) = [v for v in tags if v != winner]
    assert tags[other]["gate.champion_version"] == winner
    assert tags[other]["gate.decision"] in ("promote", "keep")
    aliases = {k: str(v) for k, v in client.get_registered_model("credit-scoring").aliases.items()}
    if tags[other]["gate.decision"] == "promote":
        assert aliases == {"champion": other}
    else:
        assert aliases == {"champion": winner, "challenger": other}
    # Each registration file matches the registry, and the lock is gone.
    for p in projects:
        reg = json.loads((p.root / "models/registration.json").read_text())
        assert tags[str(reg["version"])]["gate.decision"] == reg["gate"]["action"]
    names = [m.name for m in client.search_registered_models()]
    assert names == ["credit-scoring"]


# ------------------------------------------------------------------ like with like


def test_a_flipped_positive_label_is_never_scored_against_the_champion(
    tmp_path, credit_small, mlflow_server
) -> None:
    """P(good) against P(bad) would look like a huge improvement; the gate must not compare them,
    also when the champion predates the contract tags (read from its model)."""
    project = make_project(
        tmp_path, credit_small, gate={"rule": "non_inferior", "margin": 1.0}, **FAST
    )
    project.env["MLFLOW_TRACKING_URI"] = mlflow_server
    project.dvc("repro")
    client = _client(mlflow_server)
    v1 = client.get_model_version("credit-scoring", "1")
    assert (v1.tags["positive_label"], v1.tags["target"]) == ("bad", "Status")
    assert v1.tags["output_columns"] == "probability,label"

    project.set_params(data={"positive_label": "good"})
    flipped = project.dvc("repro")
    assert "Traceback" not in flipped.stderr
    v2 = client.get_model_version("credit-scoring", "2")
    assert v2.tags["gate.decision"] == "manual_review" and "gate.diff" not in v2.tags
    assert "positive_label 'bad' (champion) vs 'good' (candidate)" in v2.tags["gate.reason"]
    assert "incompatible" in v2.description and "positive_label" in v2.description
    aliases = {k: str(v) for k, v in client.get_registered_model("credit-scoring").aliases.items()}
    assert aliases == {"champion": "1", "challenger": "2"}
    registration = json.loads((project.root / "models/registration.json").read_text())
    assert registration["gate"]["action"] == "manual_review"

    # A champion registered before versions recorded their contract: read from its model.
    for key in ("target", "positive_label", "classes", "output_columns"):
        client.delete_model_version_tag("credit-scoring", "1", key)
    again = project.dvc("repro", "-f", "register")
    assert "Traceback" not in again.stderr
    v3 = client.get_model_version("credit-scoring", "3")
    assert v3.tags["gate.decision"] == "manual_review"
    assert "positive_label 'bad' (champion) vs 'good' (candidate)" in v3.tags["gate.reason"]
    assert str(client.get_model_version_by_alias("credit-scoring", "champion").version) == "1"


# ------------------------------------------------------------------ all-or-nothing registration

# The register stage killed (SIGKILL) inside the promotion lock, after its version was created
# and before its gate tags, description and alias were written.
KILL_IN_LOCK = """
import os, signal, sys
import tasks.register.stage as r
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
r.gate_against_champion = killed
from flows.__main__ import main
sys.exit(main(["stage", "register"]))
"""


def test_a_register_killed_inside_the_lock_is_cleaned_up_by_both_entry_points(
    tmp_path, credit_small, mlflow_server
) -> None:
    from adapters.registry import lock_name

    project = make_project(tmp_path, credit_small, gate={"lock_timeout_s": 60}, **FAST)
    project.env["MLFLOW_TRACKING_URI"] = mlflow_server
    project.dvc("repro", "evaluate")
    client = _client(mlflow_server)

    def kill_inside_the_lock(version: str) -> None:
        killed = project.run(sys.executable, "-c", KILL_IN_LOCK, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        client.get_registered_model(lock_name("credit-scoring"))  # the lock was left behind
        half = client.get_model_version("credit-scoring", version)
        assert "gate.decision" not in half.tags and not half.description

    def registry_state() -> tuple[list[str], list[str]]:
        versions = sorted(v.version for v in client.search_model_versions("name='credit-scoring'"))
        return versions, [m.name for m in client.search_registered_models()]

    # dvc repro: its register does not wait for the dead owner's lock (timeout 60 s, TTL 900 s)
    # and the half-registered v1 is gone, so the newest version is a complete one.
    kill_inside_the_lock("1")
    repro = project.dvc("repro")
    assert "Traceback" not in repro.stderr
    assert "removed" in repro.stderr and "half-registered" in repro.stderr
    assert registry_state() == (["2"], ["credit-scoring"])
    v2 = client.get_model_version("credit-scoring", "2")
    assert v2.tags["registration.complete"] == "true" and v2.tags["gate.decision"] == "promote"
    assert v2.description.startswith("# Model card: credit-scoring v2")
    assert str(client.get_model_version_by_alias("credit-scoring", "champion").version) == "2"

    # The Prefect flow's preflight does the same (here every stage is current and skipped).
    kill_inside_the_lock("3")
    flow = project.flow("run")
    assert "stages run:     none" in flow.stdout
    assert registry_state() == (["2"], ["credit-scoring"])
