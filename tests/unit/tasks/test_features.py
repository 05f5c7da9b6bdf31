from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError
from core.errors import DataError
from inference.transformers import FeatureBuilder, derive_column, missing_effect
from tasks.features import (
    balanced_weights,
    fit_model_input,
    model_input_categoricals,
    oversample_indices,
    transform_splits,
)
from tasks.preprocess import build_preprocessor, feature_frame, split_frame
from tests.conftest import make_settings


def _model_input(df: pd.DataFrame, settings):  # type: ignore[no-untyped-def]
    data = settings.data
    parts = split_frame(df, 0.2, 0.2, settings.base.seed)
    X = feature_frame(parts["train"], data.target)
    pre = build_preprocessor(X, settings.preprocess, data.sentinels).fit(X)
    return fit_model_input(pre, parts["train"], settings), parts


def test_derived_features_guard_division_and_take_raw_rows(
    credit_sample: pd.DataFrame, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        features={
            "derived": [
                {"name": "debt_to_income", "left": "Debt", "right": "Income", "op": "ratio"},
                {
                    "name": "price_minus_amount",
                    "left": "Price",
                    "right": "Amount",
                    "op": "difference",
                },
            ]
        },
    )
    model_input, parts = _model_input(credit_sample, settings)
    rows = parts["test"].drop(columns="Status").head(5).copy()
    rows.loc[rows.index[0], "Income"] = 0  # zero denominator -> missing, never inf
    out = model_input.transform(rows)  # raw rows in
    assert {"debt_to_income", "price_minus_amount"} <= set(out.columns)
    assert np.isnan(out["debt_to_income"].iloc[0])
    assert np.isfinite(out["debt_to_income"].iloc[1:]).all()
    assert np.allclose(out["price_minus_amount"], rows["Price"] - rows["Amount"])
    assert model_input_categoricals(model_input) == ["Home", "Marital", "Records", "Job"]


def test_derive_column_ops() -> None:
    a, b = pd.Series([6.0, 1.0]), pd.Series([3.0, 0.0])
    assert derive_column(a, b, "ratio").tolist()[0] == 2.0
    assert np.isnan(derive_column(a, b, "ratio").iloc[1])
    assert derive_column(a, b, "sum").tolist() == [9.0, 1.0]
    assert derive_column(a, b, "product").tolist() == [18.0, 0.0]


def test_derived_op_is_a_closed_list_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="features.derived.0.op"):
        make_settings(
            tmp_path,
            features={
                "derived": [
                    {"name": "x", "left": "Debt", "right": "Income", "op": "__import__('os')"}
                ]
            },
        )
    with pytest.raises(ConfigError, match="same column"):
        make_settings(
            tmp_path,
            features={"derived": [{"name": "x", "left": "Debt", "right": "Debt", "op": "ratio"}]},
        )


def test_derived_unknown_column_is_named(credit_sample: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        features={"derived": [{"name": "x", "left": "Debt", "right": "Salary", "op": "ratio"}]},
    )
    with pytest.raises(DataError, match="'Salary' is not a model input column"):
        _model_input(credit_sample, settings)


def test_fitted_on_train_only(credit_sample: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, features={"clip": "iqr"})
    model_input, parts = _model_input(credit_sample, settings)
    builder: FeatureBuilder = model_input.named_steps["features"]
    train_income = parts["train"]["Income"].astype(float)
    q1, q3 = np.nanpercentile(
        model_input.named_steps["preprocess"].transform(feature_frame(parts["train"], "Status"))[
            "Income"
        ],
        [25, 75],
    )
    assert builder.clip_bounds_["Income"] == pytest.approx(
        (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1))
    )
    # Refitting with the test rows appended would move the bounds: they come from train alone.
    both = pd.concat([parts["train"], parts["test"].assign(Income=train_income.max() * 50)])
    other = fit_model_input(model_input.named_steps["preprocess"], both, settings)
    assert other.named_steps["features"].clip_bounds_["Income"] != builder.clip_bounds_["Income"]
    out = transform_splits(model_input, parts, "Status")["test"]
    lo, hi = builder.clip_bounds_["Income"]
    assert out["Income"].between(lo, hi).all()


