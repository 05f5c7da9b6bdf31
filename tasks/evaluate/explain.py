"""What the model relies on: gain importance and SHAP values (LightGBM's own TreeSHAP)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from inference.model import InferenceModel


def _estimator(model: InferenceModel) -> Any:
    return model.pipeline.named_steps["model"]


def importance_table(model: InferenceModel) -> pd.DataFrame:
    """Total gain per model input feature, largest first."""
    booster = _estimator(model).booster_
    table = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": booster.feature_importance(importance_type="gain"),
        }
    )
    return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True).round(4)


def shap_contributions(
    model: InferenceModel, rows: pd.DataFrame, sample: int, seed: int
) -> tuple[np.ndarray, pd.DataFrame]:
    """SHAP values from LightGBM's own TreeSHAP (`pred_contrib`) on a seeded sample of rows.

    Returns contributions shaped (rows, features) -- (rows, classes, features) for multiclass --
    without the bias column, and the transformed feature values they explain.
    """
    if len(rows) > sample:
        rows = rows.sample(sample, random_state=seed)
    X = model.pipeline.named_steps["preprocess"].transform(rows[model.feature_columns])
    contrib = np.asarray(_estimator(model).predict(X, pred_contrib=True), dtype=float)
    n_features = X.shape[1]
    if model.task == "multiclass":
        contrib = contrib.reshape(len(X), len(model.classes), n_features + 1)[:, :, :-1]
    else:
        contrib = contrib[:, :-1]
    return contrib, X.reset_index(drop=True)


def shap_table(model: InferenceModel, contrib: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| per feature (per class for multiclass), largest total first."""
    if contrib.ndim == 3:
        data = {str(c): np.abs(contrib[:, i, :]).mean(axis=0) for i, c in enumerate(model.classes)}
    else:
        data = {"mean_abs_shap": np.abs(contrib).mean(axis=0)}
    table = pd.DataFrame(data, index=list(X.columns))
    order = table.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return table.loc[order].rename_axis("feature").reset_index().round(6)
