"""tune: model selection by k-fold CV on the train split, LightGBM trials in parallel.

An Optuna study over LightGBM's params starts from LightGBM's defaults and a portfolio of
settings known to do well on tabular data; the other learners (linear, extra trees, random
forest, histogram boosting) are scored in the same folds; what ships is the single best or a
weighted ensemble from greedy ensemble selection on the out-of-fold predictions.

The parts: `search` (pure decisions: fidelity, portfolio, search space, pruning, best trial),
`cv` (the cross-validation a trial runs), `learners` (the other learners), `ensemble`
(ensemble selection), `candidates` (the pool and the recipe), `study` (the Optuna study, trials
as Prefect tasks), `report` (trials table, plots, MLflow child runs). This module loads the
data, runs the selection and writes models/selection.json (what `train` fits),
metrics/tuning.json, reports/tuning/ and the study's journal in models/tuning/.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from adapters.tracking import RunContext, log_to_run
from core.config import Settings
from core.io import (
    ArtifactPaths,
    atomic_dir,
    load_joblib,
    read_parquet,
    write_csv,
    write_json,
    write_text,
)
from inference.model import encode_target
from tasks.features import model_input_categoricals, transform_splits
from tasks.tune.candidates import (
    Candidate,
    choose,
    learner_candidates,
    lightgbm_pool,
    recipe,
    train_params,
)
from tasks.tune.cv import CVData, cross_validate, cv_data
from tasks.tune.ensemble import oof_score
from tasks.tune.report import (
    log_trial_runs,
    param_importances,
    plot_history,
    plot_importances,
    trials_table,
)
from tasks.tune.search import CV_METRICS, Fidelity, choose_fidelity, patience, threads_per_trial
from tasks.tune.study import (
    StudyResult,
    open_study,
    portfolio_entries,
    prefect_trials,
    run_study,
    study_fingerprint,
)

log = logging.getLogger(__name__)


def load_cv_data(settings: Settings, paths: ArtifactPaths) -> tuple[CVData, Fidelity]:
    """The model input of the train split (subsampled at reduced fidelity) and its folds."""
    data_cfg = settings.data
    train = read_parquet(paths.split("train"))
    model_input = load_joblib(paths.features_model)
    X = transform_splits(model_input, {"train": train}, data_cfg.target)["train"]
    y, classes = encode_target(
        train[data_cfg.target], data_cfg.task, positive_label=data_cfg.positive_label
    )
    fidelity = choose_fidelity(len(y), settings.tune)
    data = cv_data(X, y, model_input_categoricals(model_input), settings, fidelity, len(classes))
    return data, fidelity


def log_study_plan(
    settings: Settings, name: str, fidelity: Fidelity, has_categorical: bool, threads: int
) -> None:
    tune, runner = settings.tune, settings.tune.runner
    log.info(
        "tune: study %s, up to %d trials (%d from the portfolio first), %d-fold CV (%s) on %d "
        "rows, %s fidelity; %s runner with %d worker(s) x %d LightGBM thread(s), %d more queued",
        name,
        tune.n_trials,
        len(portfolio_entries(tune, has_categorical)),
        fidelity.n_folds,
        CV_METRICS[settings.data.task][0],
        fidelity.rows,
        fidelity.level,
        f"dask ({runner.address})" if runner.kind == "dask" and runner.address else runner.kind,
        runner.workers,
        threads,
        runner.queued,
    )


def run_trials(
    settings: Settings,
    ctx: RunContext,
    data: CVData,
    fidelity: Fidelity,
    paths: ArtifactPaths,
    budget_s: float | None,
) -> tuple[Any, StudyResult, dict[int, np.ndarray]]:
    """Run (or resume) the study to its budget; each trial also becomes an MLflow child run.
    Returns the study, its result and the out-of-fold predictions of this run's complete trials."""
    tune, runner = settings.tune, settings.tune.runner
    metric, _, direction = CV_METRICS[settings.data.task]
    threads = threads_per_trial(runner)
    has_cat = bool(data.categorical)
    name = f"tune-{study_fingerprint(data, settings, fidelity)}"
    study = open_study(paths.study_journal, name, direction, settings.base.seed)
    log_study_plan(settings, name, fidelity, has_cat, threads)
    oofs: dict[int, np.ndarray] = {}

    def on_trial(out: Any, params: dict[str, Any]) -> None:
        if out.oof is not None:
            oofs[out.number] = out.oof
        out.oof = None  # the child run does not need it
        pending.append(
            logger.submit(
                log_trial_runs, ctx, [out], {out.number: params}, study.study_name, metric
            )
        )

    # Child runs are logged from a background thread while the next trials run.
    with ThreadPoolExecutor(max_workers=1) as logger, prefect_trials(runner, data) as submit:
        pending: list[Any] = []
        result = run_study(
            study,
            tune,
            threads,
            runner.window,
            submit,
            metric,
            on_trial,
            progress_every=runner.workers,
            has_categorical=has_cat,
            budget_s=budget_s,
        )
        for job in pending:
            job.result()
    return study, result, oofs


