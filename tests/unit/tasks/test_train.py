"""train: the selection fitted twice, an evaluation model on the train split and the shipped model
on every labelled row, with the same members, weights and threshold."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError
from inference.ensemble import WeightedEnsemble
from inference.model import encode_target
from tasks.preprocess import build_preprocessor, feature_frame, split_frame
from tasks.train import all_classes, refit_rounds
from tests.conftest import fit_on_train, lightgbm_selection, make_settings, write_stage_inputs


def _fit(df: pd.DataFrame, settings, selection=None):  # type: ignore[no-untyped-def]
    data = settings.data
    parts = split_frame(df, 0.2, 0.2, settings.base.seed)
    X = feature_frame(parts["train"], data.target)
    pre = build_preprocessor(X, settings.preprocess, data.sentinels).fit(X)
    return fit_on_train(parts["train"], pre, settings, selection), parts


def test_encode_target_binary_puts_positive_last() -> None:
    codes, classes = encode_target(
        pd.Series(["good", "bad", "good"]), "binary", positive_label="bad"
    )
    assert classes == ["good", "bad"] and codes.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match="not seen in training"):
        encode_target(pd.Series(["ugly"]), "binary", classes=classes)


def test_refit_rounds_scale_the_cv_rounds_by_k_over_k_minus_1() -> None:
    # A refit sees k/(k-1) times the rows of a CV fold's training part.
    assert refit_rounds(100, 5) == 125
    assert refit_rounds(100, 2) == 200
    assert refit_rounds(10, 3) == 15
    assert refit_rounds(1, 5) == 2  # rounded up
    assert refit_rounds(0, 5) == 1  # at least one round


def test_binary_model_learns_and_is_deterministic(credit: pd.DataFrame, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    sample = credit.sample(1500, random_state=1).reset_index(drop=True)
    first, parts = _fit(sample, settings, lightgbm_selection(rounds=40, folds=5))
    second, _ = _fit(sample, settings, lightgbm_selection(rounds=40, folds=5))
    p1 = first.predict_scores(parts["test"])
    assert np.array_equal(p1, second.predict_scores(parts["test"]))
    from sklearn.metrics import roc_auc_score

    y = (parts["test"]["Status"] == "bad").astype(int)
    assert roc_auc_score(y, p1) > 0.75
    # No early stopping at refit: the CV's round count, scaled for the larger training set.
    assert first.is_single_lightgbm
    assert first.estimator.booster_.num_trees() == refit_rounds(40, 5) == 50
    assert first.estimator.get_params()["num_leaves"] == 15  # the member's params
    assert first.classes == ["good", "bad"]
    assert first.metadata == {
        "role": "evaluation",
        "rows": len(parts["train"]),
        "winner": "trial 0 (lightgbm_defaults)",
    }
    assert first.threshold == 0.5  # the selection chose none


def test_predict_frame_on_raw_rows_with_gaps(credit: pd.DataFrame, tmp_path: Path) -> None:
    fit, parts = _fit(
        credit.sample(1000, random_state=2).reset_index(drop=True), make_settings(tmp_path)
    )
    rows = parts["test"].drop(columns="Status").head(4).copy()
    rows.loc[rows.index[0], "Home"] = "martian"
    rows.loc[rows.index[1], ["Income", "Assets"]] = np.nan
    out = fit.predict_frame(rows)
    assert list(out.columns) == ["probability", "label"]
    assert out["probability"].between(0, 1).all()
    assert set(out["label"]) <= {"good", "bad"}


def test_missing_input_column_is_named(credit: pd.DataFrame, tmp_path: Path) -> None:
    fit, parts = _fit(
        credit.sample(800, random_state=3).reset_index(drop=True), make_settings(tmp_path)
    )
    with pytest.raises(DataError, match="missing required column.*'Income'"):
        fit.predict_frame(parts["test"].drop(columns=["Income"]))


# ------------------------------------------------------------------------------------------------
# all_classes
# ------------------------------------------------------------------------------------------------
def test_classes_come_from_every_split_positive_last(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    frames = {
        "train": pd.DataFrame({"Status": ["bad", "good", "bad"]}),
        "valid": pd.DataFrame({"Status": ["good"]}),
        "test": pd.DataFrame({"Status": ["bad"]}),
    }
    assert all_classes(frames, settings) == ["good", "bad"]
    regression = make_settings(
        tmp_path, data={"task": "regression", "target": "y", "positive_label": None}
    )
    assert all_classes({"train": pd.DataFrame({"y": [1.0, 2.0]})}, regression) == []


def test_a_class_without_a_train_row_is_an_error_naming_it(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, data={"task": "multiclass", "target": "kind", "positive_label": None}
    )
    frames = {
        "train": pd.DataFrame({"kind": ["a", "b", "a"]}),
        "valid": pd.DataFrame({"kind": ["c"]}),  # only here: no model can learn it honestly
        "test": pd.DataFrame({"kind": ["b"]}),
    }
    with pytest.raises(DataError, match=r"class\(es\) \['c'\] of 'kind' have no row in the train"):
        all_classes(frames, settings)
    frames["train"] = pd.DataFrame({"kind": ["a", "b", "c"]})
    assert all_classes(frames, settings) == ["a", "b", "c"]


# ------------------------------------------------------------------------------------------------
# train_stage: the evaluation twin and the shipped model
# ------------------------------------------------------------------------------------------------
def _ensemble_selection() -> dict[str, Any]:
    selection = lightgbm_selection(rounds=20, folds=3)
    selection["members"][0]["weight"] = 0.5
    selection["members"] += [
        {"name": "linear", "kind": "linear", "params": {"C": 1.0}, "rounds": None, "weight": 0.3},
        {
            "name": "hist_gbm",
            "kind": "hist_gbm",
            "params": {"early_stopping": False, "max_iter": 12},
            "rounds": None,
            "weight": 0.2,
        },
    ]
    selection["threshold"] = 0.41
    selection["winner"] = "ensemble of 3 (lightgbm, linear, hist_gbm)"
    return selection


def _write_project(root: Path, parts: dict[str, pd.DataFrame], settings) -> None:  # type: ignore[no-untyped-def]
    from core.io import ArtifactPaths, write_json

    write_stage_inputs(root, parts, settings)
    write_json(_ensemble_selection(), ArtifactPaths(root).selection)


def test_train_ships_a_model_of_every_row_beside_a_twin_of_the_train_rows(
    credit: pd.DataFrame, tmp_path: Path
) -> None:
    from adapters.tracking import NO_RUN
    from core.io import ArtifactPaths, load_joblib, read_json
    from tasks.train import train_stage

    settings = make_settings(tmp_path)
    parts = split_frame(credit.sample(700, random_state=5).reset_index(drop=True), 0.2, 0.2, 42)
    _write_project(tmp_path, parts, settings)
    paths = ArtifactPaths(tmp_path)
    train_stage.fn(settings, NO_RUN)
    twin, shipped = load_joblib(paths.evaluation_model), load_joblib(paths.model)
    rows = {name: len(frame) for name, frame in parts.items()}
    assert twin.metadata["role"] == "evaluation" and twin.metadata["rows"] == rows["train"]
    assert shipped.metadata["role"] == "shipped" and shipped.metadata["rows"] == sum(rows.values())
    # The same recipe: members, weights, threshold and classes.
    want = {"trial 0 (lightgbm_defaults)": 0.5, "linear": 0.3, "hist_gbm": 0.2}
    for model in (twin, shipped):
        assert isinstance(model.estimator, WeightedEnsemble)
        assert model.estimator.weights() == want
        assert [m.kind for m in model.estimator.members] == ["lightgbm", "linear", "hist_gbm"]
        lgbm, _, hist = (m.estimator for m in model.estimator.members)
        assert lgbm.booster_.num_trees() == refit_rounds(20, 3) == 30
        assert hist.n_iter_ == 12  # the folds' iteration count, no rows held out to stop early
        assert model.threshold == 0.41 and model.classes == ["good", "bad"]
    assert read_json(paths.train_metrics) == {
        "winner": "ensemble of 3 (lightgbm, linear, hist_gbm)",
        "members": want,
        "evaluation_model_rows": rows["train"],
        "shipped_model_rows": sum(rows.values()),
        "threshold": 0.41,
    }

    # Which rows each learned from: flip every label outside the train split and train again.
    # The twin does not change (it never saw those rows); the shipped model does.
    scores = {
        "twin": twin.predict_scores(parts["test"]),
        "shipped": shipped.predict_scores(parts["test"]),
    }
    flip = {"good": "bad", "bad": "good"}
    flipped = {
        name: frame if name == "train" else frame.assign(Status=frame["Status"].map(flip))
        for name, frame in parts.items()
    }
    _write_project(tmp_path, flipped, settings)
    train_stage.fn(settings, NO_RUN)
    again = load_joblib(paths.evaluation_model).predict_scores(parts["test"])
    assert np.array_equal(again, scores["twin"])
    moved = load_joblib(paths.model).predict_scores(parts["test"])
    assert np.abs(moved - scores["shipped"]).max() > 0.05
