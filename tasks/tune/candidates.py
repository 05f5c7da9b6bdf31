"""What model selection chooses between: the best LightGBM trials and the other learners, each
with its out-of-fold predictions in the same folds, and the recipe of what was chosen.

The recipe (`models/selection.json`) is what `train` fits: the members (kind, params, boosting
rounds), their weights, the decision threshold chosen on the blended out-of-fold predictions,
and the CV scores that justified the choice. It holds no timings, so it changes only when the
data, the params or the code change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from core.config import LgbmParams, Settings
from tasks.train import choose_threshold
from tasks.tune.cv import CVData, cross_validate
from tasks.tune.ensemble import Selection, blend, higher_is_better, select_ensemble
from tasks.tune.learners import (
    LearnerResult,
    best_of,
    cross_validate_learner,
    learner_name,
    learner_plan,
    refit_params,
)
from tasks.tune.search import CV_METRICS, patience

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One entry of the selection: a LightGBM trial or another learner."""

    name: str
    kind: str
    params: dict[str, Any]
    score: float
    oof: np.ndarray
    rounds: int | None = None  # LightGBM: the CV's best common round
    trial: int | None = None


def trial_name(trial: optuna.trial.FrozenTrial) -> str:
    """`trial 3 (autogluon_gbm)` for a portfolio trial, `trial 17` for a sampled one."""
    name = trial.user_attrs.get("portfolio")
    return f"trial {trial.number} ({name})" if name else f"trial {trial.number}"


def train_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params as LightGBM train params (bagging needs a positive frequency)."""
    out = dict(params)
    if "subsample" in out:
        out["subsample_freq"] = 1
    LgbmParams(**out)  # valid train params
    return out


def lightgbm_pool(
    trials: Sequence[optuna.trial.FrozenTrial],
    oofs: dict[int, np.ndarray],
    data: CVData,
    settings: Settings,
    threads: int,
) -> list[Candidate]:
    """The best `tune.ensemble.lightgbm_pool` complete trials (ties: lower number). A trial
    finished by an earlier, interrupted run has no out-of-fold predictions here: its CV is run
    again (deterministic, same result)."""
    tune = settings.tune
    done = [
        t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    sign = -1.0 if higher_is_better(data.task) else 1.0
    best = sorted(done, key=lambda t: (sign * float(t.value or 0.0), t.number))
    pool = []
    for t in best[: tune.ensemble.lightgbm_pool]:
        oof = oofs.get(t.number)
        if oof is None:
            lr = float(t.params.get("learning_rate", 0.1))
            oof = cross_validate(
                data,
                train_params(t.params),
                tune.max_rounds,
                patience(lr, tune.early_stopping_rounds),
                threads,
            ).oof
        pool.append(
            Candidate(
                trial_name(t),
                "lightgbm",
                train_params(t.params),
                float(t.value or 0.0),
                oof,
                rounds=int(t.user_attrs.get("rounds") or 0),
                trial=t.number,
            )
        )
    return pool


def learner_candidates(
    data: CVData, settings: Settings, threads: int, budget_s: float | None = None
) -> list[Candidate]:
    """The other learners (tune.learners), each at its best setting of a small, fixed grid.
    With a time budget they get at most half of it: past that, no further setting or learner
    starts (the first setting of the first learner always runs), and the study has the rest."""
    deadline = None if budget_s is None else time.perf_counter() + budget_s / 2
    out: list[Candidate] = []
    log_target = data.task == "regression" and bool(np.min(data.y) >= 0)
    for kind, grid in learner_plan(settings.tune.learners, data.task, len(data.y), log_target):
        results: list[LearnerResult] = []
        for params in grid:
            if deadline is not None and time.perf_counter() > deadline and (out or results):
                log.info("tune: %s %s skipped (half of tune.timeout_s spent)", kind, params or "")
                break
            results.append(cross_validate_learner(kind, params, data, threads))
        if not results:
            continue
        best = best_of(results, data.task)
        log.info("tune: %s %s: CV %.4f", kind, best.params or "(defaults)", best.score)
        name = learner_name(kind, best.params)
        out.append(Candidate(name, kind, refit_params(best), best.score, best.oof))
    return out


def choose(pool: Sequence[Candidate], data: CVData, settings: Settings) -> Selection:
    """Ensemble selection over the pool, best single first; the single best when ensembling is
    off or does not score better out of fold."""
    order = ranked(pool, data.task)
    preds = [pool[i].oof for i in order]
    if not settings.tune.ensemble.enabled or len(pool) == 1:
        score = pool[order[0]].score
        return Selection({order[0]: 1}, score, order[0], score)
    sel = select_ensemble(preds, data.y, data.task, settings.tune.ensemble.iterations)
    counts = {order[j]: c for j, c in sel.counts.items()}
    return Selection(counts, sel.score, order[sel.best_single], sel.best_single_score)


def ranked(pool: Sequence[Candidate], task: str) -> list[int]:
    """Indices of the pool, best CV score first (ties: pool order)."""
    sign = -1.0 if higher_is_better(task) else 1.0
    return sorted(range(len(pool)), key=lambda i: (sign * round(pool[i].score, 6), i))


def recipe(
    pool: Sequence[Candidate], selection: Selection, data: CVData, settings: Settings
) -> dict[str, Any]:
    """models/selection.json: the members `train` fits, their weights, the threshold and the
    CV scores behind the choice."""
    members = [pool[i] for i in sorted(selection.counts)]
    weights = selection.weights
    blended = blend([c.oof for c in pool], selection.counts)
    threshold = (
        choose_threshold(data.y, blended, settings.evaluate.threshold)
        if data.task == "binary"
        else None
    )
    best = pool[selection.best_single]
    return {
        "task": data.task,
        "cv_metric": CV_METRICS[data.task][0],
        "cv_rows": len(data.y),
        "cv_folds": len(data.folds),
        "members": [
            {
                "name": c.name,
                "kind": c.kind,
                "params": c.params,
                "rounds": c.rounds,
                "weight": round(weights[i], 6),
            }
            for i, c in zip(sorted(selection.counts), members)
        ],
        "threshold": None if threshold is None else round(threshold, 6),
        "cv": {
            "chosen": round(selection.score, 6),
            "best_single": {"name": best.name, "score": round(best.score, 6)},
            "candidates": {c.name: round(c.score, 6) for c in pool},
        },
        "winner": winner_name(members),
    }


def winner_name(members: Sequence[Candidate]) -> str:
    """`ensemble of 3 (lightgbm, linear (log target), extra_trees)`, or the single member's
    name."""
    if len(members) == 1:
        return members[0].name
    kinds = list(dict.fromkeys(m.kind if m.kind == "lightgbm" else m.name for m in members))
    return f"ensemble of {len(members)} ({', '.join(kinds)})"
