"""Custom scikit-learn transformers that travel inside the registered model.

Kept free of Prefect/MLflow imports: loading a model only needs scikit-learn, pandas and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class SentinelMapper(TransformerMixin, BaseEstimator):
    """Replace declared sentinel codes (e.g. 99999999 = unknown) with missing values."""

    def __init__(self, sentinels: Mapping[str, Sequence[object]] | None = None) -> None:
        self.sentinels = sentinels

    def fit(self, X: pd.DataFrame, y: object = None) -> SentinelMapper:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not self.sentinels:
            return X
        out = X.copy()
        for column, codes in self.sentinels.items():
            if column in out.columns:
                out[column] = out[column].mask(out[column].isin(list(codes)))
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return self.feature_names_in_
