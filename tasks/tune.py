"""tune: Optuna search over LightGBM params with k-fold CV on the train split, trials in parallel.

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
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import KFold, StratifiedKFold

from tasks.config import LgbmParams, Settings, TuneRunnerSettings, TuneSettings, is_int_param
from tasks.errors import PipelineError
from tasks.features import model_input_categoricals, oversample_indices, transform_splits
from tasks.io import (ArtifactPaths, atomic_path, load_joblib, read_parquet, replace_dir,
                      write_csv, write_json, write_text)
from tasks.model import encode_target
from tasks.preprocess import sample_positions
from tasks.tracking import RunContext, log_to_run

log = logging.getLogger(__name__)

# The CV metric per task: (name in reports, LightGBM metric, direction).
CV_METRICS: dict[str, tuple[str, str, str]] = {
    "binary": ("roc_auc", "auc", "maximize"),
    "multiclass": ("log_loss", "multi_logloss", "minimize"),
    "regression": ("rmse", "rmse", "minimize"),
}
INTERRUPTED = "interrupted: the process ended before the trial finished"


class TuningError(PipelineError):
    """Every trial failed (the message carries the first error)."""


# ------------------------------------------------------------------------------------------------
# Pure decisions
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    level: str          # "full" or "reduced"
    rows: int           # train rows the CV uses
    total_rows: int     # rows of the train split
    n_folds: int
    reason: str


def choose_fidelity(n_rows: int, tune: TuneSettings) -> Fidelity:
    """Full CV on every train row, or (above tune.large_data.rows) a row subsample and fewer
    folds. The final model is always trained on the whole train split."""
    big = tune.large_data
    if n_rows <= big.rows:
        return Fidelity("full", n_rows, n_rows, tune.n_folds,
                        f"{n_rows} train rows <= tune.large_data.rows ({big.rows})")
    return Fidelity("reduced", min(n_rows, big.subsample_rows), n_rows,
                    min(tune.n_folds, big.n_folds),
                    f"{n_rows} train rows > tune.large_data.rows ({big.rows}): "
                    f"{min(n_rows, big.subsample_rows)}-row subsample, "
                    f"{min(tune.n_folds, big.n_folds)} folds")


def select_best_trial(trials: Sequence[optuna.trial.FrozenTrial],
                      direction: str) -> optuna.trial.FrozenTrial | None:
    """The best complete trial; equal scores go to the lower trial number (deterministic)."""
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * float(t.value), t.number))


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
        params["subsample_freq"] = 1   # bagging only happens with a positive frequency
    return params


def make_pruner(tune: TuneSettings) -> optuna.pruners.BasePruner:
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=tune.min_resource,
                                              max_resource=tune.max_rounds,
                                              reduction_factor=tune.reduction_factor)
    if tune.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=tune.min_resource,
                                                      reduction_factor=tune.reduction_factor)
    return optuna.pruners.NopPruner()


def threads_per_trial(runner: TuneRunnerSettings, cores: int | None = None) -> int:
    """LightGBM threads per trial so that workers x threads never exceeds the cores."""
    cores = cores or os.cpu_count() or 1
    if runner.threads_per_trial:
        return runner.threads_per_trial
    return max(1, cores // runner.workers)


# ------------------------------------------------------------------------------------------------
# Cross-validation of one parameter set (runs in a worker)
# ------------------------------------------------------------------------------------------------
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


def make_folds(y: np.ndarray, task_type: str, n_folds: int,
               seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = (KFold(n_folds, shuffle=True, random_state=seed) if task_type == "regression"
                else StratifiedKFold(n_folds, shuffle=True, random_state=seed))
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y)]


def lgb_params(params: dict[str, Any], data: CVData, threads: int) -> dict[str, Any]:
    _, metric, _ = CV_METRICS[data.task]
    out: dict[str, Any] = {
        **params, "objective": data.task, "metric": metric, "seed": data.seed,
        "deterministic": True, "force_col_wise": True, "verbosity": -1, "num_threads": threads,
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
        from tasks.features import balanced_weights

        weight = balanced_weights(y)
    if data.task != "regression" and data.imbalance == "oversample":
        parts_X, parts_y, new_folds, offset = [X], [y], [], len(y)
        for k, (tr, te) in enumerate(folds):
            idx = oversample_indices(y[tr], data.seed + k)[len(tr):]
            extra = tr[idx]
            parts_X.append(X.iloc[extra])
            parts_y.append(y[extra])
            new_folds.append((np.concatenate([tr, np.arange(offset, offset + len(extra))]), te))
            offset += len(extra)
        X = pd.concat(parts_X, ignore_index=True)
        y = np.concatenate(parts_y)
        folds = new_folds
    dataset = lgb.Dataset(X, y, weight=weight, categorical_feature=data.categorical or "auto",
                          free_raw_data=False)
    return dataset, folds


def cross_validate(data: CVData, params: dict[str, Any], max_rounds: int, early_stopping: int,
                   threads: int, report: Callable[[int, float], bool] | None = None,
                   report_every: int = 10) -> tuple[float, float, int]:
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
    result = lgb.cv(lgb_params(params, data, threads), dataset, num_boost_round=max_rounds,
                    folds=folds, callbacks=callbacks)
    means, stds = result[f"valid {metric}-mean"], result[f"valid {metric}-stdv"]
    return float(means[-1]), float(stds[-1]), len(means)


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
    state: str                      # complete | pruned | failed
    value: float | None = None
    std: float | None = None
    rounds: int | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    pruner_attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def _pruning_study(spec: TrialSpec) -> tuple[optuna.Study, optuna.Trial]:
    """An in-memory study holding the earlier trials, so the pruner decides like the real one
    would (same study name and trial numbers, hence the same Hyperband brackets)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.study_name, direction=spec.direction,
                                pruner=make_pruner(spec.tune),
                                sampler=optuna.samplers.RandomSampler(seed=0))
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

    def report(step: int, value: float) -> bool:
        intermediate[step] = value
        trial.report(value, step)
        return trial.should_prune()

    tune = spec.tune
    try:
        mean, std, rounds = cross_validate(data, spec.params, tune.max_rounds,
                                           tune.early_stopping_rounds, spec.threads, report,
                                           tune.report_every)
        state = "complete"
    except optuna.TrialPruned:
        mean, std, rounds, state = None, None, max(intermediate, default=0), "pruned"
    attrs = {k: v for k, v in study.get_trials(deepcopy=False)[-1].system_attrs.items()
             if k.startswith("completed_rung_")}
    return TrialOutcome(spec.number, state, mean, std, rounds, intermediate, attrs,
                        seconds=time.perf_counter() - started)


