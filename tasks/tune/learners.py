"""The learners besides LightGBM that model selection scores in the same folds: a regularised
linear model, extremely randomised trees, a random forest and scikit-learn's histogram gradient
boosting. Each takes the model input (preprocessing + features) and keeps its out-of-fold
predictions, so ensemble selection can weigh it against the LightGBM trials.

Their sizes are fixed by rules on the data's shape (never by timing), so the same data and
params always give the same candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from inference.transformers import expm1_capped
from tasks.tune.cv import CVData, oof_shape
from tasks.tune.ensemble import higher_is_better, oof_score

# The linear model's regularisation grid (strength grows with alpha, shrinks with C); the first
# value is scikit-learn's default. Above LINEAR_GRID_ROWS rows only the default is tried.
LINEAR_C = (1.0, 0.1, 10.0, 0.01)
LINEAR_ALPHA = (1.0, 10.0, 0.1, 100.0)
LINEAR_GRID_ROWS = 50_000
# Forests: trees per forest shrink with the rows (work ~ trees x rows), within these bounds.
FOREST_TREES, FOREST_MIN_TREES, FOREST_WORK = 300, 32, 2_000_000
# Histogram gradient boosting is left out above this many rows (LightGBM covers the same ground,
# faster).
HIST_GBM_MAX_ROWS = 100_000
HIST_GBM_MAX_LEVELS = 255
# Regression learners that also run on log1p(target) when the target is non-negative (prices,
# wages, counts): multiplicative effects become additive, which a linear model needs most.
# The CV score is the RMSE of the back-transformed predictions, so the raw target competes
# with the log on the metric the gate uses.
LOG_TARGET_KINDS = ("linear", "hist_gbm")


@dataclass
class LearnerResult:
    """One learner's CV: its kind and settings, the CV score of its out-of-fold predictions, and
    what a refit needs (e.g. the iteration count early stopping chose in each fold)."""

    kind: str
    params: dict[str, Any]
    score: float
    oof: np.ndarray
    fold_iterations: list[int] = field(default_factory=list)


def forest_trees(rows: int) -> int:
    return int(min(FOREST_TREES, max(FOREST_MIN_TREES, FOREST_WORK // max(1, rows))))


def linear_grid(task: str, rows: int) -> list[dict[str, float]]:
    values = LINEAR_ALPHA if task == "regression" else LINEAR_C
    key = "alpha" if task == "regression" else "C"
    return [{key: v} for v in (values if rows <= LINEAR_GRID_ROWS else values[:1])]


def linear_design(numeric: Sequence[str], categorical: Sequence[str]) -> ColumnTransformer:
    """One-hot categorical codes and standardised numbers (median-imputed) for a linear model."""
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps = [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
        parts.append(("num", Pipeline(steps), list(numeric)))
    if categorical:
        steps = [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=-1.0, keep_empty_features=True),
            ),
            (
                "onehot",
                OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False),
            ),
        ]
        parts.append(("cat", Pipeline(steps), list(categorical)))
    return ColumnTransformer(parts)


def make_learner(kind: str, params: dict[str, Any], data: CVData, threads: int) -> Any:
    """An unfitted estimator of `kind` on the model input (a pipeline where it needs one);
    `log_target: true` fits it on log1p(target) and predicts expm1 of its output."""
    if not params.get("log_target"):
        return _estimator(kind, params, data, threads)
    from sklearn.compose import TransformedTargetRegressor

    plain = {k: v for k, v in params.items() if k != "log_target"}
    return TransformedTargetRegressor(
        regressor=_estimator(kind, plain, data, threads),
        func=np.log1p,
        inverse_func=expm1_capped,
        check_inverse=False,
    )


def _estimator(kind: str, params: dict[str, Any], data: CVData, threads: int) -> Any:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    classify = data.task != "regression"
    weight = "balanced" if data.imbalance == "class_weight" and classify else None
    if kind == "linear":
        numeric = [c for c in data.X.columns if c not in data.categorical]
        est = (
            LogisticRegression(C=params["C"], max_iter=3000, class_weight=weight)
            if classify
            else Ridge(alpha=params["alpha"])
        )
        return Pipeline([("design", linear_design(numeric, data.categorical)), ("model", est)])
    if kind == "hist_gbm":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        # scikit-learn's histogram boosting takes at most 255 levels per categorical column;
        # a column with more stays its ordinal codes.
        mask = [
            c in data.categorical and data.X[c].nunique() <= HIST_GBM_MAX_LEVELS
            for c in data.X.columns
        ]
        extra = {"class_weight": weight} if classify else {}
        return cls(
            learning_rate=0.06,
            max_iter=params.get("max_iter", 1000),
            max_leaf_nodes=31,
            early_stopping=params.get("early_stopping", True),
            validation_fraction=0.1,
            n_iter_no_change=20,
            categorical_features=mask if any(mask) else None,
            random_state=data.seed,
            **extra,
        )
    forests = {
        ("extra_trees", True): ExtraTreesClassifier,
        ("extra_trees", False): ExtraTreesRegressor,
        ("random_forest", True): RandomForestClassifier,
        ("random_forest", False): RandomForestRegressor,
    }
    extra = {"class_weight": weight} if classify else {}
    forest = forests[(kind, classify)](
        n_estimators=params["n_estimators"],
        max_features="sqrt" if classify else 1.0,
        n_jobs=threads,
        random_state=data.seed,
        **extra,
    )
    # Missing category codes (unseen or missing levels) become a code of their own.
    fill = SimpleImputer(strategy="constant", fill_value=-1.0, keep_empty_features=True)
    return Pipeline([("fill", fill.set_output(transform="pandas")), ("model", forest)])


def predictions(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    """P(positive) (binary), class probabilities (multiclass) or values (regression)."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=float)
    proba = np.asarray(model.predict_proba(X), dtype=float)
    return proba[:, 1] if task == "binary" else proba


