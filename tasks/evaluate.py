"""evaluate: test-split metrics with bootstrap intervals, plots and explanations.

Outputs: `metrics/test.json` (point metrics, seeded bootstrap intervals, threshold, CV summary;
for `dvc metrics`), `plots/` (CSV tables for `dvc plots` and PNG images, swapped in as a whole
folder so no plot of an earlier run or task type survives) and `reports/evaluation.json` (top
features and class balance, read by register for the model card).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from sklearn import metrics as skm

from tasks import plots
from tasks.bootstrap import bootstrap_metrics, percentile_interval, predicted_codes
from tasks.config import Settings
from tasks.io import (ArtifactPaths, load_joblib, read_json, read_parquet, replace_dir, write_csv,
                      write_json)
from tasks.model import InferenceModel, encode_target
from tasks.tracking import RunContext, log_to_run

log = logging.getLogger(__name__)


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


def score_predictions(task: str, y: np.ndarray, scores: np.ndarray,
                      threshold: float = 0.5) -> dict[str, float]:
    if task == "binary":
        raw = score_binary(y, scores, threshold)
    elif task == "multiclass":
        raw = score_multiclass(y, scores)
    else:
        raw = score_regression(y, scores)
    return {k: round(float(v), 6) for k, v in raw.items()}


def metric_intervals(task: str, y: np.ndarray, scores: np.ndarray, threshold: float,
                     n_boot: int, seed: int, level: float,
                     max_rows: int | None = None) -> dict[str, dict[str, float]]:
    """Percentile bootstrap interval of every metric, at the model's own threshold."""
    samples = bootstrap_metrics(task, y, scores, predicted_codes(task, scores, threshold),
                                n_boot, seed, max_rows)
    out = {}
    for name, values in samples.items():
        low, high = percentile_interval(values, level)
        out[name] = {"low": round(low, 6), "high": round(high, 6)}
    return out


def read_cv_summary(path: Path) -> dict[str, Any] | None:
    """CV mean/std over the training folds, as written by the tune stage (if it ran).

    Reads top-level `cv_mean` and `cv_std` (and `cv_metric` when present) from metrics/tuning.json.
    """
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or "cv_mean" not in data or "cv_std" not in data:
        return None
    out = {"mean": float(data["cv_mean"]), "std": float(data["cv_std"])}
    if "cv_metric" in data:
        out["metric"] = str(data["cv_metric"])
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed positive rate per quantile bin of the predicted probability."""
    frame = pd.DataFrame({"p": p, "y": y})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), q=min(bins, len(frame)), labels=False)
    grouped = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed_rate=("y", "mean"),
                                       rows=("y", "size"))
    return grouped.reset_index(drop=True).round(6)


def plot_tables(model: InferenceModel, y: np.ndarray, scores: np.ndarray) -> dict[str, pd.DataFrame]:
    """Plot data as tables: ROC/PR/calibration curves, confusion pairs, residuals."""
    tables: dict[str, pd.DataFrame] = {}
    if model.task == "binary":
        fpr, tpr, _ = skm.roc_curve(y, scores)
        precision, recall, _ = skm.precision_recall_curve(y, scores)
        tables["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6)
        tables["precision_recall"] = pd.DataFrame({"recall": recall, "precision": precision}).round(6)
        tables["calibration"] = calibration_table(y, scores)
    if model.task in ("binary", "multiclass"):
        classes = np.asarray(model.classes, dtype=object).astype(str)
        predicted = model.labels_from_scores(scores).astype(str)
        tables["confusion"] = pd.DataFrame({"actual": classes[y], "predicted": predicted})
    else:
        tables["residuals"] = pd.DataFrame(
            {"actual": y, "predicted": scores, "residual": y - scores}).round(6)
    return tables


def _estimator(model: InferenceModel) -> Any:
    return model.pipeline.named_steps["model"]


def importance_table(model: InferenceModel) -> pd.DataFrame:
    """Total gain per model input feature, largest first."""
    booster = _estimator(model).booster_
    table = pd.DataFrame({"feature": booster.feature_name(),
                          "gain": booster.feature_importance(importance_type="gain")})
    return table.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True).round(4)


def shap_contributions(model: InferenceModel, rows: pd.DataFrame, sample: int,
                       seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """SHAP values from LightGBM's own TreeSHAP (`pred_contrib`) on a seeded sample of rows.

    Returns contributions shaped (rows, features) -- (rows, classes, features) for multiclass --
    without the bias column, and the transformed feature values they explain.
    """
    if len(rows) > sample:
        rows = rows.sample(sample, random_state=seed)
    X = model.pipeline.named_steps["preprocess"].transform(rows[model.feature_columns])
    contrib = np.asarray(_estimator(model).predict(X, pred_contrib=True), dtype=float)
    n_features = X.shape[1]
    if model.task == "multiclass":
        contrib = contrib.reshape(len(X), len(model.classes), n_features + 1)[:, :, :-1]
    else:
        contrib = contrib[:, :-1]
    return contrib, X.reset_index(drop=True)


def shap_table(model: InferenceModel, contrib: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| per feature (per class for multiclass), largest total first."""
    if contrib.ndim == 3:
        data = {str(c): np.abs(contrib[:, i, :]).mean(axis=0) for i, c in enumerate(model.classes)}
    else:
        data = {"mean_abs_shap": np.abs(contrib).mean(axis=0)}
    table = pd.DataFrame(data, index=list(X.columns))
    order = table.sum(axis=1).sort_values(ascending=False, kind="stable").index
    return table.loc[order].rename_axis("feature").reset_index().round(6)


