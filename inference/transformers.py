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


INDICATOR_PREFIX = "missingindicator_"


def derive_column(left: pd.Series, right: pd.Series, op: str) -> pd.Series:
    """`left <op> right` as floats; a zero denominator or an infinite result becomes missing."""
    a, b = left.astype(float), right.astype(float)
    if op == "ratio":
        out = a / b.where(b != 0)
    elif op == "difference":
        out = a - b
    elif op == "sum":
        out = a + b
    elif op == "product":
        out = a * b
    else:
        raise ValueError(f"unknown operation {op!r} (one of ratio, difference, sum, product)")
    return out.replace([np.inf, -np.inf], np.nan)


def missing_effect(indicator: np.ndarray, y: np.ndarray, classification: bool) -> float:
    """How differently the target behaves when a value is missing, in target standard deviations
    (classification: the largest such difference over the classes' one-vs-rest rates)."""
    m = indicator.astype(bool)
    if m.all() or not m.any():
        return 0.0
    targets = (
        [(y == c).astype(float) for c in np.unique(y)] if classification else [y.astype(float)]
    )
    effects = []
    for t in targets:
        std = float(np.std(t))
        effects.append(0.0 if std == 0 else abs(t[m].mean() - t[~m].mean()) / std)
    return float(max(effects))


class FeatureBuilder(TransformerMixin, BaseEstimator):
    """Model-input features on top of the fitted preprocessing's output, fitted on train only.

    Declared derived columns (`(name, left, right, op)`), missing-value indicators kept only where
    missingness is informative, optional IQR / z-score clipping, near-constant feature removal,
    and a list of columns dropped later by importance selection. Categorical code columns are
    reported in `categorical_features_` for LightGBM's native categorical handling.
    """

    def __init__(
        self,
        derived: Sequence[tuple[str, str, str, str]] = (),
        categorical: Sequence[str] = (),
        categorical_mode: str = "native",
        missing_indicators: str = "informative",
        missing_min_effect: float = 0.1,
        clip: str = "none",
        clip_iqr_k: float = 1.5,
        clip_z: float = 3.0,
        near_constant_share: float = 1.0,
        classification: bool = True,
    ) -> None:
        self.derived = derived
        self.categorical = categorical
        self.categorical_mode = categorical_mode
        self.missing_indicators = missing_indicators
        self.missing_min_effect = missing_min_effect
        self.clip = clip
        self.clip_iqr_k = clip_iqr_k
        self.clip_z = clip_z
        self.near_constant_share = near_constant_share
        self.classification = classification

    def _derive(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for name, left, right, op in self.derived:
            out[name] = derive_column(X[left], X[right], op)
        return out

    def fit(self, X: pd.DataFrame, y: object = None) -> FeatureBuilder:
        from inference.errors import DataError

        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        for name, left, right, _ in self.derived:
            for col in (left, right):
                if col not in X.columns:
                    raise DataError(
                        f"features.derived {name!r}: column {col!r} is not a model "
                        f"input column (have: {', '.join(map(str, X.columns))})"
                    )
                if col in self.categorical or not pd.api.types.is_numeric_dtype(X[col]):
                    raise DataError(
                        f"features.derived {name!r}: column {col!r} is categorical; "
                        "derived features take numeric columns"
                    )
            if name in X.columns:
                raise DataError(f"features.derived {name!r}: a column of that name already exists")
        frame = self._derive(X)
        dropped: dict[str, str] = {}
        indicators = [c for c in frame.columns if str(c).startswith(INDICATOR_PREFIX)]
        self.missing_effects_: dict[str, float] = {}
        if indicators and self.missing_indicators != "all":
            target = None if y is None else np.asarray(y)
            for col in indicators:
                if self.missing_indicators == "none" or target is None:
                    dropped[col] = "missing indicator (features.missing_indicators: none)"
                    continue
                effect = missing_effect(frame[col].to_numpy(), target, self.classification)
                self.missing_effects_[col] = round(effect, 4)
                if effect < self.missing_min_effect:
                    dropped[col] = (
                        f"missingness not informative (effect {effect:.3f} < "
                        f"{self.missing_min_effect})"
                    )
        if self.near_constant_share <= 1.0:
            for col in frame.columns:
                if col in dropped:
                    continue
                share = (
                    frame[col].value_counts(dropna=False, normalize=True).iloc[0]
                    if len(frame)
                    else 1.0
                )
                if share >= self.near_constant_share:
                    dropped[col] = f"near-constant ({share:.1%} of train rows share one value)"
        self.clip_bounds_: dict[str, tuple[float, float]] = {}
        if self.clip != "none":
            for col in frame.columns:
                if (
                    col in dropped
                    or col in self.categorical
                    or str(col).startswith(INDICATOR_PREFIX)
                ):
                    continue
                values = frame[col].astype(float).dropna()
                if values.empty:
                    continue
                if self.clip == "iqr":
                    q1, q3 = np.percentile(values, [25, 75])
                    lo, hi = q1 - self.clip_iqr_k * (q3 - q1), q3 + self.clip_iqr_k * (q3 - q1)
                else:
                    mean, std = float(values.mean()), float(values.std(ddof=0))
                    lo, hi = mean - self.clip_z * std, mean + self.clip_z * std
                self.clip_bounds_[str(col)] = (float(lo), float(hi))
        self.dropped_ = dropped
        self.columns_ = [str(c) for c in frame.columns if c not in dropped]
        return self

    def drop_columns(self, columns: Sequence[str], reason: str) -> FeatureBuilder:
        """Remove fitted output columns (e.g. after model-based importance selection)."""
        for col in columns:
            if col in self.columns_:
                self.columns_.remove(col)
                self.dropped_[col] = reason
        return self

    @property
    def categorical_features_(self) -> list[str]:
        """Columns LightGBM should split as categories (none in ordinal mode)."""
        if self.categorical_mode != "native":
            return []
        return [c for c in self.columns_ if c in self.categorical]

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        frame = self._derive(X)
        for col, (lo, hi) in self.clip_bounds_.items():
            frame[col] = frame[col].astype(float).clip(lo, hi)
        return frame[self.columns_]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.columns_, dtype=object)


# log1p(float64 max) is ~709.8: beyond this a back-transformed prediction would be infinite.
LOG_TARGET_CAP = 700.0


def expm1_capped(z: np.ndarray) -> np.ndarray:
    """The inverse of log1p for a model fitted on log1p of a non-negative target: never below 0
    (the target's domain), and capped so an extrapolating model returns a (huge) finite value
    instead of infinity."""
    return np.expm1(np.clip(np.asarray(z, dtype=float), 0.0, LOG_TARGET_CAP))
