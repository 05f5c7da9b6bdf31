"""Evaluation plots: their data tables (CSV, for `dvc plots`) and PNG images.

Each drawing function takes the plot's data table (the same table written as CSV) and a
destination path; it uses matplotlib's object API (`Figure`, no pyplot), so matplotlib's global
state and backend stay untouched. `write_plots` writes every table and image of a task type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm

from core.config import Settings
from core.io import atomic_path, write_csv
from inference.model import InferenceModel
from tasks.evaluate.explain import importance_table, shap_contributions, shap_table


def _save(fig: Figure, dest: Path) -> Path:
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return dest


def plot_roc(table: pd.DataFrame, auc: float, dest: Path) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(table["fpr"], table["tpr"], label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
    ax.legend(loc="lower right")
    return _save(fig, dest)


def plot_precision_recall(table: pd.DataFrame, ap: float, base_rate: float, dest: Path) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.step(table["recall"], table["precision"], where="post", label=f"model (AP {ap:.3f})")
    ax.axhline(base_rate, linestyle="--", color="grey", label=f"base rate {base_rate:.2f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return _save(fig, dest)


def plot_calibration(table: pd.DataFrame, dest: Path) -> Path:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label="model")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed positive rate",
        title="Calibration (test, quantile bins)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    return _save(fig, dest)


def plot_confusion(table: pd.DataFrame, classes: list[str], title: str, dest: Path) -> Path:
    counts = (
        pd.crosstab(table["actual"], table["predicted"])
        .reindex(index=classes, columns=classes, fill_value=0)
        .to_numpy()
    )
    fig = Figure(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 2))
    ax = fig.add_subplot()
    im = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), v in np.ndenumerate(counts):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            color="white" if v > counts.max() / 2 else "black",
        )
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, dest)


def plot_residuals(table: pd.DataFrame, dest: Path) -> Path:
    fig = Figure(figsize=(9, 4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.scatter(table["predicted"], table["residual"], s=8, alpha=0.6)
    left.axhline(0, color="grey", linestyle="--")
    left.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (test)")
    right.hist(table["residual"], bins=30)
    right.set(xlabel="actual - predicted", ylabel="rows", title="Residual distribution")
    return _save(fig, dest)


def plot_importance(table: pd.DataFrame, top: int, dest: Path) -> Path:
    data = table.head(top).iloc[::-1]
    fig = Figure(figsize=(6, 0.35 * len(data) + 1.5))
    ax = fig.add_subplot()
    ax.barh(data["feature"], data["gain"])
    ax.set(xlabel="total gain", title="Feature importance (gain)")
    return _save(fig, dest)


def plot_shap_summary(
    contrib: np.ndarray, values: pd.DataFrame, order: list[str], seed: int, dest: Path
) -> Path:
    """Beeswarm-style summary: one row per feature, a dot per explained row, colour = value."""
    names = list(values.columns)
    fig = Figure(figsize=(7, 0.4 * len(order) + 1.8))
    ax = fig.add_subplot()
    rng = np.random.default_rng(seed)
    sc = None
    for row, feature in enumerate(reversed(order)):
        j = names.index(feature)
        x = contrib[:, j]
        v = pd.to_numeric(values[feature], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(v)
        lo, hi = (np.nanpercentile(v, 5), np.nanpercentile(v, 95)) if finite.any() else (0, 1)
        colour = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(v, 0.5)
        y = row + rng.uniform(-0.3, 0.3, size=len(x))
        ax.scatter(x[~finite], y[~finite], s=6, color="lightgrey")
        sc = ax.scatter(
            x[finite], y[finite], s=6, c=colour[finite], cmap="coolwarm", vmin=0, vmax=1
        )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.set(
        xlabel="SHAP value (contribution to the raw score)",
        title=f"SHAP summary ({len(contrib)} test rows, LightGBM pred_contrib)",
    )
    if sc is not None:
        bar = fig.colorbar(sc, ax=ax, fraction=0.04)
        bar.set_label("feature value (low -> high, grey = missing)")
    return _save(fig, dest)


def plot_shap_bars(mean_abs: pd.DataFrame, dest: Path) -> Path:
    """Multiclass: mean |SHAP| per feature, stacked by class."""
    data = mean_abs.iloc[::-1]
    fig = Figure(figsize=(7, 0.4 * len(data) + 1.8))
    ax = fig.add_subplot()
    left = np.zeros(len(data))
    for cls in data.columns:
        ax.barh(data.index, data[cls], left=left, label=str(cls))
        left += data[cls].to_numpy()
    ax.set(xlabel="mean |SHAP value|", title="SHAP summary by class (LightGBM pred_contrib)")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, dest)


# ------------------------------------------------------------------------------------------------
# The tables behind the plots, and all plots of a model
# ------------------------------------------------------------------------------------------------
def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed positive rate per quantile bin of the predicted probability."""
    frame = pd.DataFrame({"p": p, "y": y})
    frame["bin"] = pd.qcut(frame["p"].rank(method="first"), q=min(bins, len(frame)), labels=False)
    grouped = frame.groupby("bin").agg(
        mean_predicted=("p", "mean"), observed_rate=("y", "mean"), rows=("y", "size")
    )
    return grouped.reset_index(drop=True).round(6)


