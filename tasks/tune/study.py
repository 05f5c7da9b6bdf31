"""The Optuna study behind the tune stage: trials asked here, run as Prefect tasks, told back.

How a study runs (`run_study`): the parent process keeps a window of `workers + queued` trials
in flight. It asks Optuna's seeded TPE sampler for a trial, submits it as a Prefect task
(`tune-trial`) to the configured task runner (processes by default, or threads, or Dask), and
when the window is full waits for the *oldest* trial and tells its result back, then asks the
next. There is no batch barrier: a worker that finishes early takes a queued trial while its
slow sibling runs on. A trial runs LightGBM's `lgb.cv` (folds in lock-step) and reports the
mean CV metric every `tune.report_every` rounds to a Hyperband / successive-halving pruner.

Determinism: trial n is asked when exactly trials 0 .. n - window have been told (the others are
still running for the sampler, with constant-liar TPE), and its pruning decisions are made
inside the worker against that same snapshot, never against trials still running. So a study
depends on the window, not on timing, and a worker needs no access to the study's storage
(which also makes remote Dask workers work). The study itself lives in an Optuna journal file
under `models/tuning/` (a DVC `persist: true` output): kill the process, rerun, and the
finished trials are kept; the trials that were running are recorded failed ("interrupted"),
queued again, and the study continues to its budget.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from adapters.prefect import task_runner
from core.config import Settings, TuneRunnerSettings, TuneSettings
from core.errors import PipelineError
from tasks.tune.cv import CVData, cross_validate
from tasks.tune.ensemble import oof_score
from tasks.tune.search import (
    INTERRUPTED,
    PORTFOLIO,
    Fidelity,
    counts_toward_budget,
    learning_step,
    make_pruner,
    patience,
    portfolio_point,
    searched,
    select_best_trial,
    startup_trials,
    suggest_params,
)

log = logging.getLogger(__name__)


class TuningError(PipelineError):
    """Every trial failed (the message carries the first error)."""


# ------------------------------------------------------------------------------------------------
# One trial as a Prefect task
# ------------------------------------------------------------------------------------------------
@dataclass
class TrialSpec:
    number: int
    params: dict[str, Any]
    study_name: str
    direction: str
    tune: TuneSettings
    threads: int
    # Trials told before this one was asked (placeholders for those still running), for pruning.
    history: list[optuna.trial.FrozenTrial] = field(default_factory=list)


@dataclass
class TrialOutcome:
    number: int
    state: str  # complete | pruned | failed
    value: float | None = None
    std: float | None = None
    rounds: int | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    pruner_attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    oof: np.ndarray | None = None  # out-of-fold predictions of a complete trial


def _pruning_study(spec: TrialSpec) -> tuple[optuna.Study, optuna.Trial]:
    """An in-memory study holding the earlier trials, so the pruner decides like the real one
    would (same study name and trial numbers, hence the same Hyperband brackets)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=spec.study_name,
        direction=optuna.study.StudyDirection[spec.direction.upper()],
        pruner=make_pruner(spec.tune, startup_trials(spec.tune)),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.add_trials(spec.history)
    gap = spec.number - len(spec.history)  # trials the snapshot does not carry: placeholders
    study.add_trials([optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)] * max(0, gap))
    trial = study.ask()
    if trial.number != spec.number:
        raise RuntimeError(f"trial numbering mismatch: {trial.number} != {spec.number}")
    return study, trial