def write_plots(model: InferenceModel, y: np.ndarray, scores: np.ndarray, test: pd.DataFrame,
                metrics: dict[str, float], settings: Settings, dest: Path) -> dict[str, Any]:
    """All plot tables (CSV) and images (PNG) into `dest`; returns facts for the report."""
    ev = settings.evaluate
    tables = plot_tables(model, y, scores)
    importance = importance_table(model)
    contrib, X = shap_contributions(model, test, ev.shap_sample, settings.base.seed)
    shap = shap_table(model, contrib, X)
    tables.update({"importance": importance, "shap": shap})
    for name, table in tables.items():
        write_csv(table, dest / f"{name}.csv")
    classes = [str(c) for c in model.classes]
    if model.task == "binary":
        plots.plot_roc(tables["roc"], metrics["roc_auc"], dest / "roc.png")
        plots.plot_precision_recall(tables["precision_recall"], metrics["pr_auc"],
                                    float(np.mean(y)), dest / "precision_recall.png")
        plots.plot_calibration(tables["calibration"], dest / "calibration.png")
    if model.task in ("binary", "multiclass"):
        at = f" at threshold {model.threshold:.3f}" if model.task == "binary" else ""
        plots.plot_confusion(tables["confusion"], classes, f"Confusion matrix (test{at})",
                             dest / "confusion.png")
    else:
        plots.plot_residuals(tables["residuals"], dest / "residuals.png")
    plots.plot_importance(importance, ev.top_features, dest / "importance.png")
    top = list(shap["feature"].head(ev.top_features))
    if contrib.ndim == 3:
        plots.plot_shap_bars(shap.set_index("feature").head(ev.top_features), dest / "shap_summary.png")
    else:
        plots.plot_shap_summary(contrib, X, top, settings.base.seed, dest / "shap_summary.png")
    return {"top_features_gain": importance.head(ev.top_features).to_dict(orient="records"),
            "top_features_shap": top, "shap_rows": int(len(X))}


def class_balance(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


@task(name="evaluate")
def evaluate_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    ev = settings.evaluate
    model: InferenceModel = load_joblib(paths.model)
    test = read_parquet(paths.split("test"))
    y, _ = encode_target(test[settings.data.target], model.task, classes=model.classes or None)
    scores = model.predict_scores(test)
    result = score_predictions(model.task, y, scores, model.threshold)
    ci = metric_intervals(model.task, y, scores, model.threshold, ev.n_boot, settings.base.seed,
                          ev.ci_level, ev.max_boot_rows)
    summary: dict[str, Any] = {"test": result, "ci": ci, "ci_level": ev.ci_level,
                               "n_boot": ev.n_boot, "test_rows": len(test),
                               "boot_rows": min(len(test), ev.max_boot_rows)}
    if model.task == "binary":
        summary["threshold"] = round(model.threshold, 6)
    cv = read_cv_summary(paths.tuning_metrics)
    if cv is not None:
        summary["cv"] = cv

    paths.plots_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".plots.", dir=paths.plots_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the plots folder is an ordinary output
    try:
        facts = write_plots(model, y, scores, test, result, settings, staging)
        replace_dir(staging, paths.plots_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    report = {**facts, "class_balance_test": class_balance(test[settings.data.target])
              if model.task != "regression" else None,
              "threshold_objective": settings.evaluate.threshold.objective
              if model.task == "binary" else None}
    write_json(report, paths.evaluation_report)
    write_json(summary, paths.test_metrics)

    log.info("evaluate: test %s", ", ".join(
        f"{k}={v:.4f} [{ci[k]['low']:.4f}, {ci[k]['high']:.4f}]" for k, v in result.items()))
    flat_ci = {f"test_{k}_ci_{side}": v[side] for k, v in ci.items() for side in ("low", "high")
               if math.isfinite(v[side])}
    metrics = {f"test_{k}": v for k, v in result.items()} | flat_ci
    if cv is not None:
        metrics |= {"cv_mean": cv["mean"], "cv_std": cv["std"]}
    if "threshold" in summary:
        metrics["threshold"] = summary["threshold"]
    log_to_run(ctx, metrics=metrics, artifact_dir="evaluation",
               artifacts=[paths.test_metrics, paths.evaluation_report,
                          *sorted(p for p in paths.plots_dir.iterdir() if p.is_file())])
    return paths.test_metrics
