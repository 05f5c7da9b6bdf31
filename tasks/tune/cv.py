"""Cross-validation of one LightGBM parameter set, keeping its out-of-fold predictions.

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

from core.config import Settings
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


def lightgbm_params(params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(LightGBM's own params, whether categorical columns go in as categorical)."""
    out = dict(params)
    return out, bool(out.pop("categorical_native", True))


def lgb_params(params: dict[str, Any], data: CVData, threads: int) -> dict[str, Any]:
    _, metric, _ = CV_METRICS[data.task]
    out: dict[str, Any] = {
        **lightgbm_params(params)[0],
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


def _cv_dataset(
    data: CVData, native: bool = True
) -> tuple[lgb.Dataset, list[tuple[np.ndarray, np.ndarray]]]:
    """The CV dataset and folds; with oversampling, each fold's training part gets its own
    resampled copies (appended rows), so validation rows are never duplicated or leaked.
    `native`: the categorical columns split as categories, else as numbers (their codes)."""
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
        X,
        y,
        weight=weight,
        categorical_feature=(data.categorical if native else []) or "auto",
        free_raw_data=False,
    )
    return dataset, folds


@dataclass
class CVResult:
    """A parameter set's CV: mean and std of the fold metric at the best common round, that
    round, and the out-of-fold predictions there (what ensemble selection works on)."""

    mean: float
    std: float
    rounds: int
    oof: np.ndarray


def oof_shape(data: CVData) -> tuple[int, ...]:
    return (len(data.y), data.num_class) if data.task == "multiclass" else (len(data.y),)


def cross_validate(
    data: CVData,
    params: dict[str, Any],
    max_rounds: int,
    early_stopping: int,
    threads: int,
    report: Callable[[int, float], bool] | None = None,
    report_every: int = 10,
) -> CVResult:
    """k-fold CV in lock-step (`lgb.cv`), early stopping on the mean fold metric.
    `report(round, value)` is called every `report_every` rounds; when it returns True the trial
    is pruned (optuna.TrialPruned)."""
    _, metric, _ = CV_METRICS[data.task]
    dataset, folds = _cv_dataset(data, lightgbm_params(params)[1])
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
        return_cvbooster=True,
    )
    means: list[float] = result[f"valid {metric}-mean"]  # type: ignore[assignment]
    stds: list[float] = result[f"valid {metric}-stdv"]  # type: ignore[assignment]
    rounds = len(means)
    oof = np.zeros(oof_shape(data))
    boosters = result["cvbooster"].boosters  # type: ignore[union-attr]
    for (_, held_out), booster in zip(data.folds, boosters):
        oof[held_out] = booster.predict(data.X.iloc[held_out], num_iteration=rounds)
    return CVResult(float(means[-1]), float(stds[-1]), rounds, oof)