def test_zscore_clip_bounds() -> None:
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 100.0]})
    builder = FeatureBuilder(clip="zscore", clip_z=1.0).fit(X, np.array([0, 1, 0, 1, 0]))
    lo, hi = builder.clip_bounds_["a"]
    assert lo == pytest.approx(X["a"].mean() - X["a"].std(ddof=0))
    assert builder.transform(X)["a"].max() == pytest.approx(hi)


def test_missing_indicators_kept_only_when_informative() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    X = pd.DataFrame(
        {
            "x": rng.normal(size=400),
            "missingindicator_informative": (y == 1) & (rng.random(400) < 0.5),
            "missingindicator_noise": rng.random(400) < 0.3,
        }
    ).astype(float)
    builder = FeatureBuilder(missing_indicators="informative", missing_min_effect=0.2).fit(X, y)
    assert "missingindicator_informative" in builder.columns_
    assert "missingindicator_noise" not in builder.columns_
    assert "not informative" in builder.dropped_["missingindicator_noise"]
    assert FeatureBuilder(missing_indicators="none").fit(X, y).columns_ == ["x"]
    assert missing_effect(np.zeros(5), np.arange(5), True) == 0.0


def test_near_constant_and_importance_selection(
    credit_sample: pd.DataFrame, tmp_path: Path
) -> None:
    frame = credit_sample.assign(
        Flag=np.where(np.arange(len(credit_sample)) < 3, 1.0, 0.0),
        Noise=np.random.default_rng(1).normal(size=len(credit_sample)),
    )
    settings = make_settings(
        tmp_path, features={"near_constant_share": 0.99, "importance_threshold": 0.05}
    )
    model_input, _ = _model_input(frame, settings)
    dropped = model_input.named_steps["features"].dropped_
    assert "near-constant" in dropped["Flag"]
    assert any("importance below" in r for r in dropped.values())
    assert "Seniority" in model_input.named_steps["features"].columns_  # a strong feature stays


def test_class_imbalance_helpers() -> None:
    y = np.array([0] * 8 + [1] * 2)
    w = balanced_weights(y)
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum())
    idx = oversample_indices(y, seed=3)
    assert idx[:10].tolist() == list(range(10))  # originals first
    assert np.bincount(y[idx]).tolist() == [8, 8]
    assert set(idx[10:]) <= {8, 9}
    assert np.array_equal(idx, oversample_indices(y, seed=3))


def test_lean_input_path_replays_derived_features_and_clipping(
    credit_sample: pd.DataFrame, tmp_path: Path
) -> None:
    """The compact model's numpy path (tasks/compact.py) gives the fitted pipeline's model input,
    derived ratios (zero denominators), clipping and unseen levels included."""
    from inference.compact import compile_lean

    settings = make_settings(
        tmp_path,
        features={
            "clip": "iqr",
            "derived": [
                {"name": "debt_to_income", "left": "Debt", "right": "Income", "op": "ratio"},
                {"name": "price_times_amount", "left": "Price", "right": "Amount", "op": "product"},
            ],
        },
    )
    model_input, parts = _model_input(credit_sample, settings)
    rows = parts["test"].drop(columns="Status").copy()
    rows.loc[rows.index[0], "Income"] = 0
    rows.loc[rows.index[1], "Home"] = "martian"
    rows.loc[rows.index[2], ["Debt", "Job"]] = [np.nan, None]
    expected = model_input.transform(rows)
    assert model_input.named_steps["features"].clip_bounds_  # clipping is really on
    lean = compile_lean(model_input, list(expected.columns))
    got = lean.transform(rows)
    want = expected.to_numpy(dtype=float)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=1e-12, atol=1e-9)
    assert {"Debt", "Income", "Price", "Amount"} <= set(lean.columns)