def run_trial(spec: TrialSpec, data: CVData) -> TrialOutcome:
    """Cross-validate one parameter set, pruning against earlier trials. Raises on failure."""
    started = time.perf_counter()
    study, trial = _pruning_study(spec)
    intermediate: dict[int, float] = {}
    tune = spec.tune
    lr = float(spec.params.get("learning_rate", 0.1))
    last: dict[str, int] = {"rounds": 0}

    def report(rounds: int, value: float) -> bool:
        last["rounds"] = rounds
        step = learning_step(rounds, lr) if tune.pruner == "median" else rounds
        if step <= 0 or step in intermediate:
            return False
        intermediate[step] = value
        trial.report(value, step)
        return trial.should_prune()

    oof = None
    try:
        result = cross_validate(
            data,
            spec.params,
            tune.max_rounds,
            patience(lr, tune.early_stopping_rounds),
            spec.threads,
            report,
            tune.report_every,
        )
        mean, std, rounds, oof = (
            oof_score(data.task, data.y, result.oof),
            result.std,
            result.rounds,
            result.oof,
        )
        state = "complete"
    except optuna.TrialPruned:
        mean, std, rounds, state = None, None, last["rounds"], "pruned"
    attrs = {
        k: v
        for k, v in study.get_trials(deepcopy=False)[-1].system_attrs.items()
        if k.startswith("completed_rung_")
    }
    return TrialOutcome(
        spec.number,
        state,
        mean,
        std,
        rounds,
        intermediate,
        attrs,
        seconds=time.perf_counter() - started,
        oof=oof,
    )


trial_task = task(name="tune-trial", cache_policy=NO_CACHE, persist_result=False, log_prints=False)(
    run_trial
)

TrialWaiter = Callable[[], TrialOutcome]  # blocks until the trial ends; never raises

Submitter = Callable[[TrialSpec], TrialWaiter]


def submitter(runner: Any, data: CVData) -> Submitter:
    """Submits each trial as a `tune-trial` task to the runner; the waiter returns its outcome
    (a trial that raised comes back as a failed outcome carrying the error)."""

    def submit(spec: TrialSpec) -> TrialWaiter:
        future = runner.submit(trial_task, {"spec": spec, "data": data})

        def wait() -> TrialOutcome:
            try:
                return future.result()
            except Exception as exc:  # a trial that raises is recorded failed; go on
                return TrialOutcome(spec.number, "failed", error=f"{type(exc).__name__}: {exc}")

        return wait

    return submit


@contextmanager
def prefect_trials(runner_settings: TuneRunnerSettings, data: CVData) -> Iterator[Submitter]:
    with task_runner(runner_settings) as runner:
        yield submitter(runner, data)


# ------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------
def study_fingerprint(data: CVData, settings: Settings, fidelity: Fidelity) -> str:
    """Identity of a study: the data it tunes on and every setting that changes a trial's result
    (not the budget or the runner, so raising n_trials continues the same study)."""
    tune = settings.tune.model_dump(
        mode="json",
        exclude={"n_trials", "timeout_s", "stall_trials", "runner", "learners", "ensemble"},
    )
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "tune": tune,
                "seed": settings.base.seed,
                "task": data.task,
                "imbalance": data.imbalance,
                "categorical": data.categorical,
                "fidelity": asdict(fidelity),
            },
            sort_keys=True,
        ).encode()
    )
    h.update(pd.util.hash_pandas_object(data.X, index=False).to_numpy().tobytes())
    h.update(np.asarray(data.y).tobytes())
    return h.hexdigest()[:12]


