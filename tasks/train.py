"""train: fit LightGBM on the preprocessed train split, early-stopping on the valid split."""

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

from tasks.config import Settings, TrainSettings
from tasks.io import (ArtifactPaths, dump_joblib, load_joblib, read_json, read_parquet,
                      write_json)
from tasks.model import InferenceModel, encode_target
from tasks.features import balanced_weights, model_input_categoricals, oversample_indices
from tasks.preprocess import feature_frame
from tasks.threshold import tune_model_threshold
from tasks.tracking import RunContext, log_to_run

log = logging.getLogger(__name__)

OBJECTIVES = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
VALID_METRICS = {"binary": "binary_logloss", "multiclass": "multi_logloss", "regression": "l2"}


@dataclass(frozen=True)
class FitResult:
    model: InferenceModel
    best_iteration: int
    valid_metric: str
    valid_score: float


def make_estimator(task: str, train: TrainSettings, seed: int,
                   overrides: dict[str, Any] | None = None) -> lgb.LGBMModel:
    params: dict[str, Any] = {
        **train.params.model_dump(), **(overrides or {}),
        "n_estimators": train.n_estimators, "objective": OBJECTIVES[task],
        "random_state": seed, "n_jobs": train.n_jobs, "deterministic": True,
        "force_col_wise": True, "verbose": -1,
    }
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    return cls(**params)


def fit_model(train: pd.DataFrame, valid: pd.DataFrame, preprocessor: Pipeline,
              settings: Settings, overrides: dict[str, Any] | None = None) -> FitResult:
    """Fit LightGBM on transformed train rows; stop when the valid loss stops improving."""
    data = settings.data
    y_train, classes = encode_target(train[data.target], data.task,
                                     positive_label=data.positive_label)
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
        X_train, y_train, eval_set=[(X_valid, y_valid)], **fit_kwargs,
        categorical_feature=model_input_categoricals(preprocessor) or "auto",
        callbacks=[lgb.early_stopping(settings.train.early_stopping_rounds, verbose=False)],
    )
    metric = VALID_METRICS[data.task]
    best_score = float(estimator.best_score_["valid_0"][metric])
    pipeline = Pipeline([("preprocess", preprocessor), ("model", estimator)])
    model = InferenceModel(
        pipeline=pipeline, task=data.task, target=data.target,
        feature_columns=list(X_train_raw.columns),
        feature_dtypes={c: str(t) for c, t in X_train_raw.dtypes.items()},
        classes=classes,
    )
    best_iteration = int(estimator.best_iteration_ or estimator.n_estimators)
    return FitResult(model, best_iteration, metric, best_score)


@task(name="train")
def train_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    train, valid = read_parquet(paths.split("train")), read_parquet(paths.split("valid"))
    model_input = load_joblib(paths.features_model)  # preprocessing + features (raw rows in)
    tuned = read_tuned_params(paths.tuning_metrics) if settings.tune.enabled else None
    if tuned:
        log.info("train: tuned params from %s: %s", paths.tuning_metrics.name,
                 ", ".join(f"{k}={v:.4g}" for k, v in tuned.items()))
    result = fit_model(train, valid, model_input, settings, overrides=tuned)
    # Decision threshold (issue 5): chosen on valid, stored in the model before it is written.
    threshold = tune_model_threshold(result.model, valid, settings)
    dump_joblib(result.model, paths.model)
    summary = {"best_iteration": result.best_iteration,
               f"valid_{result.valid_metric}": round(result.valid_score, 6)}
    if threshold is not None:
        summary["threshold"] = round(threshold, 6)
    write_json(summary, paths.train_metrics)
    log.info("train: LightGBM stopped at %d trees; valid %s = %.4f", result.best_iteration,
             result.valid_metric, result.valid_score)
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