def defaults_score(result: StudyResult) -> float | None:
    """The CV score of trial 0, LightGBM's defaults (None if it did not complete)."""
    first = next((t for t in result.trials if t.number == 0), None)
    return None if first is None or first.value is None else float(first.value)


def tuning_summary(
    settings: Settings,
    result: StudyResult,
    fidelity: Fidelity,
    name: str,
    selection: dict[str, Any],
    threads: int,
) -> dict[str, Any]:
    """metrics/tuning.json: what won and by how much, the defaults' CV next to the best trial's,
    trial counts. No timings: they go to MLflow."""
    metric = CV_METRICS[settings.data.task][0]
    best, runner = result.best, settings.tune.runner
    defaults = defaults_score(result)
    return {
        "enabled": True,
        "cv_metric": metric,
        "cv_mean": selection["cv"]["chosen"],
        "cv_std": round(float(best.user_attrs.get("cv_std") or 0.0), 6),
        "cv_folds": fidelity.n_folds,
        "winner": selection["winner"],
        "weights": {m["name"]: m["weight"] for m in selection["members"]},
        "best_single": selection["cv"]["best_single"],
        "candidates": selection["cv"]["candidates"],
        "lightgbm_defaults": None if defaults is None else round(defaults, 6),
        "best_trial": best.number,
        "best_trial_score": round(float(best.value or 0.0), 6),
        "best_rounds": best.user_attrs.get("rounds"),
        "best_params": train_params(best.params),
        "trials": {
            label: sum(1 for t in result.trials if t.state.name == state)
            for state, label in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed"))
        },
        "n_trials": settings.tune.n_trials,
        "study": name,
        "fidelity": asdict(fidelity),
        "runner": {
            "kind": runner.kind,
            "workers": runner.workers,
            "queued": runner.queued,
            "threads_per_trial": threads,
        },
    }


def write_reports(
    settings: Settings,
    study: Any,
    result: StudyResult,
    summary: dict[str, Any],
    paths: ArtifactPaths,
) -> dict[str, float]:
    """reports/tuning/ (trials table, history and importance plots) as one folder swap;
    returns the fANOVA parameter importances."""
    metric, _, direction = CV_METRICS[settings.data.task]
    importances = param_importances(study, settings.base.seed)
    lines = {
        f"learner: {k}": v for k, v in summary["candidates"].items() if not k.startswith("trial ")
    }
    lines["chosen: " + summary["winner"]] = summary["cv_mean"]
    with atomic_dir(paths.tuning_reports) as staging:
        write_csv(trials_table(result.trials), staging / "trials.csv")
        plot_history(result.trials, direction, metric, lines, staging / "optimization_history.png")
        if importances:
            plot_importances(importances, staging / "param_importance.png")
    return importances


