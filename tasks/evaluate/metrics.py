"""Test-split metrics per task, and their bootstrap intervals (pure functions)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

from tasks.evaluate.bootstrap import bootstrap_metrics, percentile_interval, predicted_codes


def score_binary(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (p >= threshold).astype(int)
    return {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p),
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
    }


def score_multiclass(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    pred = proba.argmax(axis=1)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=0),
        "weighted_f1": skm.f1_score(y, pred, average="weighted", zero_division=0),
        "log_loss": skm.log_loss(y, proba, labels=list(range(proba.shape[1]))),
    }


def score_regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
    }


def score_predictions(
    task: str, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    if task == "binary":
        raw = score_binary(y, scores, threshold)
    elif task == "multiclass":
        raw = score_multiclass(y, scores)
    else:
        raw = score_regression(y, scores)
    return {k: round(float(v), 6) for k, v in raw.items()}


def metric_intervals(
    task: str,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_boot: int,
    seed: int,
    level: float,
    max_rows: int | None = None,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap interval of every metric, at the model's own threshold."""
    samples = bootstrap_metrics(
        task, y, scores, predicted_codes(task, scores, threshold), n_boot, seed, max_rows
    )
    out = {}
    for name, values in samples.items():
        low, high = percentile_interval(values, level)
        out[name] = {"low": round(low, 6), "high": round(high, 6)}
    return out


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of the evaluation: test_<metric>, their interval bounds, CV, threshold."""
    ci = summary["ci"]
    flat_ci = {
        f"test_{k}_ci_{side}": v[side]
        for k, v in ci.items()
        for side in ("low", "high")
        if math.isfinite(v[side])
    }
    metrics = {f"test_{k}": v for k, v in summary["test"].items()} | flat_ci
    if "cv" in summary:
        metrics |= {"cv_mean": summary["cv"]["mean"], "cv_std": summary["cv"]["std"]}
    if "threshold" in summary:
        metrics["threshold"] = summary["threshold"]
    return metrics
