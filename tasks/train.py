"""train: fit LightGBM on the preprocessed train split, early-stopping on the valid split.

The binary decision threshold is chosen here too, on the valid split (never the test split), and
stored in the model, so evaluate, the registered model and batch scoring all use it as is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from prefect import task
from sklearn.pipeline import Pipeline

from adapters.tracking import RunContext, log_to_run
from core.config import Settings, ThresholdSettings, TrainSettings
from core.io import ArtifactPaths, dump_joblib, load_joblib, read_json, read_parquet, write_json
from inference.model import InferenceModel, encode_target
from tasks.features import balanced_weights, model_input_categoricals, oversample_indices
from tasks.preprocess import feature_frame

log = logging.getLogger(__name__)

OBJECTIVES = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
VALID_METRICS = {"binary": "binary_logloss", "multiclass": "multi_logloss", "regression": "l2"}


@dataclass(frozen=True)
class FitResult:
    model: InferenceModel
    best_iteration: int
    valid_metric: str
    valid_score: float


def make_estimator(
    task: str, train: TrainSettings, seed: int, overrides: dict[str, Any] | None = None
) -> lgb.LGBMModel:
    params: dict[str, Any] = {
        **train.params.model_dump(),
        **(overrides or {}),
        "n_estimators": train.n_estimators,
        "objective": OBJECTIVES[task],
        "random_state": seed,
        "n_jobs": train.n_jobs,
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    return cls(**params)


def fit_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    preprocessor: Pipeline,
    settings: Settings,
    overrides: dict[str, Any] | None = None,
) -> FitResult:
    """Fit LightGBM on transformed train rows; stop when the valid loss stops improving."""
    data = settings.data
    y_train, classes = encode_target(
        train[data.target], data.task, positive_label=data.positive_label
    )
    y_valid, _ = encode_target(valid[data.target], data.task, classes=classes or None)
    X_train_raw = feature_frame(train, data.target)
    X_train = preprocessor.transform(X_train_raw)
    X_valid = preprocessor.transform(feature_frame(valid, data.target))
    estimator = make_estimator(data.task, settings.train, settings.base.seed, overrides)
    fit_kwargs: dict[str, Any] = {}
    if data.task != "regression":  # class imbalance (features.imbalance), train split only
        if settings.features.imbalance == "class_weight":
            fit_kwargs["sample_weight"] = balanced_weights(y_train)
        elif settings.features.imbalance == "oversample":
            rows = oversample_indices(y_train, settings.base.seed)
            X_train, y_train = X_train.iloc[rows].reset_index(drop=True), y_train[rows]
    estimator.fit(
        X_train,
        y_train,
        eval_set=[(X_valid, y_valid)],
        **fit_kwargs,
        categorical_feature=model_input_categoricals(preprocessor) or "auto",
        callbacks=[lgb.early_stopping(settings.train.early_stopping_rounds, verbose=False)],
    )
    metric = VALID_METRICS[data.task]
    best_score = float(estimator.best_score_["valid_0"][metric])
    pipeline = Pipeline([("preprocess", preprocessor), ("model", estimator)])
    model = InferenceModel(
        pipeline=pipeline,
        task=data.task,
        target=data.target,
        feature_columns=list(X_train_raw.columns),
        feature_dtypes={c: str(t) for c, t in X_train_raw.dtypes.items()},
        classes=classes,
    )
    best_iteration = int(estimator.best_iteration_ or estimator.n_estimators)
    return FitResult(model, best_iteration, metric, best_score)


# ------------------------------------------------------------------------------------------------
# The decision threshold (pure: scores and labels in, one threshold out)
# ------------------------------------------------------------------------------------------------
def threshold_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct cut: (thresholds, true positives, false positives) for `p >= threshold`.

    The first cut is above every score (nothing positive); the threshold of a cut is the midpoint
    between the lowest score it calls positive and the next lower score, so unseen scores between
    two valid-split scores are labelled like their nearer side.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    distinct = np.r_[np.diff(p_sorted) != 0, True]  # last row of each tie group
    tp = np.cumsum(y_sorted)[distinct]
    fp = np.cumsum(1 - y_sorted)[distinct]
    cut_scores = p_sorted[distinct]  # descending
    lower = np.r_[cut_scores[1:], 0.0]  # next score below each cut
    thresholds = (cut_scores + lower) / 2
    top = np.nextafter(cut_scores[0], np.inf)  # above every score: none positive
    return np.r_[top, thresholds], np.r_[0, tp], np.r_[0, fp]


def choose_threshold(y: np.ndarray, p: np.ndarray, settings: ThresholdSettings) -> float:
    """F1-optimal threshold, or the one with minimum expected cost under the cost matrix."""
    y = np.asarray(y, dtype=int)
    if len(y) == 0 or y.min() == y.max():
        return 0.5  # one class only on valid: nothing to learn, keep the neutral default
    thresholds, tp, fp = threshold_curve(y, p)
    pos, n = int(y.sum()), len(y)
    fn, tn = pos - tp, (n - pos) - fp
    if settings.objective == "f1":
        with np.errstate(divide="ignore", invalid="ignore"):
            objective = -np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    else:
        objective = (
            settings.cost_fp * fp
            + settings.cost_fn * fn
            + settings.cost_tp * tp
            + settings.cost_tn * tn
        ) / n
    best = int(np.argmin(objective))  # ties: the first, i.e. the highest threshold
    return float(thresholds[best])


def expected_cost(
    y: np.ndarray, p: np.ndarray, threshold: float, settings: ThresholdSettings
) -> float:
    """Average cost per row of labelling `p >= threshold` positive (for reports and tests)."""
    y = np.asarray(y, dtype=int)
    pred = np.asarray(p) >= threshold
    tp = np.sum(pred & (y == 1))
    fp = np.sum(pred & (y == 0))
    fn = np.sum(~pred & (y == 1))
    tn = np.sum(~pred & (y == 0))
    return float(
        (
            settings.cost_fp * fp
            + settings.cost_fn * fn
            + settings.cost_tp * tp
            + settings.cost_tn * tn
        )
        / len(y)
    )


def tune_model_threshold(
    model: InferenceModel, valid: pd.DataFrame, settings: Settings, scores: np.ndarray | None = None
) -> float | None:
    """Set `model.threshold` from the valid split (binary only); returns it, or None.
    `scores`: the model's valid-split scores when the caller already has them."""
    if model.task != "binary":
        return None
    y, _ = encode_target(valid[settings.data.target], model.task, classes=model.classes)
    scores = model.predict_scores(valid) if scores is None else scores
    model.threshold = choose_threshold(y, scores, settings.evaluate.threshold)
    return model.threshold


