from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError
from inference.model import encode_target
from tasks.preprocess import build_preprocessor, feature_frame, split_frame
from tasks.train import fit_model
from tests.conftest import make_settings


def _fit(df: pd.DataFrame, settings):  # type: ignore[no-untyped-def]
    data = settings.data
    parts = split_frame(df, 0.2, 0.2, settings.base.seed)
    X = feature_frame(parts["train"], data.target)
    pre = build_preprocessor(X, settings.preprocess, data.sentinels).fit(X)
    return fit_model(parts["train"], parts["valid"], pre, settings), parts


def test_encode_target_binary_puts_positive_last() -> None:
    codes, classes = encode_target(
        pd.Series(["good", "bad", "good"]), "binary", positive_label="bad"
    )
    assert classes == ["good", "bad"] and codes.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match="not seen in training"):
        encode_target(pd.Series(["ugly"]), "binary", classes=classes)


def test_binary_model_learns_and_is_deterministic(credit: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    sample = credit.sample(1500, random_state=1).reset_index(drop=True)
    first, parts = _fit(sample, settings)
    second, _ = _fit(sample, settings)
    p1 = first.model.predict_scores(parts["test"])
    assert np.array_equal(p1, second.model.predict_scores(parts["test"]))
    from sklearn.metrics import roc_auc_score

    y = (parts["test"]["Status"] == "bad").astype(int)
    assert roc_auc_score(y, p1) > 0.75
    assert 1 <= first.best_iteration < 200  # early stopping stopped before the cap
    assert first.model.classes == ["good", "bad"]


def test_predict_frame_on_raw_rows_with_gaps(credit: pd.DataFrame, tmp_path: Path) -> None:
    fit, parts = _fit(
        credit.sample(1000, random_state=2).reset_index(drop=True), make_settings(tmp_path)
    )
    rows = parts["test"].drop(columns="Status").head(4).copy()
    rows.loc[rows.index[0], "Home"] = "martian"
    rows.loc[rows.index[1], ["Income", "Assets"]] = np.nan
    out = fit.model.predict_frame(rows)
    assert list(out.columns) == ["probability", "label"]
    assert out["probability"].between(0, 1).all()
    assert set(out["label"]) <= {"good", "bad"}


def test_missing_input_column_is_named(credit: pd.DataFrame, tmp_path: Path) -> None:
    fit, parts = _fit(
        credit.sample(800, random_state=3).reset_index(drop=True), make_settings(tmp_path)
    )
    with pytest.raises(DataError, match="missing required column.*'Income'"):
        fit.model.predict_frame(parts["test"].drop(columns=["Income"]))
