import numpy as np
import pandas as pd

from core.config import PreprocessSettings
from inference.transformers import SentinelMapper
from tasks.preprocess import (
    assign_splits,
    build_preprocessor,
    column_roles,
    feature_frame,
    row_keys,
    split_frame,
)


def test_split_is_disjoint_seeded_and_near_its_sizes(credit: pd.DataFrame) -> None:
    parts = split_frame(credit, 0.2, 0.2, seed=42)
    again = split_frame(credit, 0.2, 0.2, seed=42)
    assert sum(len(p) for p in parts.values()) == len(credit)
    for name, share in (("train", 0.6), ("valid", 0.2), ("test", 0.2)):
        assert abs(len(parts[name]) / len(credit) - share) < 0.03
        pd.testing.assert_frame_equal(parts[name], again[name])
    overall = (credit["Status"] == "bad").mean()
    for part in parts.values():  # a hash split is not stratified, but close on 4,454 rows
        assert abs((part["Status"] == "bad").mean() - overall) < 0.03
    other = split_frame(credit, 0.2, 0.2, seed=7)
    assert not parts["test"].equals(other["test"])


def test_a_row_keeps_its_split_when_rows_are_appended(credit: pd.DataFrame) -> None:
    old, new = credit.iloc[:3000], credit.iloc[3000:]
    before = assign_splits(old, 0.2, 0.2, seed=42)
    after = assign_splits(pd.concat([new, old], ignore_index=True), 0.2, 0.2, seed=42)
    np.testing.assert_array_equal(after[len(new) :], before)  # same rows, same splits
    # column order, and int vs float storage of the same numbers, do not matter either
    floats = old.astype({"Age": "float64"})[old.columns[::-1]]
    np.testing.assert_array_equal(assign_splits(floats, 0.2, 0.2, seed=42), before)


def test_row_keys_separate_values_and_missing() -> None:
    df = pd.DataFrame({"a": [1.0, np.nan, 1.0, -0.0, 0.0], "b": ["x", "x", None, "y", "y"]})
    keys = row_keys(df, seed=0)
    assert len(set(keys.tolist())) == 4 and keys[3] == keys[4]  # -0.0 is 0.0


def test_sentinels_become_missing_without_mutating_input() -> None:
    df = pd.DataFrame({"income": [10.0, 99999999.0, 20.0], "home": ["a", "?", "b"]})
    out = SentinelMapper({"income": [99999999], "home": ["?"]}).fit(df).transform(df)
    assert out["income"].isna().tolist() == [False, True, False]
    assert out["home"].isna().tolist() == [False, True, False]
    assert df["income"].iloc[1] == 99999999.0


def test_column_roles_by_dtype(credit: pd.DataFrame) -> None:
    numeric, categorical = column_roles(feature_frame(credit, "Status"))
    assert set(categorical) == {"Home", "Marital", "Records", "Job"}
    assert "Income" in numeric and "Status" not in numeric


def test_preprocessor_fits_on_train_and_handles_unseen_and_missing(credit: pd.DataFrame) -> None:
    X = feature_frame(credit, "Status")
    pre = build_preprocessor(X, PreprocessSettings(), {}).fit(X)
    rows = X.head(3).copy()
    rows.loc[0, "Home"] = "martian"
    rows.loc[1, "Income"] = np.nan
    out = pre.transform(rows)
    assert np.isnan(out.loc[0, "Home"])  # unseen level -> missing for LightGBM
    assert out.loc[1, "Income"] == X["Income"].median()
    assert out.loc[1, "missingindicator_Income"] == 1.0
    assert out.drop(columns=["Home", "Marital", "Job"]).notna().all().all()


def test_scaling_option(credit: pd.DataFrame) -> None:
    X = feature_frame(credit, "Status")
    out = build_preprocessor(X, PreprocessSettings(scaling="standard"), {}).fit_transform(X)
    assert abs(out["Age"].mean()) < 1e-9 and abs(out["Age"].std(ddof=0) - 1) < 1e-9
    out = build_preprocessor(X, PreprocessSettings(scaling="minmax"), {}).fit_transform(X)
    assert out["Age"].min() == 0 and out["Age"].max() == 1


def test_a_sentinel_on_a_misspelled_column_is_an_error_naming_it(credit: pd.DataFrame) -> None:
    import pytest

    from core.errors import DataError

    X = feature_frame(credit, "Status")
    with pytest.raises(DataError, match=r"'Incme' \(did you mean 'Income'\?\)"):
        build_preprocessor(X, PreprocessSettings(), {"Incme": [99999999]})
    with pytest.raises(DataError, match="'Status'"):  # the target is not a feature
        build_preprocessor(X, PreprocessSettings(), {"Status": ["unknown"]})
    build_preprocessor(X, PreprocessSettings(), {"Income": [99999999]})
