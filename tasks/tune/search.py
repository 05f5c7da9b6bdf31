"""Pure decisions of the tune stage: the CV metric, the fidelity, the search space, the pruner,
the threads per trial, and which trial is best."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from core.config import TuneRunnerSettings, TuneSettings, is_int_param

# The CV metric per task: (name in reports, LightGBM metric, direction).
CV_METRICS: dict[str, tuple[str, str, str]] = {
    "binary": ("roc_auc", "auc", "maximize"),
    "multiclass": ("log_loss", "multi_logloss", "minimize"),
    "regression": ("rmse", "rmse", "minimize"),
}

INTERRUPTED = "interrupted: the process ended before the trial finished"


@dataclass(frozen=True)
class Fidelity:
    level: str  # "full" or "reduced"
    rows: int  # train rows the CV uses
    total_rows: int  # rows of the train split
    n_folds: int
    reason: str


def choose_fidelity(n_rows: int, tune: TuneSettings) -> Fidelity:
    """Full CV on every train row, or (above tune.large_data.rows) a row subsample and fewer
    folds. The final model is always trained on the whole train split."""
    big = tune.large_data
    if n_rows <= big.rows:
        return Fidelity(
            "full",
            n_rows,
            n_rows,
            tune.n_folds,
            f"{n_rows} train rows <= tune.large_data.rows ({big.rows})",
        )
    return Fidelity(
        "reduced",
        min(n_rows, big.subsample_rows),
        n_rows,
        min(tune.n_folds, big.n_folds),
        f"{n_rows} train rows > tune.large_data.rows ({big.rows}): "
        f"{min(n_rows, big.subsample_rows)}-row subsample, "
        f"{min(tune.n_folds, big.n_folds)} folds",
    )


def select_best_trial(
    trials: Sequence[optuna.trial.FrozenTrial], direction: str
) -> optuna.trial.FrozenTrial | None:
    """The best complete trial; equal scores go to the lower trial number (deterministic)."""
    done = [
        t
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.value is not None
        and math.isfinite(t.value)
    ]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * float(t.value or 0.0), t.number))


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count; running ones and those interrupted by a kill do not."""
    if trial.state == optuna.trial.TrialState.FAIL:
        return trial.user_attrs.get("error") != INTERRUPTED
    return trial.state.is_finished()


def suggest_params(trial: optuna.trial.BaseTrial, space: TuneSettings) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, rng in space.search_space.items():
        if is_int_param(name):
            params[name] = trial.suggest_int(name, int(rng.low), int(rng.high), log=rng.log)
        else:
            params[name] = trial.suggest_float(name, rng.low, rng.high, log=rng.log)
    if "subsample" in params:
        params["subsample_freq"] = 1  # bagging only happens with a positive frequency
    return params


def make_pruner(tune: TuneSettings) -> optuna.pruners.BasePruner:
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=tune.min_resource,
            max_resource=tune.max_rounds,
            reduction_factor=tune.reduction_factor,
        )
    if tune.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=tune.min_resource, reduction_factor=tune.reduction_factor
        )
    return optuna.pruners.NopPruner()


def threads_per_trial(runner: TuneRunnerSettings, cores: int | None = None) -> int:
    """LightGBM threads per trial so that workers x threads never exceeds the cores."""
    cores = cores or os.cpu_count() or 1
    if runner.threads_per_trial:
        return runner.threads_per_trial
    return max(1, cores // runner.workers)