def log_tuning(
    ctx: RunContext, summary: dict[str, Any], timings: dict[str, float], paths: ArtifactPaths
) -> None:
    metric = summary["cv_metric"]
    base = summary.get("lightgbm_defaults")
    log.info(
        "tune: chose %s, CV %s %.4f; best single %s %.4f; best LightGBM trial %d %.4f; "
        "LightGBM defaults %s (%s fidelity)",
        summary["winner"],
        metric,
        summary["cv_mean"],
        summary["best_single"]["name"],
        summary["best_single"]["score"],
        summary["best_trial"],
        summary["best_trial_score"],
        "not complete" if base is None else f"{base:.4f}",
        summary["fidelity"]["level"],
    )
    metrics = {
        f"tune_cv_{metric}": summary["cv_mean"],
        f"tune_cv_{metric}_std": summary["cv_std"],
        f"tune_best_single_{metric}": summary["best_single"]["score"],
        f"tune_best_trial_{metric}": summary["best_trial_score"],
        "tune_best_trial": summary["best_trial"],
        **{f"tune_trials_{k}": v for k, v in summary["trials"].items()},
        **{f"tune_seconds_{k}": v for k, v in timings.items()},
        **({f"tune_lightgbm_defaults_{metric}": base} if base is not None else {}),
    }
    log_to_run(
        ctx,
        params={f"tune.best.{k}": v for k, v in summary["best_params"].items()}
        | {"tune.fidelity": summary["fidelity"]["level"], "tune.winner": summary["winner"]},
        metrics=metrics,
        artifacts=sorted(paths.tuning_reports.iterdir()),
        artifact_dir="tuning",
    )


def write_untuned(settings: Settings, paths: ArtifactPaths) -> Path:
    """Tuning off: train.params, with the boosting rounds (and the threshold) from one CV; the
    declared outputs still exist (DVC requires them), and no stale plots survive."""
    data, _ = load_cv_data(settings, paths)
    params = train_params(settings.train.params.model_dump())
    lr = float(params["learning_rate"])
    result = cross_validate(
        data,
        params,
        settings.train.n_estimators,
        patience(lr, settings.train.early_stopping_rounds),
        os.cpu_count() or 1,
    )
    score = oof_score(data.task, data.y, result.oof)
    pool = [Candidate("train.params", "lightgbm", params, score, result.oof, rounds=result.rounds)]
    write_json(recipe(pool, choose(pool, data, settings), data, settings), paths.selection)
    with atomic_dir(paths.tuning_reports) as staging:
        write_text(
            "Tuning is off (tune.enabled: false in params.yaml); train uses train.params.\n",
            staging / "README.txt",
        )
    write_json(
        {
            "enabled": False,
            "cv_metric": CV_METRICS[data.task][0],
            "cv_mean": round(score, 6),
            "cv_std": round(result.std, 6),
            "best_rounds": result.rounds,
        },
        paths.tuning_metrics,
    )
    write_json({"enabled": False}, paths.tuning_dir / "state.json")
    log.info(
        "tune: disabled (tune.enabled: false); train uses train.params, %d rounds by CV",
        result.rounds,
    )
    return paths.tuning_metrics


@task(name="tune")
def tune_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    paths.tuning_dir.mkdir(parents=True, exist_ok=True)
    if not settings.tune.enabled:
        return write_untuned(settings, paths)
    started = time.perf_counter()
    data, fidelity = load_cv_data(settings, paths)
    others = learner_candidates(data, settings, os.cpu_count() or 1, settings.tune.timeout_s)
    timings = {"learners": round(time.perf_counter() - started, 2)}
    budget = settings.tune.timeout_s
    budget = None if budget is None else max(0.0, budget - timings["learners"])
    study, result, oofs = run_trials(settings, ctx, data, fidelity, paths, budget)
    timings["study"] = round(time.perf_counter() - started - timings["learners"], 2)
    threads = threads_per_trial(settings.tune.runner)
    pool = lightgbm_pool(result.trials, oofs, data, settings, threads) + others
    selection = recipe(pool, choose(pool, data, settings), data, settings)
    write_json(selection, paths.selection)
    summary = tuning_summary(settings, result, fidelity, study.study_name, selection, threads)
    importances = write_reports(settings, study, result, summary, paths)
    summary["param_importance"] = {k: round(v, 4) for k, v in importances.items()}
    write_json(
        {
            "study": study.study_name,
            "trials_done": result.done,
            "journal": paths.study_journal.name,
        },
        paths.tuning_dir / "state.json",
    )
    write_json(summary, paths.tuning_metrics)
    timings["total"] = round(time.perf_counter() - started, 2)
    log_tuning(ctx, summary, timings, paths)
    return paths.tuning_metrics