trial_task = task(name="tune-trial", cache_policy=NO_CACHE, persist_result=False,
                  log_prints=False)(run_trial)


# ------------------------------------------------------------------------------------------------
# Task runners
# ------------------------------------------------------------------------------------------------
def make_task_runner(runner: TuneRunnerSettings) -> Any:
    if runner.kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=runner.workers)
    if runner.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=runner.workers)
    from prefect_dask import DaskTaskRunner

    # When the local cluster shuts down, the scheduler's batched streams to its workers close and
    # distributed logs that at INFO *with a traceback* ("Batched Comm Closed"): expected, but it
    # reads like a crash in a clean run. Only INFO is hidden; errors of that logger still show.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    if runner.address:
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": 1,
                                          "processes": True, "host": "127.0.0.1",
                                          "dashboard_address": None})


@contextmanager
def shared_prefect_api() -> Iterator[None]:
    """Point trial processes at this process's Prefect API.

    Without PREFECT_API_URL, Prefect runs a temporary local server per process; worker processes
    would each start their own. Started once here (inside a flow it is already running) and
    passed on, every trial is a task run on the same server (under the flow run, if any)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if url:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


TrialWaiter = Callable[[], TrialOutcome]   # blocks until the trial ends; never raises
Submitter = Callable[[TrialSpec], TrialWaiter]


@contextmanager
def context_serialized_once() -> Iterator[None]:
    """Prefect's process runner serialises the whole Prefect context on every submit,
    every setting through pydantic: measured ~75 ms of the parent's CPU per trial here (prefect
    3.9.1), competing with the workers for the cores when trials take well under a second.
    Nothing in that context changes while a study runs (same flow run, same `tune` task run,
    same settings), so inside this block it is serialised once and reused."""
    import prefect.context as prefect_context

    original = prefect_context.serialize_context
    once = original()

    def serialize_context(asset_ctx_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        return once if asset_ctx_kwargs is None else original(asset_ctx_kwargs)

    prefect_context.serialize_context = serialize_context  # type: ignore[assignment]
    try:
        yield
    finally:
        prefect_context.serialize_context = original


@contextmanager
def trial_runner(runner_settings: TuneRunnerSettings) -> Iterator[Any]:
    """The started task runner for `tune-trial` tasks (workers start on the first submit)."""
    with shared_prefect_api(), make_task_runner(runner_settings) as runner, \
            context_serialized_once():
        yield runner


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
    with trial_runner(runner_settings) as runner:
        yield submitter(runner, data)


# ------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------
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
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.create_study(study_name=name, storage=storage, direction=direction,
                               sampler=sampler, load_if_exists=True)


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: record them failed and queue their params again."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        optuna.trial.Trial(study, t._trial_id).set_user_attr("error", INTERRUPTED)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, skip_if_exists=False)
    return len(stale)


def history_for(study: optuna.Study, number: int) -> list[optuna.trial.FrozenTrial]:
    """Trials 0..number-1 as the pruner in a worker sees them: finished ones with their
    intermediate values and rung results, unfinished siblings as failed placeholders."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.number >= number:
            break
        if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL:
            rungs = {k[len("pruner:"):]: v for k, v in t.user_attrs.items()
                     if k.startswith("pruner:")}
            out.append(optuna.trial.create_trial(
                state=t.state, value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values=dict(t.intermediate_values), system_attrs=rungs))
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


