"""A weighted ensemble of fitted learners: the final estimator of a model when CV chose a blend.

Each member is a fitted scikit-learn-compatible estimator that takes the model input (the output
of the fitted preprocessing + features) and has `predict_proba` (classification) or `predict`
(regression). The ensemble averages the members' probabilities or values with fixed weights
(greedy ensemble selection on out-of-fold predictions chose them at training time). Classes
are the label codes 0..k-1 the members were fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator


@dataclass
class Member:
    """One learner of the ensemble: its kind (e.g. "lightgbm"), a label, the fitted estimator
    and its weight (the weights of an ensemble sum to 1)."""

    kind: str
    name: str
    estimator: Any
    weight: float


class WeightedEnsemble(BaseEstimator):
    """Weighted average of the members' outputs; the scikit-learn estimator interface the
    InferenceModel pipeline needs (predict_proba / predict)."""

    def __init__(self, members: Sequence[Member], task: str, n_classes: int = 0) -> None:
        total = float(sum(m.weight for m in members))
        if not members or total <= 0:
            raise ValueError("an ensemble needs at least one member with a positive weight")
        self.members = [Member(m.kind, m.name, m.estimator, m.weight / total) for m in members]
        self.task = task
        self.n_classes = n_classes
        self.classes_ = np.arange(n_classes) if task != "regression" else None

    def fit(self, X: pd.DataFrame, y: Any = None) -> WeightedEnsemble:
        """Members are fitted one by one at training time; the ensemble only blends them."""
        raise NotImplementedError("fit the members, then build a WeightedEnsemble from them")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("a regression ensemble has no predict_proba")
        out = np.zeros((len(X), self.n_classes))
        for m in self.members:
            out += m.weight * np.asarray(m.estimator.predict_proba(X), dtype=float)
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.task != "regression":
            return np.argmax(self.predict_proba(X), axis=1)
        out = np.zeros(len(X))
        for m in self.members:
            out += m.weight * np.asarray(m.estimator.predict(X), dtype=float)
        return out

    def weights(self) -> dict[str, float]:
        return {m.name: round(m.weight, 6) for m in self.members}

    def lightgbm(self) -> Any | None:
        """The LightGBM member with the largest weight (explanations, compression), if any."""
        trees = [m for m in self.members if m.kind == "lightgbm"]
        return max(trees, key=lambda m: m.weight).estimator if trees else None
