"""Seeded, vectorised bootstrap of the evaluation metrics.

A resample is a row of counts (how often each test row was drawn), so every metric is written
once as a weighted statistic over a (resamples x rows) weight matrix: all resamples are computed
with a few matrix products instead of a Python loop. A paired comparison evaluates two models on
the *same* weight rows, so their per-resample difference keeps the pairing of the test rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from core.config import LOWER_IS_BETTER

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


def _binary(
    W: np.ndarray, y: np.ndarray, p: np.ndarray, pred: np.ndarray, only: str | None = None
) -> dict[str, np.ndarray]:
    """Every binary metric per weight row; `only` skips the costly rank metrics not asked for."""
    tot = W.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    if only in (None, "roc_auc", "pr_auc"):
        order = np.argsort(p, kind="stable")
        ps, ys = p[order], y[order]
        starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]  # tie groups of equal scores
        Ws = W[:, order]
        g_pos = np.add.reduceat(Ws * ys, starts, axis=1)
        g_neg = np.add.reduceat(Ws * (1 - ys), starts, axis=1)
        pos, neg = g_pos.sum(axis=1), g_neg.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if only in (None, "roc_auc"):
                below = np.cumsum(g_neg, axis=1) - g_neg
                out["roc_auc"] = (g_pos * (below + 0.5 * g_neg)).sum(axis=1) / (pos * neg)
            if only in (None, "pr_auc"):
                tp_desc = np.cumsum(g_pos[:, ::-1], axis=1)
                fp_desc = np.cumsum(g_neg[:, ::-1], axis=1)
                out["pr_auc"] = (g_pos[:, ::-1] * _ratio(tp_desc, tp_desc + fp_desc)).sum(
                    axis=1
                ) / pos
    else:
        pos = W @ y
    pc = np.clip(p, _EPS, 1 - _EPS)
    loss = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    tp, predicted = W @ (pred * y), W @ pred
    fp, fn = predicted - tp, pos - tp
    out.update(
        {
            "log_loss": (W @ loss) / tot,
            "brier": (W @ (p - y) ** 2) / tot,
            "accuracy": (W @ (pred == y).astype(float)) / tot,
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, pos),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
    )
    return out


def _multiclass(
    W: np.ndarray, y: np.ndarray, proba: np.ndarray, pred: np.ndarray
) -> dict[str, np.ndarray]:
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
    return {"rmse": np.sqrt(sse / tot), "mae": (W @ np.abs(err)) / tot, "r2": 1 - _ratio(sse, sst)}


def weighted_metrics(
    task: str,
    W: np.ndarray,
    y: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    only: str | None = None,
) -> dict[str, np.ndarray]:
    """All metrics of `task` for each weight row (at least `only`, when given). `labels` are
    predicted class codes."""
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=float)
    if task == "binary":
        return _binary(W, y.astype(float), scores, np.asarray(labels, dtype=float), only)
    if task == "multiclass":
        return _multiclass(W, y.astype(int), scores, np.asarray(labels, dtype=int))
    return _regression(W, y.astype(float), scores)


def predicted_codes(task: str, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    if task == "binary":
        return (np.asarray(scores) >= threshold).astype(int)
    if task == "multiclass":
        return np.asarray(scores).argmax(axis=1)
    return np.zeros(len(scores), dtype=int)


def subsample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Sorted seeded row indices when n > max_rows (None: use every row)."""
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(np.random.default_rng([seed, 1]).choice(n, max_rows, replace=False))


def _point(task: str, y: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        k: float(v[0])
        for k, v in weighted_metrics(task, np.ones((1, len(y))), y, scores, labels).items()
    }


def _rescaled(
    samples: np.ndarray, sub_point: float, full_point: float, m: int, n: int
) -> np.ndarray:
    """m-out-of-n bootstrap: deviations on m rows shrunk by sqrt(m/n), centred on all n rows."""
    return full_point + (samples - sub_point) * np.sqrt(m / n)


def bootstrap_metrics(
    task: str,
    y: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    n_boot: int,
    seed: int,
    max_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Each metric's value on `n_boot` seeded resamples of the rows.

    The cost is n_boot x rows. Above `max_rows` rows the resamples are drawn from a seeded
    subsample of `max_rows` rows and their deviations rescaled by sqrt(max_rows / rows) around the
    metric on all rows (m-out-of-n bootstrap; every metric here is a smooth, root-n statistic),
    so the interval keeps the width it has on all rows at a fixed cost."""
    idx = subsample_rows(len(y), max_rows, seed)
    if idx is not None:
        sub = bootstrap_metrics(task, y[idx], scores[idx], labels[idx], n_boot, seed)
        sub_point, full_point = (
            _point(task, y[idx], scores[idx], labels[idx]),
            _point(task, y, scores, labels),
        )
        return {
            k: _rescaled(v, sub_point[k], full_point[k], len(idx), len(y)) for k, v in sub.items()
        }
    parts = [
        weighted_metrics(task, W, y, scores, labels) for W in weight_chunks(len(y), n_boot, seed)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def paired_differences(
    task: str,
    metric: str,
    y: np.ndarray,
    candidate: tuple[np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray],
    n_boot: int,
    seed: int,
    max_rows: int | None = None,
) -> np.ndarray:
    """Improvement of candidate over reference per resample (same resamples for both).

    Oriented so that positive always means "candidate is better": for metrics that improve
    downwards (log loss, Brier, RMSE, MAE) it is reference - candidate. Above `max_rows` rows,
    the m-out-of-n rescaling of `bootstrap_metrics`, on the same subsample for both models.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    idx = subsample_rows(len(y), max_rows, seed)
    if idx is not None:
        cand, ref = tuple(a[idx] for a in candidate), tuple(a[idx] for a in reference)
        sub = paired_differences(
            task, metric, y[idx], (cand[0], cand[1]), (ref[0], ref[1]), n_boot, seed
        )
        diff_sub = sign * (_point(task, y[idx], *cand)[metric] - _point(task, y[idx], *ref)[metric])
        diff_full = sign * (
            _point(task, y, *candidate)[metric] - _point(task, y, *reference)[metric]
        )
        return _rescaled(sub, diff_sub, diff_full, len(idx), len(y))
    out = []
    for W in weight_chunks(len(y), n_boot, seed):
        a = weighted_metrics(task, W, y, *candidate, only=metric)[metric]
        b = weighted_metrics(task, W, y, *reference, only=metric)[metric]
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
