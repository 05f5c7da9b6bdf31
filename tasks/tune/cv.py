"""Cross-validation of one LightGBM parameter set, and the baselines scored in the same folds.

Runs inside a trial worker: a CVData carries everything a trial needs (the model input of the
possibly subsampled train split and the folds), so workers never read files or the study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from core.config import Settings, TuneSettings
from tasks.features import balanced_weights, oversample_indices
from tasks.preprocess import sample_positions
from tasks.tune.search import CV_METRICS, Fidelity


@dataclass
class CVData:
    """What every trial needs: the model input of the (possibly subsampled) train split."""

    X: pd.DataFrame
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    categorical: list[str]
    task: str
    num_class: int
    imbalance: str
    seed: int


def cv_data(
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    settings: Settings,
    fidelity: Fidelity,
    num_class: int,
) -> CVData:
    seed = settings.base.seed
    task_type = settings.data.task
    if fidelity.rows < len(y):
        keep = sample_positions(y, fidelity.rows, seed, stratify=task_type != "regression")
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    folds = make_folds(y, task_type, fidelity.n_folds, seed)
    return CVData(
        X.reset_index(drop=True),
        y,
        folds,
        categorical,
        task_type,
        num_class,
        settings.features.imbalance,
        seed,
    )


def make_folds(
    y: np.ndarray, task_type: str, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = (
        KFold(n_folds, shuffle=True, random_state=seed)
        if task_type == "regression"
        else StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    )
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y)]


def lgb_params(params: dict[str, Any], data: CVData, threads: int) -> dict[str, Any]:
    _, metric, _ = CV_METRICS[data.task]
    out: dict[str, Any] = {
        **params,
        "objective": data.task,
        "metric": metric,
        "seed": data.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
        "num_threads": threads,
        "feature_pre_filter": False,
    }
    if data.task == "multiclass":
        out["num_class"] = data.num_class
    if data.task == "binary" and data.imbalance == "class_weight":
        out["scale_pos_weight"] = float((data.y == 0).sum() / max(1, (data.y == 1).sum()))
    return out


def _cv_dataset(data: CVData) -> tuple[lgb.Dataset, list[tuple[np.ndarray, np.ndarray]]]:
    """The CV dataset and folds; with oversampling, each fold's training part gets its own
    resampled copies (appended rows), so validation rows are never duplicated or leaked."""
    X, y, folds = data.X, data.y, data.folds
    weight = None
    if data.task == "multiclass" and data.imbalance == "class_weight":
        weight = balanced_weights(y)
    if data.task != "regression" and data.imbalance == "oversample":
        parts_X, parts_y, new_folds, offset = [X], [y], [], len(y)
        for k, (tr, te) in enumerate(folds):
            idx = oversample_indices(y[tr], data.seed + k)[len(tr) :]
            extra = tr[idx]
            parts_X.append(X.iloc[extra])
            parts_y.append(y[extra])
            new_folds.append((np.concatenate([tr, np.arange(offset, offset + len(extra))]), te))
            offset += len(extra)
        X = pd.concat(parts_X, ignore_index=True)
        y = np.concatenate(parts_y)
        folds = new_folds
    dataset = lgb.Dataset(
        X, y, weight=weight, categorical_feature=data.categorical or "auto", free_raw_data=False
    )
    return dataset, folds


def cross_validate(
    data: CVData,
    params: dict[str, Any],
    max_rounds: int,
    early_stopping: int,
    threads: int,
    report: Callable[[int, float], bool] | None = None,
    report_every: int = 10,
) -> tuple[float, float, int]:
    """Mean and std of the CV metric at the best round, and that round. `report(step, value)`
    is called every `report_every` rounds; when it returns True the trial is pruned."""
    _, metric, _ = CV_METRICS[data.task]
    dataset, folds = _cv_dataset(data)
    callbacks: list[Any] = [lgb.early_stopping(early_stopping, verbose=False)]
    if report is not None:

        def _report(env: Any) -> None:
            step = env.iteration + 1
            if step % report_every:
                return
            value = next(item[2] for item in env.evaluation_result_list if item[1] == metric)
            if report(step, float(value)):
                raise optuna.TrialPruned(f"pruned at round {step}")

        _report.order = 40  # type: ignore[attr-defined]  # after early stopping (30)
        callbacks.append(_report)
    result = lgb.cv(
        lgb_params(params, data, threads),
        dataset,
        num_boost_round=max_rounds,
        folds=folds,
        callbacks=callbacks,
    )
    means: list[float] = result[f"valid {metric}-mean"]  # type: ignore[assignment]
    stds: list[float] = result[f"valid {metric}-stdv"]  # type: ignore[assignment]
    return float(means[-1]), float(stds[-1]), len(means)


# ------------------------------------------------------------------------------------------------
# Baselines in the same CV
# ------------------------------------------------------------------------------------------------
def linear_baseline(data: CVData) -> tuple[float, float]:
    """Regularised linear model (L2 logistic / ridge) on one-hot + standardised features."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in data.X.columns if c not in data.categorical]
    columns = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
                ),
                numeric,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                data.categorical,
            ),
        ]
    )
    model = (
        Ridge(alpha=1.0)
        if data.task == "regression"
        else LogisticRegression(
            C=1.0,
            max_iter=2000,
            class_weight="balanced" if data.imbalance == "class_weight" else None,
        )
    )
    scores = []
    for tr, te in data.folds:
        fitted = make_pipeline(columns, model).fit(data.X.iloc[tr], data.y[tr])
        pred = (
            fitted.predict(data.X.iloc[te])
            if data.task == "regression"
            else fitted.predict_proba(data.X.iloc[te])
        )
        scores.append(score(data.task, data.y[te], pred, data.num_class))
    return float(np.mean(scores)), float(np.std(scores))


def score(task_type: str, y: np.ndarray, pred: np.ndarray, num_class: int) -> float:
    from sklearn import metrics as skm

    if task_type == "binary":
        return float(skm.roc_auc_score(y, pred[:, 1]))
    if task_type == "multiclass":
        return float(skm.log_loss(y, pred, labels=list(range(num_class))))
    return float(np.sqrt(skm.mean_squared_error(y, pred)))


def baselines(data: CVData, tune: TuneSettings, threads: int) -> dict[str, dict[str, float]]:
    mean, std, rounds = cross_validate(
        data, {}, tune.max_rounds, tune.early_stopping_rounds, threads
    )
    lin_mean, lin_std = linear_baseline(data)
    return {
        "lightgbm_default": {"mean": round(mean, 6), "std": round(std, 6), "rounds": rounds},
        "linear": {"mean": round(lin_mean, 6), "std": round(lin_std, 6)},
    }