def run_study(study: optuna.Study, tune: TuneSettings, threads: int, window: int,
              submit: Submitter, metric: str,
              on_trial: Callable[[TrialOutcome, dict[str, Any]], None] | None = None,
              progress_every: int = 2) -> StudyResult:
    """Keep `window` trials in flight until the budget is spent: ask, submit, and when the
    window is full wait for the oldest trial and tell it (always in trial-number order)."""
    started = time.perf_counter()
    interrupted = recover_interrupted(study)
    if interrupted:
        log.warning("tune: %d trial(s) of an earlier, interrupted run were recorded failed "
                    "and queued again", interrupted)
    done_before = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
    if done_before:
        log.info("tune: resuming study %s: %d of %d trials already done", study.study_name,
                 done_before, tune.n_trials)
    direction = study.direction.name.lower()
    inflight: deque[tuple[optuna.Trial, dict[str, Any], TrialWaiter]] = deque()
    done = submitted = done_before

    def settle_oldest() -> None:
        nonlocal done
        trial, params, wait = inflight.popleft()
        outcome = wait()
        tell_outcome(study, trial, outcome)
        if outcome.state == "failed":
            log.warning("tune: trial %d failed: %s", outcome.number, outcome.error)
        if on_trial is not None:
            on_trial(outcome, params)
        done += 1
        if (done - done_before) % progress_every == 0 or not inflight:
            log.info("tune: %s", progress_line(study, tune, done, done - done_before,
                                               time.perf_counter() - started, metric))

    while submitted < tune.n_trials:
        if tune.timeout_s is not None and time.perf_counter() - started >= tune.timeout_s:
            log.info("tune: time budget of %.0f s spent after %d trials; finishing the %d "
                     "running", tune.timeout_s, done, len(inflight))
            break
        if len(inflight) >= window:
            settle_oldest()
            continue
        trial = study.ask()
        spec = TrialSpec(trial.number, suggest_params(trial, tune), study.study_name, direction,
                         tune, threads, history_for(study, trial.number))
        inflight.append((trial, dict(spec.params), submit(spec)))
        submitted += 1
    while inflight:
        settle_oldest()
    trials = study.get_trials(deepcopy=True)
    best = select_best_trial(trials, direction)
    if best is None:
        failed = sorted((t for t in trials if t.state == optuna.trial.TrialState.FAIL),
                        key=lambda t: t.number)
        first = next((t for t in failed if t.user_attrs.get("error") != INTERRUPTED), None)
        if first is not None and not any(t.state == optuna.trial.TrialState.PRUNED for t in trials):
            raise TuningError(f"tune: all {len(failed)} trial(s) failed; first error (trial "
                              f"{first.number}): {first.user_attrs.get('error')}")
        raise TuningError(f"tune: no trial completed ({len(trials)} trial(s): "
                          f"{describe_states(trials)}); raise tune.n_trials or tune.timeout_s")
    return StudyResult(best, trials, done, interrupted, time.perf_counter() - started)


