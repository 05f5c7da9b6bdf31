"""Batch scoring on one trained project (trained once for the module, tuning and compression
off): scoring, quarantine and rejection; files still being written; two scorers at once; a
scorer killed mid-file; the Prefect state of a run that rejected a file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import Project, make_project

pytestmark = pytest.mark.integration

MODEL = "credit-scoring"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, credit: pd.DataFrame) -> Project:
    tmp = tmp_path_factory.mktemp("scoring")
    frame = credit.sample(900, random_state=11).reset_index(drop=True)
    project = make_project(tmp, frame, evaluate={"n_boot": 200})
    project.frame = frame  # type: ignore[attr-defined]
    project.batches = credit.drop(columns="Status")  # type: ignore[attr-defined]
    project.flow("run")
    return project


@pytest.fixture(autouse=True)
def fresh_folders(trained: Project) -> Iterator[None]:
    """Each test starts with empty incoming and prediction folders and settle_s 0."""
    import shutil

    for rel in ("data/incoming", "data/predictions"):
        shutil.rmtree(trained.root / rel, ignore_errors=True)
    (trained.root / "data/incoming").mkdir(parents=True)
    trained.set_params(scoring={"settle_s": 0})
    yield


def _incoming(project: Project) -> Path:
    return project.root / "data" / "incoming"


def _batch(project: Project, start: int, rows: int) -> pd.DataFrame:
    return project.batches.iloc[start : start + rows].reset_index(drop=True)  # type: ignore[attr-defined]


def _outputs(project: Project, stem: str, kind: str) -> list[Path]:
    return sorted((project.root / "data/predictions").glob(f"{stem}.*.{kind}.parquet"))


def _rows_out(project: Project, stem: str) -> int:
    """Rows of `stem` in predictions and quarantine together."""
    return sum(
        len(pd.read_parquet(p))
        for kind in ("predictions", "quarantine")
        for p in _outputs(project, stem, kind)
    )


def _settings(project: Project):  # type: ignore[no-untyped-def]
    from core.config import load_settings

    return load_settings(project.root / "params.yaml")


def _client(project: Project):  # type: ignore[no-untyped-def]
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    return mlflow.MlflowClient()


def _in_process_predictions(project: Project, rows: pd.DataFrame) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(project.tracking_uri)
    saved = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(rows)
    finally:
        sys.path[:] = saved


def _claimed_files(project: Project) -> list[Path]:
    """Data files in working folders of scorers."""
    claimed = (_incoming(project) / ".claimed").glob("*/*")
    return sorted(p for p in claimed if p.suffix in (".csv", ".parquet"))


# ------------------------------------------------------------------------------------------------
# scoring, quarantine, rejection
# ------------------------------------------------------------------------------------------------
def test_batch_scoring_scores_quarantines_rejects_and_never_rescores(trained: Project) -> None:
    from ops.score import score_incoming

    incoming = _incoming(trained)
    good = trained.frame.drop(columns="Status").head(12).copy()  # type: ignore[attr-defined]
    good.loc[3, "Age"] = -4  # row-level: out of range
    good.to_csv(incoming / "batch1.csv", index=False)
    good.drop(columns="Income").head(3).to_parquet(incoming / "broken.parquet", index=False)

    results = {r.source.name: r for r in score_incoming(_settings(trained))}
    assert results["batch1.csv"].status == "scored"
    assert results["batch1.csv"].scored_rows == 11 and results["batch1.csv"].quarantined_rows == 1
    assert results["batch1.csv"].rows == 12
    out = pd.read_parquet(results["batch1.csv"].output)
    version = str(_client(trained).get_model_version_by_alias(MODEL, "champion").version)
    assert set(out["model_version"]) == {version}
    assert out["scored_at"].str.endswith("+00:00").all()
    expected = _in_process_predictions(trained, good.drop(index=3))
    np.testing.assert_allclose(out["probability"].to_numpy(), expected["probability"].to_numpy())
    assert (out["Age"] >= 0).all()
    q = pd.read_parquet(_outputs(trained, "batch1", "quarantine")[0])
    assert q["_source_row"].tolist() == [3] and "Age" in q["_reason"].iloc[0]

    rejected = results["broken.parquet"]
    assert rejected.status == "rejected" and "Income" in rejected.reason
    assert rejected.rows == rejected.rejected_rows == 3 and rejected.scored_rows == 0
    assert "data/incoming/broken.parquet:" in rejected.reason  # the file as it was dropped
    reason = (incoming / "rejected/broken.parquet.reason.txt").read_text()
    assert "missing column(s) 'Income'" in reason and ".claimed" not in reason
    assert (incoming / "processed/batch1.csv").is_file()
    assert not list(incoming.glob("*.csv")) and not list(incoming.glob("*.parquet"))
    assert not _claimed_files(trained) and not list((incoming / ".claimed").iterdir())
    # Nothing waits any more: a second pass scores nothing and writes nothing.
    before = sorted((trained.root / "data/predictions").iterdir())
    assert score_incoming(_settings(trained)) == []
    assert sorted((trained.root / "data/predictions").iterdir()) == before


def test_a_done_marker_makes_a_file_complete_at_once(trained: Project) -> None:
    from ops.score import score_incoming

    incoming = _incoming(trained)
    trained.set_params(scoring={"settle_s": 3600})
    _batch(trained, 0, 20).to_csv(incoming / "marked.csv", index=False)
    (incoming / "marked.csv.done").touch()
    _batch(trained, 20, 20).to_csv(incoming / "unmarked.csv", index=False)

    results = {r.source.name: r for r in score_incoming(_settings(trained))}
    assert results["marked.csv"].status == "scored" and results["marked.csv"].scored_rows == 20
    assert results["unmarked.csv"].status == "waiting"
    assert results["unmarked.csv"].reason == "still changing"
    assert not (incoming / "marked.csv.done").exists()  # consumed with its file
    assert not (incoming / "processed/marked.csv.done").exists()
    assert (incoming / "unmarked.csv").is_file()
    assert not _outputs(trained, "unmarked", "predictions")


# ------------------------------------------------------------------------------------------------
# a file still being written
# ------------------------------------------------------------------------------------------------
WRITER = r"""
import sys
src, dest = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as fh:
    header, *rows = fh.readlines()
