"""The binary decision threshold: chosen on the valid split, stored in the model.

Pure functions: scores and labels in, one threshold out. `train` calls `choose_threshold` on the
valid split right after fitting, so evaluate (test split) and the registered model use it as is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.config import Settings, ThresholdSettings
from tasks.model import InferenceModel, encode_target


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
    distinct = np.r_[np.diff(p_sorted) != 0, True]          # last row of each tie group
    tp = np.cumsum(y_sorted)[distinct]
    fp = np.cumsum(1 - y_sorted)[distinct]
    cut_scores = p_sorted[distinct]                         # descending
    lower = np.r_[cut_scores[1:], 0.0]                      # next score below each cut
    thresholds = (cut_scores + lower) / 2
    top = np.nextafter(cut_scores[0], np.inf)               # above every score: none positive
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
        objective = (settings.cost_fp * fp + settings.cost_fn * fn + settings.cost_tp * tp
                     + settings.cost_tn * tn) / n
    best = int(np.argmin(objective))   # ties: the first, i.e. the highest threshold
    return float(thresholds[best])


def expected_cost(y: np.ndarray, p: np.ndarray, threshold: float, settings: ThresholdSettings) -> float:
    """Average cost per row of labelling `p >= threshold` positive (for reports and tests)."""
    y = np.asarray(y, dtype=int)
    pred = np.asarray(p) >= threshold
    tp = np.sum(pred & (y == 1)); fp = np.sum(pred & (y == 0))
    fn = np.sum(~pred & (y == 1)); tn = np.sum(~pred & (y == 0))
    return float((settings.cost_fp * fp + settings.cost_fn * fn + settings.cost_tp * tp
                  + settings.cost_tn * tn) / len(y))


def tune_model_threshold(model: InferenceModel, valid: pd.DataFrame, settings: Settings,
                         scores: np.ndarray | None = None) -> float | None:
    """Set `model.threshold` from the valid split (binary only); returns it, or None.
    `scores`: the model's valid-split scores when the caller already has them."""
    if model.task != "binary":
        return None
    y, _ = encode_target(valid[settings.data.target], model.task, classes=model.classes)
    scores = model.predict_scores(valid) if scores is None else scores
    model.threshold = choose_threshold(y, scores, settings.evaluate.threshold)
    return model.threshold