def plot_tables(
    model: InferenceModel, y: np.ndarray, scores: np.ndarray
) -> dict[str, pd.DataFrame]:
    """Plot data as tables: ROC/PR/calibration curves, confusion pairs, residuals."""
    tables: dict[str, pd.DataFrame] = {}
    if model.task == "binary":
        fpr, tpr, _ = skm.roc_curve(y, scores)
        precision, recall, _ = skm.precision_recall_curve(y, scores)
        tables["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(6)
        tables["precision_recall"] = pd.DataFrame({"recall": recall, "precision": precision}).round(
            6
        )
        tables["calibration"] = calibration_table(y, scores)
    if model.task in ("binary", "multiclass"):
        classes = np.asarray(model.classes, dtype=object).astype(str)
        predicted = model.labels_from_scores(scores).astype(str)
        tables["confusion"] = pd.DataFrame({"actual": classes[y], "predicted": predicted})
    else:
        tables["residuals"] = pd.DataFrame(
            {"actual": y, "predicted": scores, "residual": y - scores}
        ).round(6)
    return tables


def write_plots(
    model: InferenceModel,
    y: np.ndarray,
    scores: np.ndarray,
    test: pd.DataFrame,
    metrics: dict[str, float],
    settings: Settings,
    dest: Path,
) -> dict[str, Any]:
    """All plot tables (CSV) and images (PNG) into `dest`; returns facts for the report."""
    ev = settings.evaluate
    tables = plot_tables(model, y, scores)
    importance = importance_table(model, test, y, settings.base.seed)
    tables["importance"] = importance
    shap_parts = shap_contributions(model, test, ev.shap_sample, settings.base.seed)
    if shap_parts is not None:
        tables["shap"] = shap_table(model, *shap_parts)
    for name, table in tables.items():
        write_csv(table, dest / f"{name}.csv")
    plot_performance(model, tables, y, metrics, dest)
    plot_importance(importance, ev.top_features, dest / "importance.png")
    top: list[str] = []
    if shap_parts is not None:
        contrib, X = shap_parts
        shap = tables["shap"]
        top = list(shap["feature"].head(ev.top_features))
        if contrib.ndim == 3:
            plot_shap_bars(
                shap.set_index("feature").head(ev.top_features), dest / "shap_summary.png"
            )
        else:
            plot_shap_summary(contrib, X, top, settings.base.seed, dest / "shap_summary.png")
    return {
        "top_features_gain": importance.head(ev.top_features).to_dict(orient="records"),
        "importance_kind": "gain" if model.lightgbm() is not None else "permutation",
        "top_features_shap": top,
        "shap_rows": 0 if shap_parts is None else len(shap_parts[1]),
    }


def plot_performance(
    model: InferenceModel,
    tables: dict[str, pd.DataFrame],
    y: np.ndarray,
    metrics: dict[str, float],
    dest: Path,
) -> None:
    """ROC, precision-recall, calibration and confusion (classification) or residuals."""
    classes = [str(c) for c in model.classes]
    if model.task == "binary":
        plot_roc(tables["roc"], metrics["roc_auc"], dest / "roc.png")
        plot_precision_recall(
            tables["precision_recall"],
            metrics["pr_auc"],
            float(np.mean(y)),
            dest / "precision_recall.png",
        )
        plot_calibration(tables["calibration"], dest / "calibration.png")
    if model.task in ("binary", "multiclass"):
        at = f" at threshold {model.threshold:.3f}" if model.task == "binary" else ""
        plot_confusion(
            tables["confusion"], classes, f"Confusion matrix (test{at})", dest / "confusion.png"
        )
    else:
        plot_residuals(tables["residuals"], dest / "residuals.png")