def describe_states(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
             "WAITING": "queued"}
    counts = {v: 0 for v in names.values()}
    for t in trials:
        counts[names[t.state.name]] += 1
    return ", ".join(f"{n} {k}" for k, n in counts.items() if k not in ("running", "queued") or n)


def progress_line(study: optuna.Study, tune: TuneSettings, done: int, done_now: int,
                  elapsed: float, metric: str) -> str:
    """`done` trials count toward the budget, `done_now` of them finished in this run."""
    trials = study.get_trials(deepcopy=False)
    best = select_best_trial(trials, study.direction.name.lower())
    best_txt = f"best {metric} {best.value:.4f} (trial {best.number})" if best else "no best yet"
    left = max(0, tune.n_trials - done) * elapsed / max(1, done_now)
    if tune.timeout_s is not None:
        left = min(left, max(0.0, tune.timeout_s - elapsed))
    return (f"{done}/{tune.n_trials} trials ({describe_states(trials)}), {best_txt}, "
            f"~{left:.0f} s left")


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
    columns = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                              StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                              OneHotEncoder(handle_unknown="ignore")), data.categorical),
    ])
    model = (Ridge(alpha=1.0) if data.task == "regression" else
             LogisticRegression(C=1.0, max_iter=2000,
                                class_weight="balanced" if data.imbalance == "class_weight" else None))
    scores = []
    for tr, te in data.folds:
        fitted = make_pipeline(columns, model).fit(data.X.iloc[tr], data.y[tr])
        pred = (fitted.predict(data.X.iloc[te]) if data.task == "regression"
                else fitted.predict_proba(data.X.iloc[te]))
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
    mean, std, rounds = cross_validate(data, {}, tune.max_rounds, tune.early_stopping_rounds,
                                       threads)
    lin_mean, lin_std = linear_baseline(data)
    return {"lightgbm_default": {"mean": round(mean, 6), "std": round(std, 6), "rounds": rounds},
            "linear": {"mean": round(lin_mean, 6), "std": round(lin_std, 6)}}


# ------------------------------------------------------------------------------------------------
# Plots and MLflow
# ------------------------------------------------------------------------------------------------
def trials_table(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    rows = []
    for t in trials:
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     "rounds": t.user_attrs.get("rounds"), "seconds": t.user_attrs.get("seconds"),
                     "error": t.user_attrs.get("error", ""),
                     **{f"params_{k}": v for k, v in t.params.items()}})
    return pd.DataFrame(rows)


