"""The raw-data gate: structure checks, the committed credit suite, quarantine accounting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapters.gx import Outcome, load_suite, suggest_model_input_suite, suggest_raw_suite
from core.config import DataSettings, Settings
from core.errors import DataError
from core.io import ArtifactPaths
from tasks.validate import (
    REASON,
    SOURCE_ROW,
    check_target,
    drop_duplicate_rows,
    gate_of,
    require_suite,
    validate_model_input,
    validate_raw,
)
from tests.conftest import ROOT, make_settings

BINARY = DataSettings()


@pytest.fixture(scope="module")
def raw_suite():  # type: ignore[no-untyped-def]
    return load_suite(ROOT / "expectations/raw.json")


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def _fails(df: pd.DataFrame, suite, settings: Settings, match: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=match) as info:
        validate_raw(df, suite, settings, "data/source/f.csv")
    message = str(info.value)
    assert message.startswith("data/source/f.csv")
    return message


def test_default_data_passes_and_accounts_for_every_row(credit, raw_suite, cfg) -> None:
    result = validate_raw(credit, raw_suite, cfg, "credit")
    r = result.report
    assert r["raw_rows"] == 4454 and r["quarantined_rows"] == 0 and r["duplicate_rows"] == 2
    assert r["raw_rows"] == r["kept_rows"] + r["quarantined_rows"] + r["duplicate_rows"]
    assert len(result.kept) == r["kept_rows"] and result.kept.index.is_unique
    assert r["target_levels"] == {"bad": 1253, "good": 3199}


def test_row_level_failures_are_quarantined_with_reasons(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.copy()
    df.loc[[0, 1, 2], "Age"] = 150  # out of range
    df.loc[[2, 3], "Home"] = "castle"  # unknown category (row 2 fails twice)
    df.loc[4, "Amount"] = -300  # negative amount
    df.loc[5, "Status"] = None  # no target: cannot be learnt from
    df = pd.concat([df, df.iloc[[10, 11]]], ignore_index=True)  # two exact duplicates
    result = validate_raw(df, raw_suite, cfg, "f.csv")
    q, r = result.quarantined, result.report
    assert sorted(q[SOURCE_ROW]) == [0, 1, 2, 3, 4, 5]
    reasons = dict(zip(q[SOURCE_ROW], q[REASON]))
    assert reasons[2] == (
        "expect_column_values_to_be_in_set(Home); expect_column_values_to_be_between(Age)"
    ) or set(reasons[2].split("; ")) == {
        "expect_column_values_to_be_in_set(Home)",
        "expect_column_values_to_be_between(Age)",
    }
    assert reasons[4] == "expect_column_values_to_be_between(Amount)"
    assert reasons[5] == "expect_column_values_to_not_be_null(Status)"
    assert (r["raw_rows"], r["quarantined_rows"], r["duplicate_rows"]) == (602, 6, 2)
    assert r["raw_rows"] == r["kept_rows"] + r["quarantined_rows"] + r["duplicate_rows"]
    assert not result.kept["Age"].eq(150).any() and result.kept["Status"].notna().all()
    assert {f["column"] for f in r["failed_expectations"]} == {"Age", "Home", "Amount", "Status"}
    pd.testing.assert_frame_equal(
        q.drop(columns=[SOURCE_ROW, REASON]), df.loc[q[SOURCE_ROW]].reset_index(drop=True)
    )


def test_over_the_quarantine_threshold_stops(credit_sample, raw_suite, tmp_path) -> None:
    settings = make_settings(tmp_path, validate={"max_quarantine_fraction": 0.05})
    df = credit_sample.copy()
    df.loc[:59, "Age"] = 150  # 10% of 600 rows
    msg = _fails(
        df,
        raw_suite,
        settings,
        r"60 of 600 rows \(10.0%\) fail row-level checks, more "
        r"than validate.max_quarantine_fraction \(5.0%\)",
    )
    assert "expect_column_values_to_be_between on column 'Age'" in msg and "150" in msg


def test_header_only(credit_sample, raw_suite, cfg) -> None:
    _fails(credit_sample.head(0), raw_suite, cfg, "header but no rows")


def test_missing_target_column(credit_sample, raw_suite, cfg) -> None:
    _fails(
        credit_sample.drop(columns="Status"),
        raw_suite,
        cfg,
        r"target column 'Status' \(data.target in params.yaml\) is not in the data",
    )


def test_params_pointing_at_a_target_that_does_not_exist(
    credit_sample, raw_suite, tmp_path
) -> None:
    settings = make_settings(tmp_path, data={"target": "Outcome"})
    msg = _fails(credit_sample, raw_suite, settings, "target column 'Outcome'")
    assert "'Status'" in msg  # lists the columns there are


def test_single_class_target(credit_sample, raw_suite, cfg) -> None:
    one = credit_sample[credit_sample["Status"] == "good"]
    msg = _fails(
        one,
        raw_suite,
        cfg,
        "expect_column_unique_value_count_to_be_between on column 'Status': 1 distinct value",
    )
    assert "'good'" in msg and "two classes" in msg


def test_target_levels_not_in_the_suite(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.copy()
    df.loc[:2, "Status"] = "maybe"  # 3 rows only: still stops the run
    _fails(
        df,
        raw_suite,
        cfg,
        r"expect_column_values_to_be_in_set on column 'Status': 3 value\(s\) "
        r"not in the allowed set \['bad', 'good'\]; e.g. 'maybe'",
    )


def test_required_feature_column_missing(credit_sample, raw_suite, cfg) -> None:
    msg = _fails(credit_sample.drop(columns="Job"), raw_suite, cfg, "missing column.*'Job'")
    assert "could not be checked" not in msg and "not in the data" not in msg


def test_extra_column(credit_sample, raw_suite, cfg) -> None:
    _fails(credit_sample.assign(Colour="red"), raw_suite, cfg, "unexpected column.*'Colour'")


def test_numeric_column_holding_text(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.copy()
    df["Income"] = df["Income"].astype("str")
    df.loc[[3, 8], "Income"] = ["lots", "n/a?"]
    msg = _fails(
        df,
        raw_suite,
        cfg,
        "expect_column_values_to_be_in_type_list on column 'Income': "
        "expected int64/float64 values but the column holds str",
    )
    assert "values that are not numbers: 'lots', 'n/a?'" in msg
    assert "could not be checked" not in msg


def test_column_entirely_missing(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.assign(Debt=np.nan)
    _fails(df, raw_suite, cfg, r"column\(s\) 'Debt' are entirely missing \(all 600 values")


def test_too_many_values_missing(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.copy()
    df.loc[:299, "Income"] = np.nan  # 50% while the suite allows ~11%
    _fails(
        df,
        raw_suite,
        cfg,
        r"expect_column_values_to_not_be_null on column 'Income': \d+ of 600 "
        r"values are missing .*at most 11% may be missing",
    )


def test_infinite_values(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.copy()
    df.loc[7, "Assets"] = np.inf
    _fails(df, raw_suite, cfg, r"column 'Assets' holds 1 infinite value\(s\) \('inf'|inf\)")


def test_duplicated_column_names(credit_sample, raw_suite, cfg) -> None:
    df = credit_sample.copy()
    df.columns = [*df.columns[:-1], "Amount"]
    _fails(df, raw_suite, cfg, "duplicated column names: 'Amount'")


def test_too_few_rows_for_the_suite(credit_sample, raw_suite, cfg) -> None:
    _fails(
        credit_sample.head(50),
        raw_suite,
        cfg,
        "expect_table_row_count_to_be_between: the table has 50 rows; expected between 100",
    )


def test_duplicates_are_dropped_and_counted() -> None:
    df = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "x", "y"]})
    out, removed = drop_duplicate_rows(df)
    assert removed == 1 and len(out) == 2 and len(df) == 3


def test_gate_rules() -> None:
    def o(type_: str, column: str | None = "x", rows=(1,), **kw) -> Outcome:  # type: ignore[no-untyped-def]
        return Outcome(
            type_, column, {"column": column, **kw}, kw.pop("meta", {}), False, rows=list(rows)
        )

    assert gate_of(o("expect_column_values_to_be_between"), "y") == "row"
    assert gate_of(o("expect_column_values_to_be_in_set", "y"), "y") == "table"  # the target
    assert gate_of(o("expect_column_values_to_not_be_null", "y"), "y") == "row"
    assert gate_of(o("expect_column_values_to_not_be_null", mostly=0.9), "y") == "table"
    assert gate_of(o("expect_table_columns_to_match_set", None, rows=()), "y") == "table"
    assert gate_of(o("expect_column_values_to_be_unique"), "y") == "table"
    flagged = Outcome(
        "expect_column_values_to_be_between", "x", {}, {"gate": "table"}, False, rows=[1]
    )
    assert gate_of(flagged, "y") == "table"


# Task-specific target checks (run on the kept rows) ------------------------------------------
def test_positive_label_absent(credit_sample) -> None:
    with pytest.raises(DataError, match="positive label 'yes'"):
        check_target(credit_sample, DataSettings(positive_label="yes"), 20, "f.csv")


def test_binary_with_three_levels(credit_sample) -> None:
    df = credit_sample.copy()
    df.loc[:5, "Status"] = "maybe"
    with pytest.raises(DataError, match="3 levels.*multiclass"):
        check_target(df, BINARY, 20, "f.csv")


def test_regression_target_must_be_numeric() -> None:
    df = pd.DataFrame({"x": range(30), "y": ["1.5"] * 29 + ["lots"]})
    with pytest.raises(DataError, match="non-numeric values"):
        check_target(df, DataSettings(target="y", task="regression"), 20, "f.csv")


def test_too_few_rows(credit_sample) -> None:
    with pytest.raises(DataError, match="only 10 rows"):
        check_target(credit_sample.head(10), BINARY, 20, "f.csv")


# Suites: suggested, loaded, required -------------------------------------------------------------
def test_suggested_suite_passes_its_own_data_and_catches_new_levels(tmp_path) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "id": np.arange(200),
            "size": rng.uniform(1, 5, 200),
            "colour": rng.choice(["red", "blue"], 200),
            "label": rng.choice(["a", "b", "c"], 200),
        }
    )
    df.loc[:3, "size"] = np.nan
    suite = suggest_raw_suite(df, "label", "multiclass", 20, id_columns=("id",))
    types = {e.expectation_type for e in suite.expectations}
    assert "expect_column_values_to_be_unique" in types
    settings = make_settings(
        tmp_path, data={"target": "label", "task": "multiclass", "positive_label": None}
    )
    assert validate_raw(df, suite, settings, "t.csv").report["quarantined_rows"] == 0
    bad = df.copy()
    bad.loc[10, "colour"] = "green"
    result = validate_raw(bad, suite, settings, "t.csv")
    assert result.quarantined[REASON].tolist() == ["expect_column_values_to_be_in_set(colour)"]


def test_suite_with_unknown_expectation_is_refused(tmp_path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "name": "s",
                "expectations": [
                    {"type": "expect_column_values_to_be_wonderful", "kwargs": {"column": "x"}}
                ],
            }
        )
    )
    with pytest.raises(DataError, match="could not be loaded.*wonderful"):
        load_suite(path)


def test_missing_suite_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(DataError, match="suggest-expectations"):
        require_suite(ArtifactPaths(tmp_path), "expectations/raw.json", "raw_suite")


def test_model_input_suite(credit_sample) -> None:
    from core.config import PreprocessSettings
    from tasks.preprocess import build_preprocessor, imputed_outputs

    X = credit_sample.drop(columns="Status")
    pre = build_preprocessor(X, PreprocessSettings(), {}).fit(X)
    out = pre.transform(X)
    suite = suggest_model_input_suite(out, imputed_outputs(pre))
    committed = load_suite(ROOT / "expectations/model_input.json")
    assert validate_model_input(out, committed, "m.json").success
    assert validate_model_input(out, suite, "m.json").success
    holes = out.copy()
    holes.loc[:4, "Income"] = np.nan  # imputation "forgot" a column
    with pytest.raises(DataError, match="not_be_null on column 'Income': 5 of 600"):
        validate_model_input(holes, committed, "m.json")
    infinite = out.copy()
    infinite.loc[0, "Price"] = np.inf
    with pytest.raises(DataError, match="between on column 'Price'.*inf"):
        validate_model_input(infinite, committed, "m.json")
    with pytest.raises(DataError, match="missing column.*'Age'"):
        validate_model_input(out.drop(columns="Age"), committed, "m.json")


def _sampling_suite():  # type: ignore[no-untyped-def]
    import great_expectations.expectations as gxe

    from adapters.gx import build_suite

    return build_suite(
        "raw",
        [
            gxe.ExpectTableColumnsToMatchSet(column_set=["y", "x", "c"]),
            gxe.ExpectTableRowCountToBeBetween(min_value=10),
            gxe.ExpectColumnValuesToBeInTypeList(column="x", type_list=["int64", "float64"]),
            gxe.ExpectColumnValuesToNotBeNull(column="x", mostly=0.85),
            gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0, max_value=10),
            gxe.ExpectColumnValuesToBeInSet(column="c", value_set=["a", "b"]),
            gxe.ExpectColumnValuesToNotBeNull(column="y"),
        ],
    )


def _sampling_frame(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "y": rng.choice(["bad", "good"], n),
            "x": rng.integers(0, 10, n) * 1.0,
            "c": pd.Series(rng.choice(["a", "b"], n), dtype="str"),
        }
    )


def test_sampled_validation_splits_the_suite_by_what_a_sample_can_decide() -> None:
    from adapters.gx import suite_to_dict
    from tasks.validate import sample_safe, split_suite

    exact, sampled = split_suite(_sampling_suite())

    def names(s):
        return [(e["type"], e["kwargs"].get("column")) for e in suite_to_dict(s)["expectations"]]

    assert names(sampled) == [
        ("expect_table_columns_to_match_set", None),
        ("expect_column_values_to_be_in_type_list", "x"),
        ("expect_column_values_to_not_be_null", "x"),
    ]
    assert ("expect_table_row_count_to_be_between", None) in names(exact)
    assert len(names(exact)) + len(names(sampled)) == 7
    assert not sample_safe(
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"mostly": 0.9},
            "meta": {"gate": "row"},
        }
    )


def test_sampled_validation_quarantines_every_failing_row_exactly(tmp_path: Path) -> None:
    df = _sampling_frame()
    bad_x = [5, 700, 1500, 2999]  # spread: most are outside any sample
    df.loc[bad_x, "x"] = 50.0
    df.loc[[6, 2000], "c"] = "z"
    settings = make_settings(
        tmp_path,
        data={"target": "y", "positive_label": "bad"},
        validate={"sample_rows": 1000, "max_quarantine_fraction": 0.05},
    )
    result = validate_raw(df, _sampling_suite(), settings, "f.parquet")
    r = result.report
    assert r["sampled_checks_rows"] == 1000
    assert sorted(result.quarantined[SOURCE_ROW]) == sorted([*bad_x, 6, 2000])
    assert r["raw_rows"] == r["kept_rows"] + r["quarantined_rows"] + r["duplicate_rows"]
    full = validate_raw(
        df,
        _sampling_suite(),
        make_settings(tmp_path, data={"target": "y", "positive_label": "bad"}),
        "f.parquet",
    )
    pd.testing.assert_frame_equal(full.quarantined, result.quarantined)
    assert full.report["sampled_checks_rows"] == 3000


def test_a_sampled_failure_is_confirmed_on_every_row(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, data={"target": "y", "positive_label": "bad"}, validate={"sample_rows": 1000}
    )
    df = _sampling_frame()
    sampled = df.sample(1000, random_state=settings.base.seed).index
    df.loc[sampled[:300], "x"] = np.nan  # 30% of the sample, 10% of all rows
    result = validate_raw(df, _sampling_suite(), settings, "f.parquet")  # passes (mostly 0.85)
    assert result.report["quarantined_rows"] == 0
    df.loc[df.index.difference(sampled)[:300], "x"] = np.nan  # now 20% of all rows
    msg = _fails(df, _sampling_suite(), settings, "expect_column_values_to_not_be_null")
    assert "600 of 3000 values are missing (20.0%)" in msg


def test_column_checks_run_a_few_columns_at_a_time_with_the_same_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a large table the every-row checks run per group of columns (narrow frames for GX);
    outcomes and the quarantine are those of one run over the whole frame."""
    import tasks.validate as v
    from tasks.validate import run_raw_suite

    df = _sampling_frame()
    df.loc[[5, 700, 2999], "x"] = 50.0
    df.loc[[6, 2000], "c"] = "z"
    suite = _sampling_suite()
    monkeypatch.setattr(v, "COLUMNS_PER_RUN", 1)
    split, _ = run_raw_suite(df, suite, sample_rows=1000, seed=0)
    whole, _ = run_raw_suite(df, suite, sample_rows=10_000, seed=0)
    key = lambda o: (o.type, str(sorted(o.kwargs.items())), o.success, tuple(sorted(o.rows)))  # noqa: E731
    assert sorted(map(key, split.outcomes)) == sorted(map(key, whole.outcomes))
    assert split.success == whole.success
    parts = v.exact_parts(v.split_suite(suite)[0], list(df.columns), True)
    assert [cols for _, cols in parts].count(None) == 1 and len(parts) >= 3