def cross_validate_learner(
    kind: str, params: dict[str, Any], data: CVData, threads: int
) -> LearnerResult:
    """Fit on each fold's training part, predict its held-out part."""
    oof = np.zeros(oof_shape(data))
    iterations: list[int] = []
    for train_idx, held_out in data.folds:
        model = make_learner(kind, params, data, threads)
        model.fit(data.X.iloc[train_idx], data.y[train_idx])
        oof[held_out] = predictions(model, data.X.iloc[held_out], data.task)
        if kind == "hist_gbm":
            iterations.append(int(getattr(model, "regressor_", model).n_iter_))
    return LearnerResult(kind, dict(params), oof_score(data.task, data.y, oof), oof, iterations)


def learner_plan(
    kinds: Sequence[str], task: str, rows: int, log_target: bool = False
) -> list[tuple[str, list[dict]]]:
    """Which settings of each learner to score, from the data's shape alone: (kind, grid) per
    candidate, each entering the selection at its grid's best. With `log_target` (a
    non-negative regression target) LOG_TARGET_KINDS also enter fitted on log1p of it, as
    candidates of their own: the ensemble may blend the raw and the log model."""
    plan: list[tuple[str, list[dict]]] = []
    for kind in kinds:
        grid: list[dict] = []
        if kind == "linear":
            grid = list(linear_grid(task, rows))
        elif kind in ("extra_trees", "random_forest"):
            grid = [{"n_estimators": forest_trees(rows)}]
        elif kind == "hist_gbm" and rows <= HIST_GBM_MAX_ROWS:
            grid = [{}]
        if grid:
            plan.append((kind, grid))
        if grid and log_target and task == "regression" and kind in LOG_TARGET_KINDS:
            plan.append((kind, [{**g, "log_target": True} for g in grid]))
    return plan


def learner_name(kind: str, params: dict[str, Any]) -> str:
    """`linear`, or `linear (log target)` for a fit on log1p(target)."""
    return f"{kind} (log target)" if params.get("log_target") else kind


def best_of(results: Sequence[LearnerResult], task: str) -> LearnerResult:
    """The best-scoring settings of one learner (ties: the earlier, e.g. the default C)."""
    sign = 1.0 if higher_is_better(task) else -1.0
    best = max(range(len(results)), key=lambda i: (sign * round(results[i].score, 6), -i))
    return results[best]


def refit_params(result: LearnerResult) -> dict[str, Any]:
    """Settings for the refit on more rows: histogram boosting runs the iteration count its
    folds chose instead of holding rows out for early stopping."""
    if result.kind == "hist_gbm" and result.fold_iterations:
        return {
            **result.params,
            "early_stopping": False,
            "max_iter": math.ceil(float(np.mean(result.fold_iterations))),
        }
    return dict(result.params)
