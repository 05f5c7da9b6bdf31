"""features: model-input features on top of preprocessing, fitted on the train split only.

The fitted preprocessor (from `preprocess`) and a `FeatureBuilder` (tasks/transformers.py) form
one scikit-learn pipeline, `models/features.joblib`: raw rows in, model input out. `train` puts
it in front of LightGBM inside the registered model, so raw rows still go in at inference. The
stage ends with the model-input gate (the GX suite `validate.model_input_suite`) on the
transformed splits, before anything is written.

Class imbalance is a training-time matter (nothing of it is needed at inference): the helpers
here give balanced class weights or oversampled row indices of a train split, used by `tune`
(inside each CV fold's training part) and `train`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from prefect import task
from sklearn.pipeline import Pipeline

from adapters.tracking import RunContext, log_to_run
from core.config import FeaturesSettings, Settings
from core.io import ArtifactPaths, dump_joblib, load_joblib, read_parquet, write_json
from inference.model import encode_target
from inference.transformers import FeatureBuilder
from tasks.preprocess import SPLITS, categorical_outputs, feature_frame
from tasks.validate import gate_model_input

log = logging.getLogger(__name__)


def build_feature_builder(
    preprocessor: Pipeline, settings: FeaturesSettings, task_type: str
) -> FeatureBuilder:
    return FeatureBuilder(
        derived=tuple((d.name, d.left, d.right, d.op) for d in settings.derived),
        categorical=tuple(categorical_outputs(preprocessor)),
        categorical_mode=settings.categorical,
        missing_indicators=settings.missing_indicators,
        missing_min_effect=settings.missing_min_effect,
        clip=settings.clip,
        clip_iqr_k=settings.clip_iqr_k,
        clip_z=settings.clip_z,
        near_constant_share=settings.near_constant_share,
        classification=task_type != "regression",
    )


def importance_shares(
    X: pd.DataFrame, y: np.ndarray, task_type: str, categorical: list[str], seed: int, n_jobs: int
) -> pd.Series:
    """Share of total gain per feature in a quick, seeded LightGBM fit (sums to 1)."""
    cls = lgb.LGBMRegressor if task_type == "regression" else lgb.LGBMClassifier
    model = cls(
        n_estimators=100,
        learning_rate=0.1,
        num_leaves=15,
        random_state=seed,
        n_jobs=n_jobs,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    model.fit(X, y, categorical_feature=categorical or "auto")
    gain = pd.Series(model.booster_.feature_importance(importance_type="gain"), index=X.columns)
    total = float(gain.sum())
    return gain / total if total > 0 else gain


def fit_model_input(preprocessor: Pipeline, train: pd.DataFrame, settings: Settings) -> Pipeline:
    """Preprocessing + fitted FeatureBuilder: the whole raw-rows -> model-input transformer."""
    data = settings.data
    X_pre = preprocessor.transform(feature_frame(train, data.target))
    y, _ = encode_target(train[data.target], data.task, positive_label=data.positive_label)
    builder = build_feature_builder(preprocessor, settings.features, data.task).fit(X_pre, y)
    threshold = settings.features.importance_threshold
    if threshold > 0:
        X = builder.transform(X_pre)
        shares = importance_shares(
            X,
            y,
            data.task,
            builder.categorical_features_,
            settings.base.seed,
            settings.train.n_jobs,
        )
        weak = [str(c) for c, s in shares.items() if s < threshold]
        if len(weak) == len(shares):  # never drop every feature: keep the strongest
            weak.remove(str(shares.idxmax()))
        builder.drop_columns(weak, f"importance below {threshold:.3g} of total gain")
    return Pipeline([("preprocess", preprocessor), ("features", builder)])


def model_input_categoricals(model_input: Pipeline) -> list[str]:
    """Columns of the model input LightGBM should treat as categorical."""
    if "features" in model_input.named_steps:
        return list(model_input.named_steps["features"].categorical_features_)
    return categorical_outputs(model_input)


def transform_splits(
    model_input: Pipeline, splits: Mapping[str, pd.DataFrame], target: str
) -> dict[str, pd.DataFrame]:
    return {
        name: model_input.transform(feature_frame(part, target)) for name, part in splits.items()
    }


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights n / (k * count(class)), as scikit-learn's class_weight='balanced'."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(classes) * counts))[inverse].astype(float)


def oversample_indices(y: np.ndarray, seed: int) -> np.ndarray:
    """Row indices with every minority class resampled (with replacement) up to the majority
    count: the original rows first, then the added copies. Use on a training part only."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    extra = [
        rng.choice(np.flatnonzero(y == c), size=counts.max() - n, replace=True)
        for c, n in zip(classes, counts)
        if n < counts.max()
    ]
    return np.concatenate([np.arange(len(y)), *extra]).astype(int)


def feature_report(
    model_input: Pipeline, X_train: pd.DataFrame, settings: Settings, y_train: pd.Series
) -> dict[str, Any]:
    builder: FeatureBuilder = model_input.named_steps["features"]
    return {
        "columns": list(X_train.columns),
        "n_features": int(X_train.shape[1]),
        "categorical": builder.categorical_features_,
        "categorical_mode": builder.categorical_mode,
        "derived": [d.model_dump() for d in settings.features.derived],
        "dropped": dict(sorted(builder.dropped_.items())),
        "missing_effects": builder.missing_effects_,
        "clip": {"method": builder.clip, "bounds": builder.clip_bounds_},
        "imbalance": settings.features.imbalance,
        "class_balance_train": (
            {str(k): int(v) for k, v in y_train.astype(str).value_counts().sort_index().items()}
            if settings.data.task != "regression"
            else {}
        ),
    }


@task(name="features")
def features_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    target = settings.data.target
    splits = {name: read_parquet(paths.split(name)) for name in SPLITS}
    preprocessor = load_joblib(paths.preprocessor)
    model_input = fit_model_input(preprocessor, splits["train"], settings)
    frames = transform_splits(model_input, splits, target)
    # Model-input gate: runs before anything is written, so a failure leaves the previous
    # outputs untouched.
    gate_model_input(settings, ctx, frames)
    report = feature_report(model_input, frames["train"], settings, splits["train"][target])
    dump_joblib(model_input, paths.features_model)
    write_json(report, paths.features_report)
    dropped = report["dropped"]
    log.info(
        "features: %d model-input columns (%d categorical%s)%s",
        report["n_features"],
        len(report["categorical"]),
        f", {len(settings.features.derived)} derived" if settings.features.derived else "",
        f"; dropped {', '.join(f'{c} ({r})' for c, r in dropped.items())}" if dropped else "",
    )
    log_to_run(
        ctx,
        metrics={"n_features": report["n_features"], "n_features_dropped": len(dropped)},
        artifacts=[paths.features_report],
        artifact_dir="features",
    )
    return paths.features_model