def open_study(journal: Path, name: str, direction: str, seed: int) -> optuna.Study:
    """Create or resume the study in the journal file; a journal of another study (other data
    or settings) is replaced."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    if journal.exists() and name not in optuna.study.get_all_study_names(storage):
        journal.unlink()
        storage = JournalStorage(JournalFileBackend(str(journal)))
    with warnings.catch_warnings():  # multivariate TPE is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=optuna.study.StudyDirection[direction.upper()],
        sampler=sampler,
        load_if_exists=True,
    )
    return study


ORDINAL = "_ordinal"
DEFAULTS = PORTFOLIO[0][0]  # "lightgbm_defaults" (and its ordinal twin)
WAIT = "wait"  # the next portfolio trial needs trials still running


def portfolio_entries(tune: TuneSettings, has_categorical: bool) -> list[tuple[str, dict, str]]:
    """(name, config, mode) of the study's first trials. With categorical columns, LightGBM's
    defaults run twice, categorical columns as categories and as plain codes, and the rest of
    the portfolio uses the mode that won (mode "winner"): which one is better depends on the
    table (it was the largest single difference seen between settings)."""
    configs = list(PORTFOLIO if tune.portfolio else PORTFOLIO[:1])
    if not has_categorical:
        return [(name, config, "fixed") for name, config in configs]
    name, config = configs[0]
    return [
        (name, {**config, "categorical_native": True}, "fixed"),
        (name + ORDINAL, {**config, "categorical_native": False}, "fixed"),
    ] + [(n, c, "winner") for n, c in configs[1:]]


def winning_mode(study: optuna.Study) -> bool | None:
    """categorical_native of the better of the two defaults trials (None until both are told;
    a tie keeps categories)."""
    told = {
        t.user_attrs.get("portfolio"): t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished()
    }
    native, ordinal = told.get(PORTFOLIO[0][0]), told.get(PORTFOLIO[0][0] + ORDINAL)
    if native is None or ordinal is None:
        return None
    if ordinal.value is None or ordinal.state != optuna.trial.TrialState.COMPLETE:
        return True
    if native.value is None or native.state != optuna.trial.TrialState.COMPLETE:
        return False
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return bool(sign * native.value <= sign * ordinal.value)


def next_portfolio_trial(
    study: optuna.Study, tune: TuneSettings, has_categorical: bool
) -> tuple[str, dict[str, Any]] | str | None:
    """The next portfolio setting not yet in the study as (name, point of the space), WAIT when
    it depends on trials still running, None when the portfolio is done."""
    seen = {t.user_attrs.get("portfolio") for t in study.get_trials(deepcopy=False)}
    space = searched(tune.search_space, has_categorical)
    for name, config, mode in portfolio_entries(tune, has_categorical):
        if name in seen:
            continue
        if mode == "winner":
            native = winning_mode(study)
            if native is None:
                return WAIT
            config = {**config, "categorical_native": native}
        return name, portfolio_point(config, space)
    return None


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: record them failed and queue their params again."""
    stale = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING
    ]
    for t in stale:
        optuna.trial.Trial(study, t._trial_id).set_user_attr("error", INTERRUPTED)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if t.params:
            keep = {k: v for k, v in t.user_attrs.items() if k == "portfolio"}
            study.enqueue_trial(t.params, user_attrs=keep, skip_if_exists=False)
    return len(stale)


