"""Batch scoring pieces: the scoring suite, table- vs row-level checks, moving files aside."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adapters.gx import load_suite, suite_to_dict
from core.errors import DataError
from ops.score import check_batch, incoming_files, move_aside, scoring_suite
from tests.conftest import ROOT, make_settings


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

    from ops.score import predict_validated

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
