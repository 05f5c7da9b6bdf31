"""Pure decisions of the tune stage: the CV metric, the fidelity, the portfolio of LightGBM
settings the study starts from, the search space, early stopping and pruning, the threads per
trial, and which trial is best."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from core.config import (
    CATEGORICAL_PARAMS,
    LgbmParams,
    SearchRange,
    TuneRunnerSettings,
    TuneSettings,
    is_int_param,
)

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


# The study's first trials, in this order: LightGBM's defaults, then settings known to do well on
# tabular data, published as the zero-shot defaults of FLAML (flaml/default/lgbm) and AutoGluon
# (its default GBM, GBM-XT and GBM-Large, and the top GBM configs of its zero-shot portfolio).
# Faster settings (higher learning rates) come first, so a budget that covers only a few trials
# still gets the strong cheap ones. Each is read as a point of the search space: LightGBM's
# defaults for what it leaves out, clipped into the space's ranges (`portfolio_point`).
PORTFOLIO: tuple[tuple[str, dict[str, Any]], ...] = (
    ("lightgbm_defaults", {}),
    (
        "flaml_mc3",
        {
            "num_leaves": 16,
            "min_child_samples": 52,
            "learning_rate": 0.2423,
            "max_bin": 127,
            "colsample_bytree": 1.0,
            "reg_alpha": 0.0343,
            "reg_lambda": 0.0387,
        },
    ),
    (
        "flaml_mc1",
        {
            "num_leaves": 225,
            "min_child_samples": 21,
            "learning_rate": 0.1018,
            "max_bin": 31,
            "colsample_bytree": 0.6104,
            "reg_alpha": 0.001,
            "reg_lambda": 40.41,
        },
    ),
    ("autogluon_gbm", {"learning_rate": 0.05}),
    ("autogluon_gbm_xt", {"learning_rate": 0.05, "extra_trees": True}),
    (
        "flaml_bin2",
        {
            "num_leaves": 139,
            "min_child_samples": 8,
            "learning_rate": 0.0482,
            "max_bin": 511,
            "colsample_bytree": 0.5261,
            "reg_alpha": 0.0029,
            "reg_lambda": 0.0245,
        },
    ),
    (
        "autogluon_gbm_large",
        {"learning_rate": 0.03, "num_leaves": 128, "colsample_bytree": 0.9, "min_child_samples": 3},
    ),
    (
        "flaml_reg2",
        {
            "num_leaves": 42,
            "min_child_samples": 12,
            "learning_rate": 0.0217,
            "max_bin": 127,
            "colsample_bytree": 0.7385,
            "reg_alpha": 0.0036,
            "reg_lambda": 12.08,
        },
    ),
    (
        "autogluon_r177",
        {
            "subsample": 0.8769,
            "subsample_freq": 1,
            "cat_l2": 0.3418,
            "cat_smooth": 15.43,
            "extra_trees": True,
            "colsample_bytree": 0.4622,
            "reg_alpha": 0.2375,
            "reg_lambda": 0.3552,
            "learning_rate": 0.0179,
            "max_cat_to_onehot": 16,
            "min_child_samples": 3,
            "min_data_per_group": 9,
            "num_leaves": 39,
        },
    ),
    (
        "autogluon_r33",
        {
            "subsample": 0.9625,
            "subsample_freq": 1,
            "cat_l2": 0.1237,
            "cat_smooth": 68.86,
            "colsample_bytree": 0.6189,
            "reg_alpha": 0.1642,
            "reg_lambda": 0.6938,
            "learning_rate": 0.0154,
            "max_cat_to_onehot": 17,
            "min_child_samples": 1,
            "min_data_per_group": 30,
            "num_leaves": 68,
        },
    ),
    (
        "autogluon_r163",
        {
            "subsample": 0.9784,
            "subsample_freq": 1,
            "cat_l2": 0.1553,
            "cat_smooth": 0.0093,
            "colsample_bytree": 0.528,
            "reg_alpha": 0.0269,
            "reg_lambda": 0.8375,
            "learning_rate": 0.0114,
            "max_cat_to_onehot": 42,
            "min_child_samples": 3,
            "min_data_per_group": 75,
            "num_leaves": 84,
        },
    ),
)


def searched(space: dict[str, SearchRange], has_categorical: bool) -> dict[str, SearchRange]:
    """The parameters a study searches: the categorical-split ones only when there are
    categorical columns."""
    return {k: v for k, v in space.items() if has_categorical or k not in CATEGORICAL_PARAMS}


def portfolio_point(config: dict[str, Any], space: dict[str, SearchRange]) -> dict[str, Any]:
    """A portfolio setting as a point of the search space (so the sampler learns from it):
    LightGBM's defaults for what it leaves out, numbers clipped into the ranges (a zero
    regularisation becomes the range's lowest value), choices snapped to the nearest."""
    defaults = LgbmParams().model_dump()
    point: dict[str, Any] = {}
    for name, rng in space.items():
        value = config.get(name, defaults[name])
        if rng.choices is not None:
            point[name] = min(rng.choices, key=lambda c: (abs(float(c) - float(value)), str(c)))
            continue
        assert rng.low is not None and rng.high is not None
        value = min(max(float(value), rng.low), rng.high)
        point[name] = round(value) if is_int_param(name) else value
    return point


def suggest_params(trial: optuna.trial.BaseTrial, space: dict[str, SearchRange]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, rng in space.items():
        if rng.choices is not None:
            params[name] = trial.suggest_categorical(name, list(rng.choices))
        elif is_int_param(name):
            assert rng.low is not None and rng.high is not None
            params[name] = trial.suggest_int(name, int(rng.low), int(rng.high), log=rng.log)
        else:
            assert rng.low is not None and rng.high is not None
            params[name] = trial.suggest_float(name, rng.low, rng.high, log=rng.log)
    if "subsample" in params:
        params["subsample_freq"] = 1  # bagging only happens with a positive frequency
    return params


def patience(learning_rate: float, floor: int) -> int:
    """Early-stopping patience in rounds: about 2.5 units of learning rate x rounds (50 rounds
    at 0.05), at least `floor`, at most 300; a fixed count would stop slow learners too soon."""
    return int(min(300, max(floor, round(2.5 / learning_rate))))


def learning_step(rounds: int, learning_rate: float) -> int:
    """Pruning steps count shrinkage-weighted boosting (learning rate x rounds / 0.25), so trials
    with different learning rates are compared after the same amount of learning, not the same
    round count (which is biased against low learning rates)."""
    return int(rounds * learning_rate / 0.25)


def startup_trials(tune: TuneSettings) -> int:
    """Trials never pruned: the portfolio (or LightGBM's defaults alone), plus one."""
    return (len(PORTFOLIO) if tune.portfolio else 1) + 1


def make_pruner(tune: TuneSettings, startup_trials: int) -> optuna.pruners.BasePruner:
    """`startup_trials`: trials that are never pruned (the portfolio, plus one)."""
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=8)
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
