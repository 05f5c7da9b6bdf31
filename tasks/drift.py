"""drift: how the newly labelled data (retrain.incoming) differs from the training split.

Population stability index per feature and for the model's score:
    PSI = sum over bins of (new% - ref%) * ln(new% / ref%)
Numeric columns use the reference's quantile bins (`retrain.drift_bins`), categorical columns their
levels; a missing value is a bin of its own, and a level never seen in the reference lands in an
"unseen" bin. Shares are floored at 1e-4 so an empty bin does not make the index infinite.
Features above `retrain.drift_threshold` are flagged (0.1-0.25 is commonly read as "moderate",
above 0.25 as "large" shift). Report: reports/drift.json, logged to the MLflow run.
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
from core.io import ArtifactPaths, load_joblib, read_parquet, write_json

log = logging.getLogger(__name__)

FLOOR = 1e-4
MISSING, UNSEEN = "__missing__", "__unseen__"


def _psi(ref: np.ndarray, new: np.ndarray) -> float:
    ref = np.maximum(ref / max(ref.sum(), 1), FLOOR)
    new = np.maximum(new / max(new.sum(), 1), FLOOR)
    return float(np.sum((new - ref) * np.log(new / ref)))


def numeric_psi(ref: pd.Series, new: pd.Series, bins: int) -> float:
    r = pd.to_numeric(ref, errors="coerce").to_numpy(dtype=float)
    n = pd.to_numeric(new, errors="coerce").to_numpy(dtype=float)
    finite = r[np.isfinite(r)]
    edges = (
        np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1))) if len(finite) else np.empty(0)
    )
    inner = np.asarray(edges[1:-1], dtype=float)

    def counts(x: np.ndarray) -> np.ndarray:
        ok = np.isfinite(x)
        binned = np.bincount(
            np.searchsorted(inner, x[ok], side="right"), minlength=len(inner) + 1
        ).astype(float)
        return np.append(binned, float((~ok).sum()))

    return _psi(counts(r), counts(n))


def categorical_psi(ref: pd.Series, new: pd.Series) -> float:
    r = ref.astype("object").where(ref.notna(), MISSING).astype(str)
    n = new.astype("object").where(new.notna(), MISSING).astype(str)
    levels = sorted(set(r))
    n = n.where(n.isin(levels), UNSEEN)
    order = [*levels, UNSEEN]
    return _psi(
        r.value_counts().reindex(order, fill_value=0).to_numpy(dtype=float),
        n.value_counts().reindex(order, fill_value=0).to_numpy(dtype=float),
    )


def score_values(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """One number per row: P(positive), the top class probability, or the predicted value."""
    scores = np.asarray(model.predict_scores(rows), dtype=float)
    return scores.max(axis=1) if scores.ndim == 2 else scores


def drift_report(
    reference: pd.DataFrame,
    new: pd.DataFrame,
    features: list[str],
    threshold: float,
    bins: int,
    model: Any | None = None,
) -> dict[str, Any]:
    """PSI of each feature and of the model score; flags those above threshold."""
    per_feature: dict[str, dict[str, Any]] = {}
    for col in features:
        if col not in new.columns:
            continue
        numeric = pd.api.types.is_numeric_dtype(reference[col]) and not pd.api.types.is_bool_dtype(
            reference[col]
        )
        value = (
            numeric_psi(reference[col], new[col], bins)
            if numeric
            else categorical_psi(reference[col], new[col])
        )
        per_feature[col] = {
            "kind": "numeric" if numeric else "categorical",
            "psi": round(value, 6),
            "flagged": value > threshold,
        }
    report: dict[str, Any] = {
        "reference_rows": len(reference),
        "new_rows": len(new),
        "threshold": threshold,
        "bins": bins,
        "features": per_feature,
        "flagged": sorted(c for c, v in per_feature.items() if v["flagged"]),
    }
    if model is not None and len(new):
        psi = numeric_psi(
            pd.Series(score_values(model, reference)), pd.Series(score_values(model, new)), bins
        )
        report["score"] = {"psi": round(psi, 6), "flagged": psi > threshold}
    return report


@task(name="drift")
def drift_stage(settings: Settings, ctx: RunContext) -> Path:
    from tasks.ingest import normalise_frame, read_labelled

    paths = ArtifactPaths(settings.root)
    cfg = settings.retrain
    reference = read_parquet(paths.split("train"))
    files = read_labelled(settings)
    model = load_joblib(paths.model)
    features = list(model.feature_columns)
    if files:
        new = pd.concat([normalise_frame(f, settings.data) for _, f in files], ignore_index=True)
        report = drift_report(reference, new, features, cfg.drift_threshold, cfg.drift_bins, model)
    else:
        report = drift_report(
            reference, reference.iloc[:0], [], cfg.drift_threshold, cfg.drift_bins
        )
    report["reference"] = str(paths.split("train").relative_to(settings.root))
    report["new_files"] = [
        str(p.relative_to(settings.root) if p.is_relative_to(settings.root) else p)
        for p, _ in files
    ]
    write_json(report, paths.drift_report)
    if not files:
        log.info("drift: no labelled files in %s; nothing to compare", cfg.incoming)
    elif report["flagged"] or report.get("score", {}).get("flagged"):
        log.warning(
            "drift: %d new rows vs training split: PSI above %.2f for %s%s",
            report["new_rows"],
            cfg.drift_threshold,
            ", ".join(report["flagged"]) or "-",
            f"; score PSI {report['score']['psi']:.3f}" if report.get("score") else "",
        )
    else:
        log.info(
            "drift: %d new rows vs training split: no feature above PSI %.2f (score PSI %.3f)",
            report["new_rows"],
            cfg.drift_threshold,
            report["score"]["psi"],
        )
    metrics = {"drift_new_rows": report["new_rows"], "drift_flagged": len(report["flagged"])}
    if report["features"]:
        metrics["drift_max_psi"] = max(v["psi"] for v in report["features"].values())
    if "score" in report:
        metrics["drift_score_psi"] = report["score"]["psi"]
    log_to_run(ctx, metrics=metrics, artifacts=[paths.drift_report], artifact_dir="drift")
    return paths.drift_report
