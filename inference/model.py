"""The inference model: raw rows in, probabilities (or values) out.

One object holds the fitted preprocessing, the LightGBM model, the label mapping and the decision
threshold, so the registered MLflow model, batch scoring and evaluation all predict the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from inference.errors import DataError, preview


@dataclass
class InferenceModel:
    pipeline: Pipeline
    task: str
    target: str
    feature_columns: list[str]
    feature_dtypes: dict[str, str]
    # Class labels in model order. Binary: [negative, positive].
    classes: list[Any] = field(default_factory=list)
    threshold: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)

    def _features(self, rows: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_columns if c not in rows.columns]
        if missing:
            raise DataError(f"input is missing required column(s): {preview(missing, 10)}")
        return rows[self.feature_columns]

    def input_transformer(self) -> Any:
        """The fitted steps between raw feature columns and the estimator."""
        return self.pipeline[:-1]

    @property
    def estimator(self) -> Any:
        return self.pipeline.steps[-1][1]

    def lightgbm(self) -> Any | None:
        """The LightGBM estimator behind the predictions: the estimator itself, or an
        ensemble's LightGBM member of the largest weight; None when there is none."""
        est = self.estimator
        if isinstance(est, lgb.LGBMModel):
            return est
        pick = getattr(est, "lightgbm", None)
        return pick() if callable(pick) else None

    @property
    def is_single_lightgbm(self) -> bool:
        return isinstance(self.estimator, lgb.LGBMModel)

    def model_input(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What the estimator sees for these raw rows (named model-input columns)."""
        return self.input_transformer().transform(self._features(rows))

    def predict_scores(self, rows: pd.DataFrame) -> np.ndarray:
        """Binary: P(positive) per row; multiclass: (n, k) probabilities; regression: values."""
        X = self._features(rows)
        if self.task == "regression":
            return np.asarray(self.pipeline.predict(X), dtype=float)
        proba = np.asarray(self.pipeline.predict_proba(X), dtype=float)
        return proba[:, 1] if self.task == "binary" else proba

    def labels_from_scores(self, scores: np.ndarray) -> np.ndarray:
        classes = np.asarray(self.classes, dtype=object)
        if self.task == "binary":
            return classes[(scores >= self.threshold).astype(int)]
        return classes[np.argmax(scores, axis=1)]

    def predict_frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """What the registered model returns: probabilities and the thresholded label."""
        scores = self.predict_scores(rows)
        index = rows.index
        if self.task == "regression":
            return pd.DataFrame({"prediction": scores}, index=index)
        labels = self.labels_from_scores(scores)
        if self.task == "binary":
            return pd.DataFrame({"probability": scores, "label": labels.astype(str)}, index=index)
        cols = {f"proba_{c}": scores[:, i] for i, c in enumerate(self.classes)}
        return pd.DataFrame({**cols, "label": labels.astype(str)}, index=index)


def encode_target(
    y: pd.Series, task: str, classes: Sequence[Any] | None = None, positive_label: Any = None
) -> tuple[np.ndarray, list[Any]]:
    """Target as model input: floats for regression, 0..k-1 codes for classification."""
    if task == "regression":
        return y.to_numpy(dtype=float), []
    if classes is None:
        if task == "binary":
            levels = [v for v in pd.unique(y) if str(v) != str(positive_label)]
            positive = next(v for v in pd.unique(y) if str(v) == str(positive_label))
            classes = [levels[0], positive]
        else:
            classes = sorted(pd.unique(y), key=str)
    lookup = {str(c): i for i, c in enumerate(classes)}
    codes = y.astype(str).map(lookup)
    if codes.isna().any():
        unknown = y[codes.isna()].unique()
        raise DataError(f"target has levels not seen in training: {preview(unknown)}")
    return codes.to_numpy(dtype=int), [c.item() if hasattr(c, "item") else c for c in classes]