def plot_history(trials: Sequence[optuna.trial.FrozenTrial], direction: str, metric: str,
                 base: dict[str, dict[str, float]], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs, ys = [t.number for t in done], [t.value for t in done]
    ax.scatter(xs, ys, s=18, label="complete trial")
    if ys:
        best = np.maximum.accumulate(ys) if direction == "maximize" else np.minimum.accumulate(ys)
        ax.step(xs, best, where="post", color="tab:red", label="best so far")
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.scatter([t.number for t in pruned],
                   [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                   marker="x", color="grey", s=18, label="pruned (last report)")
    for (name, b), style in zip(base.items(), ("--", ":")):
        ax.axhline(b["mean"], linestyle=style, color="black", linewidth=1, label=f"baseline: {name}")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"CV {metric}")
    ax.set_title("Optimization history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def param_importances(study: optuna.Study, seed: int) -> dict[str, float]:
    """fANOVA sensitivity of the CV score to each parameter (needs >= 2 complete trials)."""
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(
        study, evaluator=evaluator).items()}


def plot_importances(importances: dict[str, float], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fANOVA share of CV-score variance)")
    ax.set_title("Parameter importance")
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def log_trial_runs(ctx: RunContext, outcomes: Sequence[TrialOutcome],
                   params: dict[int, dict[str, Any]], study_name: str, metric: str) -> None:
    """One nested MLflow child run per trial (params, CV score, state) under the parent run."""
    if not ctx.enabled:
        return
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(ctx.tracking_uri)
    experiment_id = client.get_run(ctx.run_id).info.experiment_id
    now = int(time.time() * 1000)
    for outcome in outcomes:
        run = client.create_run(experiment_id, run_name=f"trial-{outcome.number}",
                                tags={"mlflow.parentRunId": ctx.run_id, "tune.state": outcome.state,
                                      "tune.study": study_name})
        metrics = [Metric(f"cv_{metric}_step", v, now, step) for step, v in
                   sorted(outcome.intermediate.items())]
        if outcome.value is not None:
            metrics.append(Metric(f"cv_{metric}", outcome.value, now, 0))
            metrics.append(Metric(f"cv_{metric}_std", outcome.std or 0.0, now, 0))
        if outcome.rounds is not None:
            metrics.append(Metric("rounds", float(outcome.rounds), now, 0))
        metrics.append(Metric("seconds", outcome.seconds, now, 0))
        tags = [RunTag("tune.error", outcome.error[:5000])] if outcome.error else []
        client.log_batch(run.info.run_id, metrics=metrics, tags=tags,
                         params=[Param(k, str(v)) for k, v in params[outcome.number].items()]
                         + [Param("trial_number", str(outcome.number))])
        client.set_terminated(run.info.run_id, "FAILED" if outcome.state == "failed" else "FINISHED")


# ------------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------------
def cv_data(X: pd.DataFrame, y: np.ndarray, categorical: list[str], settings: Settings,
            fidelity: Fidelity, num_class: int) -> CVData:
    seed = settings.base.seed
    task_type = settings.data.task
    if fidelity.rows < len(y):
        keep = sample_positions(y, fidelity.rows, seed, stratify=task_type != "regression")
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    folds = make_folds(y, task_type, fidelity.n_folds, seed)
    return CVData(X.reset_index(drop=True), y, folds, categorical, task_type, num_class,
                  settings.features.imbalance, seed)


def study_fingerprint(data: CVData, settings: Settings, fidelity: Fidelity) -> str:
    """Identity of a study: the data it tunes on and every setting that changes a trial's result
    (not the budget or the runner, so raising n_trials continues the same study)."""
    tune = settings.tune.model_dump(mode="json", exclude={"n_trials", "timeout_s", "runner",
                                                          "baselines"})
    h = hashlib.sha256()
    h.update(json.dumps({"tune": tune, "seed": settings.base.seed, "task": data.task,
                         "imbalance": data.imbalance, "categorical": data.categorical,
                         "fidelity": asdict(fidelity)}, sort_keys=True).encode())
    h.update(pd.util.hash_pandas_object(data.X, index=False).to_numpy().tobytes())
    h.update(np.asarray(data.y).tobytes())
    return h.hexdigest()[:12]


@task(name="tune")
def tune_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    tune = settings.tune
    paths.tuning_dir.mkdir(parents=True, exist_ok=True)
    if not tune.enabled:
        # The declared outputs still exist (DVC requires them); no stale plots survive.
        staging = paths.tuning_reports.with_name(".tuning.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        write_text("Tuning is off (tune.enabled: false in params.yaml); train uses train.params.\n",
                   staging / "README.txt")
        replace_dir(staging, paths.tuning_reports)
        write_json({"enabled": False}, paths.tuning_metrics)
        write_json({"enabled": False}, paths.tuning_dir / "state.json")
        log.info("tune: disabled (tune.enabled: false); train uses train.params")
        return paths.tuning_metrics
    data_cfg = settings.data
    train = read_parquet(paths.split("train"))
    model_input = load_joblib(paths.features_model)
    X = transform_splits(model_input, {"train": train}, data_cfg.target)["train"]
    y, classes = encode_target(train[data_cfg.target], data_cfg.task,
                               positive_label=data_cfg.positive_label)
    fidelity = choose_fidelity(len(y), tune)
    data = cv_data(X, y, model_input_categoricals(model_input), settings, fidelity, len(classes))
    metric, _, direction = CV_METRICS[data_cfg.task]
    threads = threads_per_trial(tune.runner)
    name = f"tune-{study_fingerprint(data, settings, fidelity)}"
    study = open_study(paths.study_journal, name, direction, settings.base.seed)
    runner = tune.runner
    stage_started = time.perf_counter()
    log.info("tune: study %s, %d trials, %d-fold CV (%s) on %d rows, %s fidelity; %s runner "
             "with %d worker(s) x %d LightGBM thread(s), %d more queued", name, tune.n_trials,
             fidelity.n_folds, metric, fidelity.rows, fidelity.level,
             f"dask ({runner.address})" if runner.kind == "dask" and runner.address else runner.kind,
             runner.workers, threads, runner.queued)
    # Child runs are logged from a background thread while the next trials run.
    with ThreadPoolExecutor(max_workers=1) as logger, prefect_trials(runner, data) as submit:
        pending = []
        result = run_study(study, tune, threads, runner.window, submit, metric,
                           on_trial=lambda out, params: pending.append(logger.submit(
                               log_trial_runs, ctx, [out], {out.number: params},
                               study.study_name, metric)),
                           progress_every=runner.workers)
        for job in pending:
            job.result()
    best = result.best
    timings = {"study": round(time.perf_counter() - stage_started, 2)}
    # One LightGBM thread, like a trial: on a busy machine more threads than free cores spin.
    base = baselines(data, tune, threads) if tune.baselines else {}
    timings["baselines"] = round(time.perf_counter() - stage_started - timings["study"], 2)
    best_params = {k: v for k, v in best.params.items()}
    if "subsample" in best_params:
        best_params["subsample_freq"] = 1
    LgbmParams(**best_params)  # the tuned params are valid train params
    summary: dict[str, Any] = {
        "enabled": True, "cv_metric": metric, "cv_mean": round(float(best.value), 6),
        "cv_std": round(float(best.user_attrs.get("cv_std") or 0.0), 6),
        "cv_folds": fidelity.n_folds, "best_trial": best.number,
        "best_rounds": best.user_attrs.get("rounds"), "best_params": best_params,
        "trials": {label: sum(1 for t in result.trials if t.state.name == state)
                   for state, label in (("COMPLETE", "complete"), ("PRUNED", "pruned"),
                                        ("FAIL", "failed"))},
        "n_trials": tune.n_trials, "study": name, "baselines": base,
        "fidelity": asdict(fidelity),
        "runner": {"kind": runner.kind, "workers": runner.workers, "queued": runner.queued,
                   "threads_per_trial": threads},
        "seconds": timings,
    }
    staging = paths.tuning_reports.with_name(".tuning.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_csv(trials_table(result.trials), staging / "trials.csv")
    plot_history(result.trials, direction, metric, base, staging / "optimization_history.png")
    importances = param_importances(study, settings.base.seed)
    summary["param_importance"] = {k: round(v, 4) for k, v in importances.items()}
    if importances:
        plot_importances(importances, staging / "param_importance.png")
    replace_dir(staging, paths.tuning_reports)
    write_json({"study": name, "trials_done": result.done, "journal": paths.study_journal.name},
               paths.tuning_dir / "state.json")
    timings["total"] = round(time.perf_counter() - stage_started, 2)
    write_json(summary, paths.tuning_metrics)
    base_txt = "; ".join(f"{k} {v['mean']:.4f}" for k, v in base.items())
    log.info("tune: best trial %d: CV %s %.4f +- %.4f%s (%s fidelity)", best.number, metric,
             best.value, summary["cv_std"], f"; baselines: {base_txt}" if base else "",
             fidelity.level)
    metrics = {f"tune_cv_{metric}_mean": summary["cv_mean"], f"tune_cv_{metric}_std": summary["cv_std"],
               "tune_best_trial": best.number, **{f"tune_trials_{k}": v for k, v in summary["trials"].items()},
               **{f"tune_baseline_{k}_{metric}": v["mean"] for k, v in base.items()}}
    log_to_run(ctx, params={f"tune.best.{k}": v for k, v in best_params.items()} |
               {"tune.fidelity": fidelity.level},
               metrics=metrics,
               artifacts=sorted(paths.tuning_reports.iterdir()), artifact_dir="tuning")
    return paths.tuning_metrics
