"""Measuring and reporting compression candidates: metrics, latency, the Pareto table and plot.

The Pareto table holds what is a function of code, params and data (sizes, metrics, drops and
their bootstrap bounds, parity); the timings are a separate table (`timings_table`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import LOWER_IS_BETTER
from core.io import ArtifactPaths
from inference.model import InferenceModel
from tasks.compress.select import metric_drop
from tasks.evaluate.metrics import score_predictions

FULL = "full"

COLUMNS = [
    "candidate",
    "kind",
    "size_bytes",
    "trees",
    "leaves",
    "features",
    "valid_metric",
    "valid_drop",
    "valid_drop_bound",
    "test_metric",
    "test_drop",
    "test_drop_low",
    "test_drop_high",
    "parity_max_abs",
    "selectable",
    "chosen",
    "note",
]


@dataclass
class Scored:
    name: str
    kind: str
    model: InferenceModel
    size_bytes: int
    trees: int
    leaves: int
    features: int
    selectable: bool = True
    parity: float | None = None  # max |prediction - its source's prediction| on test
    valid_metric: float = math.nan
    test_metric: float = math.nan
    p50_ms: float = math.nan
    rows_per_s: float = math.nan
    # Paired bootstrap against the full model: the one-sided upper bound of the drop on valid
    # (evaluate.ci_level) and the interval (low, high) of the drop on test.
    valid_drop_bound: float = math.nan
    test_drop_ci: tuple[float, float] = (math.nan, math.nan)


def score_split(
    model: InferenceModel,
    rows: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    scores: np.ndarray | None = None,
) -> float:
    scores = model.predict_scores(rows) if scores is None else scores
    return float(score_predictions(model.task, y, scores, model.threshold)[metric])


def single_row_p50_ms(predict: Callable[[pd.DataFrame], Any], rows: pd.DataFrame, n: int) -> float:
    """Median wall time of predicting one raw row (a one-row DataFrame), over n rows."""
    singles = [rows.iloc[[i % len(rows)]] for i in range(n)]
    predict(singles[0])  # warm-up: lazy loading, first-call allocations
    times = []
    for row in singles:
        start = time.perf_counter()
        predict(row)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def batch_rows_per_s(
    predict: Callable[[pd.DataFrame], Any], rows: pd.DataFrame, min_seconds: float = 0.3
) -> float:
    predict(rows)
    done, start = 0, time.perf_counter()
    while True:
        predict(rows)
        done += len(rows)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


# Batch throughput is timed on batches of at most this many test rows: on the whole test split
# of a 1M-row table (200k rows) the warm-up and one timed batch alone took 90 s per run.
BATCH_ROWS = 20_000


def measure_latency(
    scored: list[Scored], rows: pd.DataFrame, n_single: int, batch_seconds: float
) -> None:
    batch = rows.head(BATCH_ROWS)
    for s in scored:
        s.p50_ms = single_row_p50_ms(s.model.predict_frame, rows, n_single)
        s.rows_per_s = batch_rows_per_s(s.model.predict_frame, batch, batch_seconds)


def full_row(
    full: InferenceModel, packed: Scored | None, paths: ArtifactPaths, splits: Any, metric: str
) -> Scored:
    """The full model as evaluated (its joblib file size; its trees are `packed`'s when it is a
    single LightGBM model)."""
    s = Scored(
        FULL,
        "full",
        full,
        paths.evaluation_model.stat().st_size,
        packed.trees if packed else 0,
        packed.leaves if packed else 0,
        len(full.feature_columns),
        selectable=False,
        parity=0.0,
    )
    s.valid_metric = score_split(full, splits.valid, splits.y_valid, metric)
    s.test_metric = score_split(full, splits.test, splits.y_test, metric)
    return s


def timings_table(scored: list[Scored]) -> list[dict[str, Any]]:
    """Measured speed per candidate. Wall-clock figures differ on every run, so they go to
    MLflow and an untracked file, never into the Pareto table (a DVC output under git)."""
    return [
        {
            "candidate": s.name,
            "p50_single_row_ms": round(s.p50_ms, 4),
            "batch_rows_per_s": round(s.rows_per_s, 1),
        }
        for s in scored
    ]


def _r(value: float, digits: int = 6) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def pareto_table(
    scored: list[Scored],
    metric: str,
    full_valid: float,
    full_test: float,
    chosen: str | None,
    dropped: Sequence[tuple[str, str, str]] = (),
) -> pd.DataFrame:
    """One row per candidate: size, metric and drop on valid (with the one-sided upper bound
    of its paired bootstrap distribution, which selection uses) and on test (with its
    interval: the held-out figure), then the candidates that were dropped, with the
    reason as `note`."""
    rows = []
    for s in scored:
        rows.append(
            {
                "candidate": s.name,
                "kind": s.kind,
                "size_bytes": s.size_bytes,
                "trees": s.trees,
                "leaves": s.leaves,
                "features": s.features,
                "valid_metric": round(s.valid_metric, 6),
                "valid_drop": round(metric_drop(metric, full_valid, s.valid_metric), 6),
                "valid_drop_bound": _r(s.valid_drop_bound),
                "test_metric": round(s.test_metric, 6),
                "test_drop": round(metric_drop(metric, full_test, s.test_metric), 6),
                "test_drop_low": _r(s.test_drop_ci[0]),
                "test_drop_high": _r(s.test_drop_ci[1]),
                "parity_max_abs": None if s.parity is None else float(f"{s.parity:.3g}"),
                "selectable": s.selectable,
                "chosen": s.name == chosen,
                "note": "",
            }
        )
    for name, kind, reason in dropped:
        rows.append(
            {"candidate": name, "kind": kind, "selectable": False, "chosen": False, "note": reason}
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_size_vs_metric(
    table: pd.DataFrame, metric: str, max_drop: float, full_valid: float, dest: Path
) -> Path:
    from matplotlib.figure import Figure

    from tasks.evaluate.plots import _save

    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    ax.scatter(table["size_bytes"], table["valid_metric"], color="tab:blue")
    for _, r in table.iterrows():
        ax.annotate(
            r["candidate"],
            (r["size_bytes"], r["valid_metric"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            color="tab:red" if r["chosen"] else "black",
        )
    bound = full_valid + max_drop if metric in LOWER_IS_BETTER else full_valid - max_drop
    ax.axhline(bound, linestyle="--", color="grey", label=f"tolerance ({max_drop:g})")
    ax.set_xscale("log")
    ax.set(
        xlabel="serialized size (bytes, log scale)",
        ylabel=f"valid {metric}",
        title="Compression candidates: size vs metric",
    )
    ax.legend(loc="best")
    return _save(fig, dest)
