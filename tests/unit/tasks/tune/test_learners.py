"""The learners scored beside LightGBM: a plan fixed by the data's shape, CV in the same folds,
and the settings a refit on more rows uses."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.tune.cv import CVData, make_folds
from tasks.tune.ensemble import oof_score
from tasks.tune.learners import (
    FOREST_MIN_TREES,
    FOREST_TREES,
    HIST_GBM_MAX_ROWS,
    LINEAR_GRID_ROWS,
    LearnerResult,
    best_of,
    cross_validate_learner,
    forest_trees,
    learner_name,
    learner_plan,
    refit_params,
)

KINDS = ("linear", "extra_trees", "random_forest", "hist_gbm")


def test_the_plan_depends_on_the_shape_only() -> None:
    plan = learner_plan(KINDS, "binary", 1000)
    assert plan == learner_plan(KINDS, "binary", 1000)  # no clock, no randomness
    assert plan == [
        ("linear", [{"C": 1.0}, {"C": 0.1}, {"C": 10.0}, {"C": 0.01}]),  # the default first
        ("extra_trees", [{"n_estimators": FOREST_TREES}]),
        ("random_forest", [{"n_estimators": FOREST_TREES}]),
        ("hist_gbm", [{}]),
    ]
    assert learner_plan(["linear"], "regression", 1000) == [
        ("linear", [{"alpha": 1.0}, {"alpha": 10.0}, {"alpha": 0.1}, {"alpha": 100.0}])
    ]
    # Large tables: the linear model's default only, smaller forests, no histogram boosting.
    big = dict(learner_plan(KINDS, "binary", HIST_GBM_MAX_ROWS + 1))
    assert big["linear"] == [{"C": 1.0}] and "hist_gbm" not in big
    assert big["extra_trees"][0]["n_estimators"] < FOREST_TREES
    assert dict(learner_plan(["linear"], "binary", LINEAR_GRID_ROWS))["linear"][3] == {"C": 0.01}
    assert learner_plan([], "binary", 1000) == []
    assert [k for k, _ in learner_plan(["hist_gbm", "linear"], "binary", 10)] == [
        "hist_gbm",
        "linear",
    ]  # the order asked for


def test_a_non_negative_regression_target_adds_log_target_settings() -> None:
    plan = learner_plan(KINDS, "regression", 1000, log_target=True)
    alphas = [{"alpha": a} for a in (1.0, 10.0, 0.1, 100.0)]
    # The log-target settings are candidates of their own, next to the raw ones.
    assert plan == [
        ("linear", alphas),
        ("linear", [{**a, "log_target": True} for a in alphas]),
        ("extra_trees", [{"n_estimators": FOREST_TREES}]),  # trees: raw target only
        ("random_forest", [{"n_estimators": FOREST_TREES}]),
        ("hist_gbm", [{}]),
        ("hist_gbm", [{"log_target": True}]),
    ]
    # Classification never, and a large table's single linear setting gets its log twin.
    assert learner_plan(KINDS, "binary", 1000, True) == learner_plan(KINDS, "binary", 1000)
    big = learner_plan(["linear"], "regression", LINEAR_GRID_ROWS + 1, True)
    assert big == [("linear", [{"alpha": 1.0}]), ("linear", [{"alpha": 1.0, "log_target": True}])]
    assert learner_name("linear", big[1][1][0]) == "linear (log target)"
    assert learner_name("linear", big[0][1][0]) == "linear"


def test_forests_shrink_with_the_rows_within_bounds() -> None:
    sizes = [forest_trees(n) for n in (10, 6_000, 20_000, 100_000, 10_000_000)]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == FOREST_TREES and sizes[-1] == FOREST_MIN_TREES


def test_refit_params_run_the_folds_iteration_count_without_early_stopping() -> None:
    oof = np.zeros(3)
    hist = LearnerResult("hist_gbm", {}, 0.8, oof, fold_iterations=[40, 51, 47])
    assert refit_params(hist) == {"early_stopping": False, "max_iter": math.ceil(138 / 3)}
    assert hist.params == {}  # not changed in place
    linear = LearnerResult("linear", {"C": 0.1}, 0.8, oof)
    out = refit_params(linear)
    assert out == {"C": 0.1} and out is not linear.params
    assert refit_params(LearnerResult("hist_gbm", {}, 0.8, oof)) == {}  # no folds recorded


def _cv_data(task: str = "binary", n: int = 240) -> CVData:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 3, n).astype(float)}
    )
    X.loc[::17, "a"] = np.nan  # the model input has gaps
    signal = X["a"].fillna(0) + 0.7 * (X["c"] == 2) + 0.4 * rng.normal(size=n)
    y = (signal > 0.5).astype(int).to_numpy() if task == "binary" else signal.to_numpy()
    return CVData(X, y, make_folds(y, task, 3, 0), ["c"], task, 2, "none", 0)


@pytest.mark.parametrize("kind", ["linear", "extra_trees", "hist_gbm"])
def test_each_learner_predicts_every_row_out_of_fold(kind: str) -> None:
    data = _cv_data()
    params = {
        "linear": {"C": 1.0},
        "extra_trees": {"n_estimators": 20},
        "hist_gbm": {"max_iter": 60},
    }[kind]
    result = cross_validate_learner(kind, params, data, 1)
    assert result.oof.shape == (len(data.y),) and ((result.oof >= 0) & (result.oof <= 1)).all()
    assert result.score == oof_score("binary", data.y, result.oof) and result.score > 0.75
    again = cross_validate_learner(kind, params, data, 1)
    assert np.array_equal(again.oof, result.oof)  # seeded
    # Histogram boosting keeps the iteration count early stopping chose in each fold.
    assert len(result.fold_iterations) == (3 if kind == "hist_gbm" else 0)


def test_regression_learners_predict_values() -> None:
    data = _cv_data("regression")
    result = cross_validate_learner("linear", {"alpha": 1.0}, data, 1)
    assert result.score == oof_score("regression", data.y, result.oof)
    assert result.score < float(np.std(data.y))  # better than predicting the mean


def test_best_of_breaks_ties_toward_the_earlier_setting() -> None:
    oof = np.zeros(2)
    results = [
        LearnerResult("linear", {"C": 1.0}, 0.8, oof),
        LearnerResult("linear", {"C": 0.1}, 0.8 + 1e-9, oof),  # float noise, not better
        LearnerResult("linear", {"C": 10.0}, 0.79, oof),
    ]
    assert best_of(results, "binary").params == {"C": 1.0}
    assert best_of(results, "regression").params == {"C": 10.0}  # lower RMSE is better


def test_hist_gbm_takes_a_categorical_column_of_more_than_255_levels_as_codes() -> None:
    import numpy as np
    import pandas as pd

    from tasks.tune.cv import CVData
    from tasks.tune.learners import make_learner

    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"region": rng.integers(0, 300, 2000).astype(float), "x": rng.normal(size=2000)}
    )
    y = (X["x"] + (X["region"] % 7 == 0) > 0.5).astype(int).to_numpy()
    data = CVData(X, y, [], ["region"], "binary", 2, "none", 0)
    model = make_learner("hist_gbm", {"max_iter": 20, "early_stopping": False}, data, 1).fit(X, y)
    assert model.predict_proba(X).shape == (2000, 2)


def test_a_log_target_learner_fits_a_multiplicative_target_and_survives_pickling() -> None:
    import pickle

    from inference.transformers import expm1_capped
    from tasks.tune.learners import make_learner

    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n).astype(float)})
    y = np.exp(1 + 0.8 * X["a"] + 0.3 * X["b"] + 0.1 * rng.normal(size=n)).to_numpy()
    data = CVData(X, y, make_folds(y, "regression", 3, 0), ["b"], "regression", 0, "none", 0)
    raw = cross_validate_learner("linear", {"alpha": 1.0}, data, 1)
    logged = cross_validate_learner("linear", {"alpha": 1.0, "log_target": True}, data, 1)
    assert logged.score < 0.6 * raw.score  # RMSE of the back-transformed predictions
    assert logged.oof.min() >= 0  # the target's domain
    hist = cross_validate_learner("hist_gbm", {"max_iter": 50, "log_target": True}, data, 1)
    assert len(hist.fold_iterations) == 3  # read through the target transform
    model = make_learner("linear", {"alpha": 1.0, "log_target": True}, data, 1).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict(X), model.predict(X))
    # An extrapolating model returns a finite value, never infinity.
    assert np.isfinite(expm1_capped(np.array([1e6]))).all()
    assert expm1_capped(np.array([-0.5, 0.0, np.log1p(9.0)])) == pytest.approx([0.0, 0.0, 9.0])
