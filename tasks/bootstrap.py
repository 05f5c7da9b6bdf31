"""Seeded, vectorised bootstrap of the evaluation metrics.

A resample is a row of counts (how often each test row was drawn), so every metric is written
once as a weighted statistic over a (resamples x rows) weight matrix: all resamples are computed
with a few matrix products instead of a Python loop. A paired comparison evaluates two models on
the *same* weight rows, so their per-resample difference keeps the pairing of the test rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tasks.config import LOWER_IS_BETTER

_EPS = np.finfo(float).eps
_MAX_CELLS = 4_000_000  # weights held at once (resamples x rows), about 32 MB


def weight_chunks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap count matrices, in chunks, identical for identical (n, n_boot, seed)."""
    rng = np.random.default_rng(seed)
    step = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _binary(W: np.ndarray, y: np.ndarray, p: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    tot = W.sum(axis=1)
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]       # tie groups of equal scores
    Ws = W[:, order]
    g_pos = np.add.reduceat(Ws * ys, starts, axis=1)
    g_neg = np.add.reduceat(Ws * (1 - ys), starts, axis=1)
    pos, neg = g_pos.sum(axis=1), g_neg.sum(axis=1)
    below = np.cumsum(g_neg, axis=1) - g_neg
    with np.errstate(divide="ignore", invalid="ignore"):
        roc_auc = (g_pos * (below + 0.5 * g_neg)).sum(axis=1) / (pos * neg)
        tp_desc = np.cumsum(g_pos[:, ::-1], axis=1)
        fp_desc = np.cumsum(g_neg[:, ::-1], axis=1)
        pr_auc = (g_pos[:, ::-1] * _ratio(tp_desc, tp_desc + fp_desc)).sum(axis=1) / pos
    pc = np.clip(p, _EPS, 1 - _EPS)
    loss = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    tp, predicted = W @ (pred * y), W @ pred
    fp, fn = predicted - tp, pos - tp
    return {
        "roc_auc": roc_auc, "pr_auc": pr_auc,
        "log_loss": (W @ loss) / tot, "brier": (W @ (p - y) ** 2) / tot,
        "accuracy": (W @ (pred == y).astype(float)) / tot,
        "precision": _ratio(tp, predicted), "recall": _ratio(tp, pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _multiclass(W: np.ndarray, y: np.ndarray, proba: np.ndarray,
                pred: np.ndarray) -> dict[str, np.ndarray]:
    tot = W.sum(axis=1)
    k = proba.shape[1]
    Y1 = np.eye(k)[y]
    P1 = np.eye(k)[pred]
    tp, support, predicted = W @ (Y1 * P1), W @ Y1, W @ P1
    f1 = _ratio(2 * tp, support + predicted)
    present = (support + predicted) > 0
    loss = -np.log(np.clip(proba[np.arange(len(y)), y], _EPS, 1))
    return {
        "accuracy": (W @ (pred == y).astype(float)) / tot,
        "macro_f1": (f1 * present).sum(axis=1) / present.sum(axis=1),
        "weighted_f1": _ratio((f1 * support).sum(axis=1), support.sum(axis=1)),
        "log_loss": (W @ loss) / tot,
    }


def _regression(W: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    tot = W.sum(axis=1)
    err = y - pred
    sse = W @ err**2
    sst = W @ y**2 - (W @ y) ** 2 / tot
    return {"rmse": np.sqrt(sse / tot), "mae": (W @ np.abs(err)) / tot,
            "r2": 1 - _ratio(sse, sst)}


def weighted_metrics(task: str, W: np.ndarray, y: np.ndarray, scores: np.ndarray,
                     labels: np.ndarray) -> dict[str, np.ndarray]:
    """All metrics of `task` for each weight row. `labels` are predicted class codes."""
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=float)
    if task == "binary":
        return _binary(W, y.astype(float), scores, np.asarray(labels, dtype=float))
    if task == "multiclass":
        return _multiclass(W, y.astype(int), scores, np.asarray(labels, dtype=int))
    return _regression(W, y.astype(float), scores)


def predicted_codes(task: str, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    if task == "binary":
        return (np.asarray(scores) >= threshold).astype(int)
    if task == "multiclass":
        return np.asarray(scores).argmax(axis=1)
    return np.zeros(len(scores), dtype=int)


def bootstrap_metrics(task: str, y: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Each metric's value on `n_boot` seeded resamples of the rows."""
    parts = [weighted_metrics(task, W, y, scores, labels) for W in weight_chunks(len(y), n_boot, seed)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def paired_differences(task: str, metric: str, y: np.ndarray,
                       candidate: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
                       n_boot: int, seed: int) -> np.ndarray:
    """Improvement of candidate over reference per resample (same resamples for both).

    Oriented so that positive always means "candidate is better": for metrics that improve
    downwards (log loss, Brier, RMSE, MAE) it is reference - candidate.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    out = []
    for W in weight_chunks(len(y), n_boot, seed):
        a = weighted_metrics(task, W, y, *candidate)[metric]
        b = weighted_metrics(task, W, y, *reference)[metric]
        out.append(sign * (a - b))
    return np.concatenate(out)


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval, ignoring resamples where the metric is undefined (e.g. one class)."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return float(lo), float(hi)
