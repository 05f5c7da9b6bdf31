"""train: fit what model selection chose, twice: the model that is evaluated and the one that
ships.

- The evaluation model learns from the train split only: evaluate scores it on the test split,
  compress shrinks it and measures the drop on the valid split, and the promotion gate compares
  it with the champion's evaluation model on the test split. None of them saw those rows.
- The shipped model learns from every labelled row (train, valid and test splits) with the same
  members, settings and weights: it is what the registry serves. Rows keep their split when new
  rows are appended (tasks/preprocess.py assign_splits), so a later test split holds no row an
  earlier evaluation model learned from.

Members are refit with the CV-chosen settings: LightGBM with the CV's best round count scaled
by k/(k-1) (a refit sees k/(k-1) times a fold's rows), histogram boosting with its folds' mean
iteration count. The binary decision threshold was chosen on the blended out-of-fold
predictions (tasks/tune); `choose_threshold` below is that decision.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from prefect import task
from sklearn.pipeline import Pipeline

from adapters.tracking import RunContext, log_to_run
from core.config import Settings, ThresholdSettings
from core.errors import DataError
from core.io import ArtifactPaths, dump_joblib, load_joblib, read_json, read_parquet, write_json
from inference.ensemble import Member, WeightedEnsemble
from inference.model import InferenceModel, encode_target
from tasks.features import balanced_weights, model_input_categoricals, oversample_indices
from tasks.preprocess import SPLITS, feature_frame
from tasks.tune.cv import CVData
from tasks.tune.learners import make_learner

log = logging.getLogger(__name__)

OBJECTIVES = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}


def make_estimator(
    task: str, params: dict[str, Any], rounds: int, seed: int, n_jobs: int
) -> lgb.LGBMModel:
    """An unfitted LightGBM estimator (scikit-learn API) with these params and round count."""
    own = {k: v for k, v in params.items() if k != "categorical_native"}
    settings: dict[str, Any] = {
        **own,
        "n_estimators": rounds,
        "objective": OBJECTIVES[task],
        "random_state": seed,
        "n_jobs": n_jobs,
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    return cls(**settings)


def refit_rounds(rounds: int, folds: int) -> int:
    """Boosting rounds for a refit on all CV rows: the CV's best round x k/(k-1)."""
    return max(1, math.ceil(rounds * folds / max(1, folds - 1)))


def fit_lightgbm(
    member: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    settings: Settings,
    folds: int,
) -> Any:
    params = member["params"]
    native = bool(params.get("categorical_native", True))
    est = make_estimator(
        settings.data.task,
        params,
        refit_rounds(int(member["rounds"]), folds),
        settings.base.seed,
        settings.train.n_jobs,
    )
    weight = None
    if settings.data.task != "regression" and settings.features.imbalance == "class_weight":
        weight = balanced_weights(y)
    return est.fit(
        X, y, sample_weight=weight, categorical_feature=(categorical if native else []) or "auto"
    )


def fit_member(
    member: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    settings: Settings,
    folds: int,
    num_class: int,
) -> Any:
    """One member of the selection, fitted on these model-input rows."""
    if member["kind"] == "lightgbm":
        return fit_lightgbm(member, X, y, categorical, settings, folds)
    shape = CVData(
        X,
        y,
        [],
        categorical,
        settings.data.task,
        num_class,
        settings.features.imbalance,
        settings.base.seed,
    )
    return make_learner(member["kind"], member["params"], shape, settings.train.n_jobs).fit(X, y)


def fit_selection(
    selection: dict[str, Any],
    rows: pd.DataFrame,
    model_input: Pipeline,
    settings: Settings,
    classes: list[Any],
    role: str,
) -> InferenceModel:
    """The selection's members fitted on `rows` behind the fitted preprocessing + features, as
    one InferenceModel (raw rows in); a single member is the estimator itself."""
    data = settings.data
    y, _ = encode_target(rows[data.target], data.task, classes=classes or None)
    X_raw = feature_frame(rows, data.target)
    X = model_input.transform(X_raw)
    if data.task != "regression" and settings.features.imbalance == "oversample":
        keep = oversample_indices(y, settings.base.seed)
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    categorical = model_input_categoricals(model_input)
    folds = int(selection["cv_folds"])
    fitted = [
        (m, fit_member(m, X, y, categorical, settings, folds, len(classes)))
        for m in selection["members"]
    ]
    if len(fitted) == 1:
        estimator = fitted[0][1]
    else:
        estimator = WeightedEnsemble(
            [Member(m["kind"], m["name"], est, float(m["weight"])) for m, est in fitted],
            data.task,
            len(classes),
        )
    return InferenceModel(
        pipeline=Pipeline([("preprocess", model_input), ("model", estimator)]),
        task=data.task,
        target=data.target,
        feature_columns=list(X_raw.columns),
        feature_dtypes={c: str(t) for c, t in X_raw.dtypes.items()},
        classes=classes,
        threshold=float(selection.get("threshold") or 0.5),
        metadata={"role": role, "rows": len(rows), "winner": selection["winner"]},
    )


