"""evaluate: test-split metrics (JSON for `dvc metrics`) and plot data (CSV for `dvc plots`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from sklearn import metrics as skm

from tasks.config import Settings
from tasks.io import ArtifactPaths, load_joblib, read_parquet, write_csv, write_json
from tasks.model import InferenceModel, encode_target
from tasks.tracking import RunContext, log_to_run

log = logging.getLogger(__name__)


def score_binary(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (p >= threshold).astype(int)
    return {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
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
        "log_loss": skm.log_loss(y, proba, labels=list(range(proba.shape[1]))),
    }


def score_regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
    }


def score_predictions(task: str, y: np.ndarray, scores: np.ndarray,
                      threshold: float = 0.5) -> dict[str, float]:
    if task == "binary":
        raw = score_binary(y, scores, threshold)
    elif task == "multiclass":
        raw = score_multiclass(y, scores)
    else:
        raw = score_regression(y, scores)
    return {k: round(float(v), 6) for k, v in raw.items()}


def plot_tables(model: InferenceModel, y: np.ndarray, scores: np.ndarray) -> dict[str, pd.DataFrame]:
    """Plot data as tables: ROC/PR curves, confusion pairs, residuals."""
    tables: dict[str, pd.DataFrame] = {}
    if model.task == "binary":
        fpr, tpr, _ = skm.roc_curve(y, scores)
        precision, recall, _ = skm.precision_recall_curve(y, scores)
        tables["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6)
        tables["precision_recall"] = pd.DataFrame({"recall": recall, "precision": precision}).round(6)
    if model.task in ("binary", "multiclass"):
        classes = np.asarray(model.classes, dtype=object).astype(str)
        predicted = model.labels_from_scores(scores).astype(str)
        tables["confusion"] = pd.DataFrame({"actual": classes[y], "predicted": predicted})
    else:
        tables["residuals"] = pd.DataFrame(
            {"actual": y, "predicted": scores, "residual": y - scores}).round(6)
    return tables


@task(name="evaluate")
def evaluate_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    model: InferenceModel = load_joblib(paths.model)
    test = read_parquet(paths.split("test"))
    y, _ = encode_target(test[settings.data.target], model.task, classes=model.classes or None)
    scores = model.predict_scores(test)
    result = score_predictions(model.task, y, scores, model.threshold)
    write_json({"test": result, "test_rows": len(test)}, paths.test_metrics)
    written = [write_csv(t, paths.plots_dir / f"{name}.csv")
               for name, t in plot_tables(model, y, scores).items()]
    log.info("evaluate: test %s", ", ".join(f"{k}={v:.4f}" for k, v in result.items()))
    log_to_run(ctx, metrics={f"test_{k}": v for k, v in result.items()},
               artifacts=[paths.test_metrics, *written], artifact_dir="evaluation")
    return paths.test_metrics