def history_for(study: optuna.Study, number: int) -> list[optuna.trial.FrozenTrial]:
    """Trials 0..number-1 as the pruner in a worker sees them: finished ones with their
    intermediate values and rung results, unfinished siblings as failed placeholders."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.number >= number:
            break
        if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL:
            rungs = {
                k[len("pruner:") :]: v for k, v in t.user_attrs.items() if k.startswith("pruner:")
            }
            out.append(
                optuna.trial.create_trial(
                    state=t.state,
                    value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                    intermediate_values=dict(t.intermediate_values),
                    system_attrs=rungs,
                )
            )
        else:
            out.append(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return out


@dataclass
class StudyResult:
    best: optuna.trial.FrozenTrial
    trials: list[optuna.trial.FrozenTrial]
    done: int
    interrupted: int
    seconds: float


def tell_outcome(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    for step, value in sorted(outcome.intermediate.items()):
        trial.report(value, step)
    for key, value in outcome.pruner_attrs.items():
        trial.set_user_attr(f"pruner:{key}", value)
    trial.set_user_attr("seconds", round(outcome.seconds, 3))
    if outcome.state == "complete":
        trial.set_user_attr("cv_std", outcome.std)
        trial.set_user_attr("rounds", outcome.rounds)
        study.tell(trial, outcome.value)
    elif outcome.state == "pruned":
        trial.set_user_attr("rounds", outcome.rounds)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        trial.set_user_attr("error", outcome.error or "unknown error")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def resume(study: optuna.Study, tune: TuneSettings) -> tuple[int, int]:
    """Recover the trials a killed run left running; (interrupted, trials already done)."""
    interrupted = recover_interrupted(study)
    if interrupted:
        log.warning(
            "tune: %d trial(s) of an earlier, interrupted run were recorded failed "
            "and queued again",
            interrupted,
        )
    done_before = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
    if done_before:
        log.info(
            "tune: resuming study %s: %d of %d trials already done",
            study.study_name,
            done_before,
            tune.n_trials,
        )
    return interrupted, done_before


def no_best_trial_error(trials: Sequence[optuna.trial.FrozenTrial]) -> TuningError:
    """Why no trial can be chosen: every trial failed (with the first error), or none finished."""
    failed = sorted(
        (t for t in trials if t.state == optuna.trial.TrialState.FAIL), key=lambda t: t.number
    )
    first = next((t for t in failed if t.user_attrs.get("error") != INTERRUPTED), None)
    if first is not None and not any(t.state == optuna.trial.TrialState.PRUNED for t in trials):
        return TuningError(
            f"tune: all {len(failed)} trial(s) failed; first error (trial "
            f"{first.number}): {first.user_attrs.get('error')}"
        )
    return TuningError(
        f"tune: no trial completed ({len(trials)} trial(s): "
        f"{describe_states(trials)}); raise tune.n_trials or tune.timeout_s"
    )


@dataclass
class TrialWindow:
    """The trials in flight, oldest first, and how many count toward the budget so far."""

    study: optuna.Study
    tune: TuneSettings
    metric: str
    on_trial: Callable[[TrialOutcome, dict[str, Any]], None] | None
    progress_every: int
    done_before: int
    started: float = field(default_factory=time.perf_counter)
    inflight: deque[tuple[optuna.Trial, dict[str, Any], TrialWaiter]] = field(default_factory=deque)
    done: int = 0

    def settle_oldest(self) -> None:
        """Wait for the oldest trial, tell the study, report progress every few trials."""
        trial, params, wait = self.inflight.popleft()
        outcome = wait()
        tell_outcome(self.study, trial, outcome)
        if outcome.state == "failed":
            log.warning("tune: trial %d failed: %s", outcome.number, outcome.error)
        if self.on_trial is not None:
            self.on_trial(outcome, params)
        self.done += 1
        now = self.done - self.done_before
        if now % self.progress_every == 0 or not self.inflight:
            elapsed = time.perf_counter() - self.started
            log.info(
                "tune: %s",
                progress_line(self.study, self.tune, self.done, now, elapsed, self.metric),
            )


def waiting(study: optuna.Study) -> bool:
    """Whether enqueued trials (e.g. of an interrupted run) wait to be asked."""
    return any(t.state == optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))


def stalled(study: optuna.Study, stall_trials: int, first: int) -> bool:
    """True when the last `stall_trials` told trials, after the first `first` (the portfolio),
    have not improved the best score (decided on told trials only: deterministic)."""
    if stall_trials <= 0:
        return False
    told = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    best = select_best_trial(told, study.direction.name.lower())
    if best is None or len(told) <= first:
        return False
    since = sum(1 for t in told if t.number > max(best.number, first - 1))
    return since >= stall_trials


def budget_spent(
    started: float, budget_s: float | None, w: TrialWindow, submitted: int, minimum: int
) -> bool:
    """Whether the time budget is spent (no new trial starts; the running ones finish). The first
    `minimum` trials (LightGBM's defaults) always run, so the choice is never below them."""
    if submitted < minimum or budget_s is None or time.perf_counter() - started < budget_s:
        return False
    log.info(
        "tune: time budget of %.0f s spent after %d trials; finishing the %d running",
        budget_s,
        w.done,
        len(w.inflight),
    )
    return True


def enqueue_portfolio(study: optuna.Study, tune: TuneSettings, has_categorical: bool) -> bool:
    """Enqueue the next portfolio setting, if one is due, so the next `ask` runs it; False when
    that setting depends on trials still running (settle one first). Trials already queued (an
    interrupted run's) go first."""
    if waiting(study):
        return True
    entry = next_portfolio_trial(study, tune, has_categorical)
    if entry == WAIT:
        return False
    if isinstance(entry, tuple):
        study.enqueue_trial(entry[1], user_attrs={"portfolio": entry[0]})
    return True


def run_study(
    study: optuna.Study,
    tune: TuneSettings,
    threads: int,
    window: int,
    submit: Submitter,
    metric: str,
    on_trial: Callable[[TrialOutcome, dict[str, Any]], None] | None = None,
    progress_every: int = 2,
    has_categorical: bool = False,
    budget_s: float | None = None,
) -> StudyResult:
    """Keep `window` trials in flight until the budget is spent (n_trials, `budget_s` seconds,
    or `tune.stall_trials` told trials without improvement): ask, submit, and when the window is
    full wait for the oldest trial and tell it (always in trial-number order)."""
    started = time.perf_counter()
    interrupted, done_before = resume(study, tune)
    direction = study.direction.name.lower()
    space = searched(tune.search_space, has_categorical)
    first = len(portfolio_entries(tune, has_categorical))
    defaults = sum(
        1 for n, _, _ in portfolio_entries(tune, has_categorical) if n.startswith(DEFAULTS)
    )
    w = TrialWindow(study, tune, metric, on_trial, progress_every, done_before, started)
    w.done = submitted = done_before
    while submitted < tune.n_trials:
        if budget_spent(started, budget_s, w, submitted, defaults):
            break
        if len(w.inflight) >= window:
            w.settle_oldest()
            continue
        if stalled(study, tune.stall_trials, first):
            log.info("tune: %d trials without a better CV score; stopping", tune.stall_trials)
            break
        if not enqueue_portfolio(study, tune, has_categorical):
            w.settle_oldest()
            continue
        trial = study.ask()
        spec = TrialSpec(
            trial.number,
            suggest_params(trial, space),
            study.study_name,
            direction,
            tune,
            threads,
            history_for(study, trial.number),
        )
        w.inflight.append((trial, dict(spec.params), submit(spec)))
        submitted += 1
    while w.inflight:
        w.settle_oldest()
    trials = study.get_trials(deepcopy=True)
    best = select_best_trial(trials, direction)
    if best is None:
        raise no_best_trial_error(trials)
    return StudyResult(best, trials, w.done, interrupted, time.perf_counter() - started)


def describe_states(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    names = {
        "COMPLETE": "complete",
        "PRUNED": "pruned",
        "FAIL": "failed",
        "RUNNING": "running",
        "WAITING": "queued",
    }
    counts = {v: 0 for v in names.values()}
    for t in trials:
        counts[names[t.state.name]] += 1
    return ", ".join(f"{n} {k}" for k, n in counts.items() if k not in ("running", "queued") or n)


def progress_line(
    study: optuna.Study, tune: TuneSettings, done: int, done_now: int, elapsed: float, metric: str
) -> str:
    """`done` trials count toward the budget, `done_now` of them finished in this run."""
    trials = study.get_trials(deepcopy=False)
    best = select_best_trial(trials, study.direction.name.lower())
    best_txt = f"best {metric} {best.value:.4f} (trial {best.number})" if best else "no best yet"
    left = max(0, tune.n_trials - done) * elapsed / max(1, done_now)
    if tune.timeout_s is not None:
        left = min(left, max(0.0, tune.timeout_s - elapsed))
    return (
        f"{done}/{tune.n_trials} trials ({describe_states(trials)}), {best_txt}, ~{left:.0f} s left"
    )