def all_classes(frames: dict[str, pd.DataFrame], settings: Settings) -> list[Any]:
    """The class labels of every labelled row, positive label last for binary; a class with no
    row in the train split cannot be learned and evaluated honestly, so it is an error."""
    data = settings.data
    if data.task == "regression":
        return []
    both = pd.concat([f[data.target] for f in frames.values()], ignore_index=True)
    _, classes = encode_target(both, data.task, positive_label=data.positive_label)
    missing = sorted({str(c) for c in classes} - set(frames["train"][data.target].astype(str)))
    if missing:
        raise DataError(
            f"class(es) {missing} of {data.target!r} have no row in the train split; "
            "add labelled rows of them or lower split.test_size / split.valid_size"
        )
    return classes


# ------------------------------------------------------------------------------------------------
# The decision threshold (pure: scores and labels in, one threshold out)
# ------------------------------------------------------------------------------------------------
def threshold_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct cut: (thresholds, true positives, false positives) for `p >= threshold`.

    The first cut is above every score (nothing positive); the threshold of a cut is the midpoint
    between the lowest score it calls positive and the next lower score, so unseen scores between
    two valid-split scores are labelled like their nearer side.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    distinct = np.r_[np.diff(p_sorted) != 0, True]  # last row of each tie group
    tp = np.cumsum(y_sorted)[distinct]
    fp = np.cumsum(1 - y_sorted)[distinct]
    cut_scores = p_sorted[distinct]  # descending
    lower = np.r_[cut_scores[1:], 0.0]  # next score below each cut
    thresholds = (cut_scores + lower) / 2
    top = np.nextafter(cut_scores[0], np.inf)  # above every score: none positive
    return np.r_[top, thresholds], np.r_[0, tp], np.r_[0, fp]


def choose_threshold(y: np.ndarray, p: np.ndarray, settings: ThresholdSettings) -> float:
    """F1-optimal threshold, or the one with minimum expected cost under the cost matrix."""
    y = np.asarray(y, dtype=int)
    if len(y) == 0 or y.min() == y.max():
        return 0.5  # one class only on valid: nothing to learn, keep the neutral default
    thresholds, tp, fp = threshold_curve(y, p)
    pos, n = int(y.sum()), len(y)
    fn, tn = pos - tp, (n - pos) - fp
    if settings.objective == "f1":
        with np.errstate(divide="ignore", invalid="ignore"):
            objective = -np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    else:
        objective = (
            settings.cost_fp * fp
            + settings.cost_fn * fn
            + settings.cost_tp * tp
            + settings.cost_tn * tn
        ) / n
    best = int(np.argmin(objective))  # ties: the first, i.e. the highest threshold
    return float(thresholds[best])


def expected_cost(
    y: np.ndarray, p: np.ndarray, threshold: float, settings: ThresholdSettings
) -> float:
    """Average cost per row of labelling `p >= threshold` positive (for reports and tests)."""
    y = np.asarray(y, dtype=int)
    pred = np.asarray(p) >= threshold
    tp = np.sum(pred & (y == 1))
    fp = np.sum(pred & (y == 0))
    fn = np.sum(~pred & (y == 1))
    tn = np.sum(~pred & (y == 0))
    return float(
        (
            settings.cost_fp * fp
            + settings.cost_fn * fn
            + settings.cost_tp * tp
            + settings.cost_tn * tn
        )
        / len(y)
    )


def tune_model_threshold(
    model: InferenceModel, valid: pd.DataFrame, settings: Settings, scores: np.ndarray | None = None
) -> float | None:
    """Set `model.threshold` from the valid split (binary only); returns it, or None.
    `scores`: the model's valid-split scores when the caller already has them."""
    if model.task != "binary":
        return None
    y, _ = encode_target(valid[settings.data.target], model.task, classes=model.classes)
    scores = model.predict_scores(valid) if scores is None else scores
    model.threshold = choose_threshold(y, scores, settings.evaluate.threshold)
    return model.threshold


@task(name="train")
def train_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    frames = {name: read_parquet(paths.split(name)) for name in SPLITS}
    model_input = load_joblib(paths.features_model)  # preprocessing + features (raw rows in)
    selection = read_json(paths.selection)
    classes = all_classes(frames, settings)
    twin = fit_selection(selection, frames["train"], model_input, settings, classes, "evaluation")
    everything = pd.concat(list(frames.values()), ignore_index=True)
    shipped = fit_selection(selection, everything, model_input, settings, classes, "shipped")
    dump_joblib(twin, paths.evaluation_model)
    dump_joblib(shipped, paths.model)
    summary: dict[str, Any] = {
        "winner": selection["winner"],
        "members": {m["name"]: m["weight"] for m in selection["members"]},
        "evaluation_model_rows": len(frames["train"]),
        "shipped_model_rows": len(everything),
    }
    if selection.get("threshold") is not None:
        summary["threshold"] = selection["threshold"]
    write_json(summary, paths.train_metrics)
    log.info(
        "train: %s; evaluation model on %d train rows, shipped model on all %d labelled rows",
        selection["winner"],
        len(frames["train"]),
        len(everything),
    )
    log_to_run(
        ctx,
        metrics={k: v for k, v in summary.items() if isinstance(v, int | float)},
        params={"train.winner": selection["winner"]},
    )
    return paths.model
