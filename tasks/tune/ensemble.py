"""Choosing what ships by cross-validation: the single best candidate, or a weighted ensemble from
greedy ensemble selection on the candidates' out-of-fold predictions (Caruana et al., "Ensemble
selection from libraries of models", ICML 2004; AutoGluon's weighted ensemble does the same).

Pure functions over arrays: out-of-fold predictions in, counts (weights) out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

# Scores are compared after rounding, so float noise never decides between two candidates.
DECIMALS = 6


def oof_score(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    """The CV metric of out-of-fold predictions: ROC-AUC (binary, P(positive)), log loss
    (multiclass, class probabilities) or RMSE (regression)."""
    if task == "binary":
        return float(skm.roc_auc_score(y, pred))
    if task == "multiclass":
        return float(skm.log_loss(y, np.clip(pred, 1e-15, 1), labels=list(range(pred.shape[1]))))
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - pred) ** 2)))


def higher_is_better(task: str) -> bool:
    return task == "binary"


@dataclass(frozen=True)
class Selection:
    """How many times each candidate was picked (its weight is count / total), the ensemble's
    out-of-fold score and the best single candidate's, for the report."""

    counts: dict[int, int]
    score: float
    best_single: int
    best_single_score: float

    @property
    def weights(self) -> dict[int, float]:
        total = sum(self.counts.values())
        return {j: c / total for j, c in sorted(self.counts.items())}

    @property
    def is_single(self) -> bool:
        return len(self.counts) == 1


def blend(preds: Sequence[np.ndarray], counts: dict[int, int]) -> np.ndarray:
    """The weighted mean of the picked candidates' predictions."""
    total = sum(counts.values())
    return sum(preds[j] * (c / total) for j, c in counts.items())  # type: ignore[return-value]


def select_ensemble(
    preds: Sequence[np.ndarray],
    y: np.ndarray,
    task: str,
    iterations: int = 25,
    score: Callable[[str, np.ndarray, np.ndarray], float] = oof_score,
) -> Selection:
    """Greedy forward selection with replacement. Each step adds the candidate that makes the
    running mean of the picked predictions score best; the result is the best-scoring prefix of
    those steps (ties: the shorter prefix), so it is never worse out of fold than the best single
    candidate, which is always the first pick. Ties between candidates go to one already picked,
    then to the lower index."""
    if not preds:
        raise ValueError("ensemble selection needs at least one candidate")
    sign = 1.0 if higher_is_better(task) else -1.0
    singles = [round(sign * score(task, y, p), DECIMALS) for p in preds]
    total = np.zeros_like(np.asarray(preds[0], dtype=float))
    counts: dict[int, int] = {}
    history: list[tuple[float, dict[int, int]]] = []
    for step in range(1, max(1, iterations) + 1):
        trial = [round(sign * score(task, y, (total + p) / step), DECIMALS) for p in preds]
        top = max(trial)
        tied = [j for j, s in enumerate(trial) if s == top]
        pick = next((j for j in tied if j in counts), tied[0])
        total = total + preds[pick]
        counts[pick] = counts.get(pick, 0) + 1
        history.append((top, dict(counts)))
    best_at = max(range(len(history)), key=lambda i: (history[i][0], -i))
    best_single = max(range(len(singles)), key=lambda j: (singles[j], -j))
    return Selection(
        counts=history[best_at][1],
        score=sign * history[best_at][0],
        best_single=best_single,
        best_single_score=sign * singles[best_single],
    )
