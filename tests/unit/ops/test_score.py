"""Batch scoring pieces: the scoring suite, table- vs row-level checks, moving files aside, when a
file is complete, claims, which working folders are orphaned and how their files are released."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from adapters.gx import load_suite, suite_to_dict
from core.errors import DataError
from ops.score import (
    Folders,
    Owner,
    ScoredFile,
    Seen,
    as_record,
    check_batch,
    claim,
    folder_owner,
    incoming_files,
    move_aside,
    observe,
    orphaned,
    plan_of,
    recover_orphans,
    recovery_action,
    rejection_message,
    scoring_suite,
    take_stock,
    waiting_reason,
    working_folder_name,
)
from tests.conftest import ROOT, make_settings

S = 1_000_000_000  # nanoseconds per second


@pytest.fixture(scope="module")
def suite():  # type: ignore[no-untyped-def]
    return scoring_suite(load_suite(ROOT / "expectations" / "raw.json"), "Status")


def test_scoring_suite_drops_target_row_count_and_missing_shares(suite) -> None:  # type: ignore[no-untyped-def]
    d = suite_to_dict(suite)
    assert not [e for e in d["expectations"] if e["kwargs"].get("column") == "Status"]
    types = {e["type"] for e in d["expectations"]}
    assert "expect_table_row_count_to_be_between" not in types
    colset = next(e for e in d["expectations"] if e["type"] == "expect_table_columns_to_match_set")
    assert (
        "Status" not in colset["kwargs"]["column_set"]
        and "Income" in colset["kwargs"]["column_set"]
    )
    assert all(
        e["kwargs"].get("mostly") in (None, 1, 1.0)
        for e in d["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    )
    assert any(e["type"] == "expect_column_values_to_be_between" for e in d["expectations"])


def test_row_level_failures_are_quarantined(suite, credit_sample, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path)
    batch = credit_sample.drop(columns="Status").head(8).copy()
    batch.loc[2, "Age"] = 500
    batch.loc[5, "Home"] = "castle"
    kept, quarantined = check_batch(batch, suite, settings, "batch.csv")
    assert len(kept) == 6 and quarantined["_source_row"].tolist() == [2, 5]
    assert "Age" in quarantined["_reason"].iloc[0] and "Home" in quarantined["_reason"].iloc[1]
    # The target may be present (e.g. a labelled sample); it is not checked.
    with_target = credit_sample.head(8).copy()
    with_target.loc[0, "Status"] = "unknown"
    assert len(check_batch(with_target, suite, settings, "b.csv")[0]) == 8


def test_table_level_failures_name_file_and_column(suite, credit_sample, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path)
    bad = credit_sample.drop(columns=["Status", "Debt"]).head(5)
    with pytest.raises(DataError, match=r"new\.csv.*\n.*missing column\(s\) 'Debt'"):
        check_batch(bad, suite, settings, "new.csv")
    text = credit_sample.drop(columns="Status").head(5).astype({"Age": "str"})
    text.loc[0, "Age"] = "old"
    with pytest.raises(DataError, match="Age"):
        check_batch(text, suite, settings, "t.csv")
    with pytest.raises(DataError, match="no rows"):
        check_batch(credit_sample.drop(columns="Status").head(0), suite, settings, "e.csv")


def test_incoming_files_and_move_aside(tmp_path: Path) -> None:
    for name in ("b.csv", "a.parquet", ".hidden.csv", "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "old.csv").write_text("x")
    assert [p.name for p in incoming_files(tmp_path)] == ["a.parquet", "b.csv"]
    assert incoming_files(tmp_path / "missing") == []
    first = move_aside(tmp_path / "b.csv", tmp_path / "processed", "T1")
    (tmp_path / "b.csv").write_text("again")
    second = move_aside(tmp_path / "b.csv", tmp_path / "processed", "T2")
    assert first.name == "b.csv" and second.name == "b.T2.csv"
    assert second.read_text() == "again" and first.read_text() == "x"


def test_validated_rows_go_to_the_python_model_without_pyfunc_schema_checks() -> None:

    from adapters.registry import predict_validated

    rows = pd.DataFrame({"a": [1, 2]})

    class Inner:
        def predict(self, context, model_input):  # type: ignore[no-untyped-def]
            assert context is None
            return pd.DataFrame({"p": model_input["a"] * 10})

    class PythonFlavor:
        def unwrap_python_model(self):  # type: ignore[no-untyped-def]
            return Inner()

        def predict(self, _rows):  # type: ignore[no-untyped-def]
            raise AssertionError("pyfunc.predict must not be called for a Python model")

    class OtherFlavor:
        def unwrap_python_model(self):  # type: ignore[no-untyped-def]
            raise ValueError("not a PythonModel")

        def predict(self, model_input):  # type: ignore[no-untyped-def]
            return model_input["a"] * 2

    assert predict_validated(PythonFlavor(), rows)["p"].tolist() == [10, 20]
    assert predict_validated(OtherFlavor(), rows).iloc[:, 0].tolist() == [2, 4]


# ------------------------------------------------------------------------------------------------
# when a file is complete
# ------------------------------------------------------------------------------------------------
def test_a_file_is_complete_once_unchanged_for_the_settle_time_or_marked() -> None:
    now = 1_000 * S
    written = Seen(size=5_000, mtime_ns=now - 3 * S)  # last write 3 s ago
    assert waiting_reason(written, now, settle_s=10, marked=False) == "still changing"
    assert waiting_reason(written, now, settle_s=3, marked=False) is None
    assert waiting_reason(written, now, settle_s=0, marked=False) is None
    assert waiting_reason(written, now, settle_s=10, marked=True) is None  # the writer said so
    future = Seen(size=5_000, mtime_ns=now + 60 * S)  # a clock ahead of ours
    assert waiting_reason(future, now, settle_s=10, marked=False) == "still changing"
    # Created, nothing flushed yet: waits however old, unless marked.
    empty = Seen(size=0, mtime_ns=now - 3_600 * S)
    assert waiting_reason(empty, now, settle_s=0, marked=False) == "empty so far"
    assert waiting_reason(empty, now, settle_s=10, marked=True) is None


def test_take_stock_leaves_changing_files_waiting(tmp_path: Path) -> None:
    for name in ("old.csv", "new.csv", "marked.parquet"):
        (tmp_path / name).write_text("a,b\n1,2\n")
    (tmp_path / "marked.parquet.done").touch()
    hour_ago = (observe(tmp_path / "old.csv").mtime_ns - 3_600 * S) / S  # type: ignore[union-attr]
    os.utime(tmp_path / "old.csv", (hour_ago, hour_ago))
    ready, waiting = take_stock(tmp_path, settle_s=600, root=tmp_path)
    assert [p.name for p, _ in ready] == ["marked.parquet", "old.csv"]
    assert [(w.source.name, w.status, w.reason) for w in waiting] == [
        ("new.csv", "waiting", "still changing")
    ]
    assert ready[1][1] == observe(tmp_path / "old.csv")


# ------------------------------------------------------------------------------------------------
# claims and working folders
# ------------------------------------------------------------------------------------------------
def test_a_file_is_claimed_once_and_its_marker_goes_with_it(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "a.csv.done").touch()
    first = claim(tmp_path / "a.csv", tmp_path / ".claimed" / "h-1-aa")
    assert first == tmp_path / ".claimed/h-1-aa/a.csv" and first.read_text() == "x"
    assert (tmp_path / ".claimed/h-1-aa/a.csv.done").exists()
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "a.csv.done").exists()
    assert claim(tmp_path / "a.csv", tmp_path / ".claimed" / "h-2-bb") is None  # lost the race


def test_working_folder_names_record_their_owner() -> None:
    name = working_folder_name(Owner("build-host-7", 4242), "0f3a9c1e")
    assert name == "build-host-7-4242-0f3a9c1e"
    assert folder_owner(name) == Owner("build-host-7", 4242)
    for foreign in ("notes", "host-token", "host-12x-token", "-12-tok", "host-12-"):
        assert folder_owner(foreign) is None, foreign


def test_orphaned_folders_are_those_of_dead_processes_of_this_host() -> None:
    names = ["me-10-aa", "me-11-bb", "other-12-cc", "me-13-dd", "scratch"]
    assert orphaned(names, "me", alive=lambda pid: pid == 11) == ["me-10-aa", "me-13-dd"]
    assert orphaned(names, "me", alive=lambda pid: True) == []
    assert orphaned(names, "other", alive=lambda pid: False) == ["other-12-cc"]


def test_a_dead_scorers_file_is_finished_only_when_every_recorded_output_exists() -> None:
    planned = ["out/a.q.parquet", "out/a.p.parquet"]
    assert recovery_action(planned, planned) == "finish"
    assert recovery_action(planned, ["out/a.q.parquet"]) == "return"  # died between the two
    assert recovery_action(planned, []) == "return"
    assert recovery_action(None, []) == "return"  # died before recording its outputs


def _folders(tmp_path: Path) -> Folders:
    incoming = tmp_path / "incoming"
    return Folders(incoming, tmp_path / "out", incoming / "processed", incoming / "rejected")


def test_recovery_returns_or_finishes_the_files_of_dead_scorers_only(tmp_path: Path) -> None:
    folders = _folders(tmp_path)
    dead, alive, gone = (folders.claimed / n for n in ("me-10-aa", "me-11-bb", "me-12-cc"))
    for folder, name in ((dead, "half.csv"), (alive, "busy.csv"), (gone, "done.csv")):
        folder.mkdir(parents=True)
        (folder / name).write_text("a\n1\n")
    (dead / "half.csv.done").touch()
    partial = folders.output / "half.T.quarantine.parquet"
    folders.output.mkdir()
    partial.write_text("q")  # its predictions were never written
    plan_of(dead / "half.csv").write_text(
        f'{{"outputs": ["{partial}", "{folders.output / "half.T.predictions.parquet"}"]}}'
    )
    complete = folders.output / "done.T.predictions.parquet"
    complete.write_text("p")
    plan_of(gone / "done.csv").write_text(f'{{"outputs": ["{complete}"]}}')

    assert recover_orphans(folders, "me", lambda pid: pid == 11, tmp_path) == 2
    assert (folders.incoming / "half.csv").read_text() == "a\n1\n"
    assert (folders.incoming / "half.csv.done").exists()  # complete at once, as it was
    assert not partial.exists()  # scored again from scratch
    assert (folders.processed / "done.csv").is_file() and complete.read_text() == "p"
    assert (alive / "busy.csv").is_file()  # its scorer still runs
    assert sorted(p.name for p in folders.claimed.iterdir()) == ["me-11-bb"]
    assert recover_orphans(folders, "me", lambda pid: pid == 11, tmp_path) == 0


# ------------------------------------------------------------------------------------------------
# what a run reports
# ------------------------------------------------------------------------------------------------
def test_only_rejected_files_fail_a_run(tmp_path: Path) -> None:
    results = [
        ScoredFile(tmp_path / "in/a.csv", "scored", rows=5, scored_rows=4, quarantined_rows=1),
        ScoredFile(tmp_path / "in/b.csv", "waiting", reason="still changing"),
        ScoredFile(tmp_path / "in/c.csv", "skipped", reason="claimed by another scorer"),
    ]
    records = [as_record(r) for r in results]
    assert records[0]["rows"] == records[0]["scored_rows"] + records[0]["quarantined_rows"]
    assert rejection_message(records, tmp_path) is None
    bad = ScoredFile(tmp_path / "in/d.csv", "rejected", rows=3, rejected_rows=3, reason="no")
    assert rejection_message([*records, as_record(bad)], tmp_path) == "1 file(s) rejected: in/d.csv"