@task(name="train")
def train_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    train, valid = read_parquet(paths.split("train")), read_parquet(paths.split("valid"))
    model_input = load_joblib(paths.features_model)  # preprocessing + features (raw rows in)
    tuned = read_tuned_params(paths.tuning_metrics) if settings.tune.enabled else None
    if tuned:
        log.info(
            "train: tuned params from %s: %s",
            paths.tuning_metrics.name,
            ", ".join(f"{k}={v:.4g}" for k, v in tuned.items()),
        )
    result = fit_model(train, valid, model_input, settings, overrides=tuned)
    # The decision threshold is chosen on valid and stored in the model before it is written.
    threshold = tune_model_threshold(result.model, valid, settings)
    dump_joblib(result.model, paths.model)
    summary = {
        "best_iteration": result.best_iteration,
        f"valid_{result.valid_metric}": round(result.valid_score, 6),
    }
    if threshold is not None:
        summary["threshold"] = round(threshold, 6)
    write_json(summary, paths.train_metrics)
    log.info(
        "train: LightGBM stopped at %d trees; valid %s = %.4f",
        result.best_iteration,
        result.valid_metric,
        result.valid_score,
    )
    log_to_run(ctx, metrics=summary)
    return paths.model


def read_tuned_params(path: Path) -> dict[str, Any] | None:
    """The best LightGBM params the tune stage wrote (None when it did not tune)."""
    if not path.is_file():
        return None
    best = read_json(path).get("best_params")
    return dict(best) if best else None


def n_trees(model: InferenceModel) -> int:
    return int(np.asarray(model.pipeline.named_steps["model"].booster_.num_trees()))
