"""What the model relies on: gain importance and SHAP values (LightGBM's own TreeSHAP) of the
model's LightGBM estimator (an ensemble's LightGBM member of the largest weight), or permutation
importance on the test rows when the model has no LightGBM member."""

from __future__ import annotations

import numpy as np
import pandas as pd

from inference.model import InferenceModel

PERMUTATION_ROWS = 2000


def importance_table(
    model: InferenceModel,
    rows: pd.DataFrame | None = None,
    y: np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Total gain per model-input feature of the LightGBM estimator, largest first; without one,
    the mean drop of the CV metric when a feature's values are shuffled (`rows`, `y`)."""
    est = model.lightgbm()
    if est is not None:
        booster = est.booster_
        table = pd.DataFrame(
            {
                "feature": booster.feature_name(),
                "gain": booster.feature_importance(importance_type="gain"),
            }
        )
    else:
        table = permutation_table(model, rows, y, seed)
    return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True).round(4)


def permutation_table(
    model: InferenceModel, rows: pd.DataFrame | None, y: np.ndarray | None, seed: int
) -> pd.DataFrame:
    from sklearn.inspection import permutation_importance

    if rows is None or y is None:
        raise ValueError("permutation importance needs rows and their targets")
    take = np.random.default_rng(seed).permutation(len(rows))[:PERMUTATION_ROWS]
    X = model.model_input(rows.iloc[take])
    scoring = {
        "binary": "roc_auc",
        "multiclass": "neg_log_loss",
        "regression": "neg_root_mean_squared_error",
    }[model.task]
    result = permutation_importance(
        model.estimator, X, y[take], scoring=scoring, n_repeats=3, random_state=seed
    )
    return pd.DataFrame({"feature": list(X.columns), "gain": result.importances_mean})


def shap_contributions(
    model: InferenceModel, rows: pd.DataFrame, sample: int, seed: int
) -> tuple[np.ndarray, pd.DataFrame] | None:
    """SHAP values from LightGBM's own TreeSHAP (`pred_contrib`) on a seeded sample of rows, of
    the model's LightGBM estimator (None without one).

    Returns contributions shaped (rows, features) -- (rows, classes, features) for multiclass --
    without the bias column, and the transformed feature values they explain.
    """
    est = model.lightgbm()
    if est is None:
        return None
    if len(rows) > sample:
        rows = rows.sample(sample, random_state=seed)
    X = model.model_input(rows)
    contrib = np.asarray(est.predict(X, pred_contrib=True), dtype=float)
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