cut = len(rows[2000]) // 2
with open(dest, "w", encoding="utf-8") as out:
    out.write(header)
    out.writelines(rows[:2000])
    out.write(rows[2000][:cut])  # half of row 2,001
    out.flush()
    print("paused", flush=True)
    sys.stdin.readline()  # paused mid-row until the test lets it go on
    out.write(rows[2000][cut:])
    out.writelines(rows[2001:])
print("finished", flush=True)
"""


def test_a_file_still_being_written_waits_then_every_row_is_scored_once(
    trained: Project, tmp_path: Path
) -> None:
    """The writer stays paused mid-row for the whole first scoring run (a few seconds). That
    scorer has a long settle time, so however slowly it starts on a busy machine it looks while
    the file is still changing; after the writer finished, a short one, so the test waits
    little for the file to settle."""
    import time

    source = tmp_path / "slow.csv"
    _batch(trained, 0, 4000).to_csv(source, index=False)
    dest = _incoming(trained) / "slow.csv"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source), str(dest)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "paused"
        trained.set_params(scoring={"settle_s": 600})
        during = trained.flow("score")
        assert "waiting: data/incoming/slow.csv (still changing)" in during.stdout, during.stdout
        assert dest.is_file() and not _outputs(trained, "slow", "predictions")
        assert not (_incoming(trained) / "processed").exists()
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "finished"
        assert writer.wait(timeout=60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    assert dest.read_bytes() == source.read_bytes()

    trained.set_params(scoring={"settle_s": 1})
    while time.time() - dest.stat().st_mtime < 1.5:  # let it settle
        time.sleep(0.2)
    after = trained.flow("score")
    assert "scored   data/incoming/slow.csv:" in after.stdout, after.stdout
    assert len(_outputs(trained, "slow", "predictions")) == 1
    assert _rows_out(trained, "slow") == 4000
    scored = pd.read_parquet(_outputs(trained, "slow", "predictions")[0])
    expected = pd.read_csv(source)
    quarantined = [
        row
        for path in _outputs(trained, "slow", "quarantine")
        for row in pd.read_parquet(path)["_source_row"]
    ]
    expected = expected.drop(index=quarantined).reset_index(drop=True)
    assert scored["Price"].tolist() == expected["Price"].tolist()  # no row cut in two
    assert (_incoming(trained) / "processed/slow.csv").read_bytes() == source.read_bytes()
    again = trained.flow("score")
    assert "no files waiting" in again.stdout and len(_outputs(trained, "slow", "predictions")) == 1


# ------------------------------------------------------------------------------------------------
# two scorers at once
# ------------------------------------------------------------------------------------------------
def test_two_scorers_at_once_score_each_file_exactly_once(trained: Project) -> None:
    stems = ["b1", "b2", "b3"]
    for i, stem in enumerate(stems):
        _batch(trained, i * 1000, 1000).to_csv(_incoming(trained) / f"{stem}.csv", index=False)
    cmd = [sys.executable, "-m", "flows", "score"]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=trained.root,
            env=trained.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, stdout + stderr
        assert "FileNotFoundError" not in stdout + stderr and "Traceback" not in stderr, stderr
    scored_lines = [
        m.group(1) for stdout, _ in outs for m in re.finditer(r"^scored +(\S+):", stdout, re.M)
    ]
    assert sorted(scored_lines) == [f"data/incoming/{s}.csv" for s in stems]
    for stem in stems:
        assert len(_outputs(trained, stem, "predictions")) == 1, stem
        assert _rows_out(trained, stem) == 1000, stem
        assert (_incoming(trained) / "processed" / f"{stem}.csv").is_file()
    assert len(list((trained.root / "data/predictions").glob("*.predictions.parquet"))) == 3
    assert sum(_rows_out(trained, s) for s in stems) == 3000
    assert not _claimed_files(trained)


# ------------------------------------------------------------------------------------------------
# a scorer killed mid-file
# ------------------------------------------------------------------------------------------------
# A scorer that kills itself (SIGKILL: no cleanup of any kind) at a given point of scoring a file:
# when it starts reading it (the file is claimed, nothing is written), or right after it wrote the
# predictions (before the input moves to processed/).
KILLED_SCORER = """
import os, signal, sys
import ops.score as score
point = sys.argv[1]
real = getattr(score, point)
def killed(*args, **kwargs):
    if point == "write_parquet":
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(score, point, killed)
from flows.__main__ import main
sys.exit(main(["score"]))
"""


@pytest.mark.parametrize("point", ["read_source", "write_parquet"])
def test_a_killed_scorers_file_is_recovered_and_scored_once(trained: Project, point: str) -> None:
    _batch(trained, 0, 1000).to_csv(_incoming(trained) / "k.csv", index=False)
    killed = trained.run(sys.executable, "-c", KILLED_SCORER, point, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert [p.name for p in _claimed_files(trained)] == ["k.csv"]  # claimed, not lost
    assert not (_incoming(trained) / "k.csv").exists()
    written = _outputs(trained, "k", "predictions")
    assert len(written) == (1 if point == "write_parquet" else 0)

    nxt = trained.flow("score")
    log = nxt.stdout + nxt.stderr
    assert "no longer runs" in log, log
    assert len(_outputs(trained, "k", "predictions")) == 1 and _rows_out(trained, "k") == 1000
    if point == "write_parquet":  # its predictions were complete: kept, not scored again
        assert _outputs(trained, "k", "predictions") == written
    assert (_incoming(trained) / "processed/k.csv").is_file()
    assert not _claimed_files(trained) and not list((_incoming(trained) / ".claimed").iterdir())


# ------------------------------------------------------------------------------------------------
# the Prefect state of a scoring run
# ------------------------------------------------------------------------------------------------
def _scoring_runs(project: Project) -> dict[str, str]:
    """flow run id -> state type, for every run of the scoring flow on the shared server."""
    api = project.env["PREFECT_API_URL"]
    req = urllib.request.Request(
        f"{api}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        runs = json.loads(r.read())
    req = urllib.request.Request(
        f"{api}/flows/filter",
        data=json.dumps({"flows": {"name": {"any_": ["scoring"]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        flow_ids = {f["id"] for f in json.loads(r.read())}
    return {r["id"]: r["state"]["type"] for r in runs if r["flow_id"] in flow_ids}


def _new_run_state(project: Project, before: dict[str, str]) -> tuple[str, str]:
    api = project.env["PREFECT_API_URL"]
    (run_id,) = set(_scoring_runs(project)) - set(before)
    with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=30) as r:
        state = json.loads(r.read())["state"]
    return state["type"], state.get("message") or ""


def test_a_run_that_rejects_a_file_fails_in_prefect_and_one_that_waits_does_not(
    trained: Project,
) -> None:
    incoming = _incoming(trained)
    _batch(trained, 0, 10).to_csv(incoming / "fine.csv", index=False)
    _batch(trained, 10, 3).drop(columns="Income").to_parquet(incoming / "broken.parquet")
    before = _scoring_runs(trained)
    proc = trained.flow("score", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    state, message = _new_run_state(trained, before)
    assert state == "FAILED" and "broken.parquet" in message, (state, message)
    assert "scored   data/incoming/fine.csv: 10 of 10 rows" in proc.stdout, proc.stdout
    assert re.search(
        r"^rejected data/incoming/broken\.parquet \(3 rows\) -> "
        r"data/incoming/rejected/broken\.parquet:\n  .*missing column\(s\) 'Income'",
        proc.stdout,
        re.M | re.S,
    ), proc.stdout
    assert "error: scoring flow failed" not in proc.stderr

    trained.set_params(scoring={"settle_s": 600})
    _batch(trained, 20, 5).to_csv(incoming / "later.csv", index=False)
    before = _scoring_runs(trained)
    proc = trained.flow("score")
    assert "waiting: data/incoming/later.csv (still changing)" in proc.stdout, proc.stdout
    assert _new_run_state(trained, before)[0] == "COMPLETED"
    assert os.path.exists(incoming / "later.csv")
