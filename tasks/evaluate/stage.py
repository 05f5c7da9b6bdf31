"""evaluate: test-split metrics with bootstrap intervals, plots and explanations.

Outputs: `metrics/test.json` (point metrics, seeded bootstrap intervals, threshold, CV summary;
for `dvc metrics`), `plots/` (CSV tables for `dvc plots` and PNG images, swapped in as a whole
folder so no plot of an earlier run or task type survives) and `reports/evaluation.json` (top
features and class balance, read by register for the model card). The parts: `metrics`
(per-task scores and intervals), `bootstrap` (vectorised resampling), `explain` (importance,
SHAP), `plots` (tables and images).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from adapters.tracking import RunContext, log_to_run
from core.config import Settings
from core.io import ArtifactPaths, atomic_dir, load_joblib, read_json, read_parquet, write_json
from inference.model import InferenceModel, encode_target
from tasks.evaluate.metrics import metric_intervals, run_metrics, score_predictions
from tasks.evaluate.plots import write_plots

log = logging.getLogger(__name__)


def read_cv_summary(path: Path) -> dict[str, Any] | None:
    """CV mean/std over the training folds, as written by the tune stage (if it ran).

    Reads top-level `cv_mean` and `cv_std` (and `cv_metric` when present) from metrics/tuning.json.
    """
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or "cv_mean" not in data or "cv_std" not in data:
        return None
    out: dict[str, Any] = {"mean": float(data["cv_mean"]), "std": float(data["cv_std"])}
    if "cv_metric" in data:
        out["metric"] = str(data["cv_metric"])
    return out


def class_balance(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def test_summary(
    settings: Settings,
    model: InferenceModel,
    test: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    cv: dict[str, Any] | None,
) -> dict[str, Any]:
    """metrics/test.json: point metrics, their intervals, the threshold and the CV summary."""
    ev = settings.evaluate
    result = score_predictions(model.task, y, scores, model.threshold)
    ci = metric_intervals(
        model.task,
        y,
        scores,
        model.threshold,
        ev.n_boot,
        settings.base.seed,
        ev.ci_level,
        ev.max_boot_rows,
    )
    summary: dict[str, Any] = {
        "test": result,
        "ci": ci,
        "ci_level": ev.ci_level,
        "n_boot": ev.n_boot,
        "test_rows": len(test),
        "boot_rows": min(len(test), ev.max_boot_rows),
    }
    if model.task == "binary":
        summary["threshold"] = round(model.threshold, 6)
    if cv is not None:
        summary["cv"] = cv
    return summary


@task(name="evaluate")
def evaluate_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    model: InferenceModel = load_joblib(paths.evaluation_model)
    test = read_parquet(paths.split("test"))
    y, _ = encode_target(test[settings.data.target], model.task, classes=model.classes or None)
    scores = model.predict_scores(test)
    summary = test_summary(settings, model, test, y, scores, read_cv_summary(paths.tuning_metrics))
    with atomic_dir(paths.plots_dir) as staging:
        facts = write_plots(model, y, scores, test, summary["test"], settings, staging)
    report = {
        **facts,
        "class_balance_test": class_balance(test[settings.data.target])
        if model.task != "regression"
        else None,
        "threshold_objective": settings.evaluate.threshold.objective
        if model.task == "binary"
        else None,
    }
    write_json(report, paths.evaluation_report)
    write_json(summary, paths.test_metrics)
    ci = summary["ci"]
    log.info(
        "evaluate: test %s",
        ", ".join(
            f"{k}={v:.4f} [{ci[k]['low']:.4f}, {ci[k]['high']:.4f}]"
            for k, v in summary["test"].items()
        ),
    )
    log_to_run(
        ctx,
        metrics=run_metrics(summary),
        artifact_dir="evaluation",
        artifacts=[
            paths.test_metrics,
            paths.evaluation_report,
            *sorted(p for p in paths.plots_dir.iterdir() if p.is_file()),
        ],
    )
    return paths.test_metrics
