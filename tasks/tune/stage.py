"""tune: Optuna search over LightGBM params with k-fold CV on the train split, trials in parallel.

The parts: `search` (pure decisions: fidelity, search space, pruner, best trial), `cv` (the
cross-validation a trial runs, and the baselines), `study` (the Optuna study and its trials as
Prefect tasks), `report` (trials table, plots, MLflow child runs). This module loads the data,
runs the study and writes the outputs: metrics/tuning.json, reports/tuning/ and the study's
journal in models/tuning/.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task

from adapters.tracking import RunContext, log_to_run
from core.config import LgbmParams, Settings
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
from tasks.tune.cv import CVData, baselines, cv_data
from tasks.tune.report import (
    log_trial_runs,
    param_importances,
    plot_history,
    plot_importances,
    trials_table,
)
from tasks.tune.search import CV_METRICS, Fidelity, choose_fidelity, threads_per_trial
from tasks.tune.study import StudyResult, open_study, prefect_trials, run_study, study_fingerprint

log = logging.getLogger(__name__)


def write_disabled(paths: ArtifactPaths) -> Path:
    """Tuning off: the declared outputs still exist (DVC requires them); no stale plots survive."""
    with atomic_dir(paths.tuning_reports) as staging:
        write_text(
            "Tuning is off (tune.enabled: false in params.yaml); train uses train.params.\n",
            staging / "README.txt",
        )
    write_json({"enabled": False}, paths.tuning_metrics)
    write_json({"enabled": False}, paths.tuning_dir / "state.json")
    log.info("tune: disabled (tune.enabled: false); train uses train.params")
    return paths.tuning_metrics


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


def run_trials(
    settings: Settings, ctx: RunContext, data: CVData, fidelity: Fidelity, paths: ArtifactPaths
) -> tuple[Any, StudyResult, int]:
    """Run (or resume) the study to its budget; each trial also becomes an MLflow child run."""
    tune, runner = settings.tune, settings.tune.runner
    metric, _, direction = CV_METRICS[settings.data.task]
    threads = threads_per_trial(runner)
    name = f"tune-{study_fingerprint(data, settings, fidelity)}"
    study = open_study(paths.study_journal, name, direction, settings.base.seed)
    log.info(
        "tune: study %s, %d trials, %d-fold CV (%s) on %d rows, %s fidelity; %s runner "
        "with %d worker(s) x %d LightGBM thread(s), %d more queued",
        name,
        tune.n_trials,
        fidelity.n_folds,
        metric,
        fidelity.rows,
        fidelity.level,
        f"dask ({runner.address})" if runner.kind == "dask" and runner.address else runner.kind,
        runner.workers,
        threads,
        runner.queued,
    )
    # Child runs are logged from a background thread while the next trials run.
    with ThreadPoolExecutor(max_workers=1) as logger, prefect_trials(runner, data) as submit:
        pending = []
        result = run_study(
            study,
            tune,
            threads,
            runner.window,
            submit,
            metric,
            on_trial=lambda out, params: pending.append(
                logger.submit(
                    log_trial_runs, ctx, [out], {out.number: params}, study.study_name, metric
                )
            ),
            progress_every=runner.workers,
        )
        for job in pending:
            job.result()
    return study, result, threads


def best_lgbm_params(result: StudyResult) -> dict[str, Any]:
    """The best trial's params as train params (bagging needs a positive frequency)."""
    params = dict(result.best.params)
    if "subsample" in params:
        params["subsample_freq"] = 1
    LgbmParams(**params)  # the tuned params are valid train params
    return params


def tuning_summary(
    settings: Settings,
    result: StudyResult,
    fidelity: Fidelity,
    name: str,
    base: dict[str, Any],
    threads: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    metric = CV_METRICS[settings.data.task][0]
    best, runner = result.best, settings.tune.runner
    return {
        "enabled": True,
        "cv_metric": metric,
        "cv_mean": round(float(best.value or 0.0), 6),
        "cv_std": round(float(best.user_attrs.get("cv_std") or 0.0), 6),
        "cv_folds": fidelity.n_folds,
        "best_trial": best.number,
        "best_rounds": best.user_attrs.get("rounds"),
        "best_params": best_lgbm_params(result),
        "trials": {
            label: sum(1 for t in result.trials if t.state.name == state)
            for state, label in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed"))
        },
        "n_trials": settings.tune.n_trials,
        "study": name,
        "baselines": base,
        "fidelity": asdict(fidelity),
        "runner": {
            "kind": runner.kind,
            "workers": runner.workers,
            "queued": runner.queued,
            "threads_per_trial": threads,
        },
        "seconds": timings,
    }


def write_reports(
    settings: Settings, study: Any, result: StudyResult, base: dict[str, Any], paths: ArtifactPaths
) -> dict[str, float]:
    """reports/tuning/ (trials table, history and importance plots) as one folder swap;
    returns the fANOVA parameter importances."""
    metric, _, direction = CV_METRICS[settings.data.task]
    importances = param_importances(study, settings.base.seed)
    with atomic_dir(paths.tuning_reports) as staging:
        write_csv(trials_table(result.trials), staging / "trials.csv")
        plot_history(result.trials, direction, metric, base, staging / "optimization_history.png")
        if importances:
            plot_importances(importances, staging / "param_importance.png")
    return importances


def log_tuning(ctx: RunContext, summary: dict[str, Any], paths: ArtifactPaths) -> None:
    metric = summary["cv_metric"]
    base = summary["baselines"]
    base_txt = "; ".join(f"{k} {v['mean']:.4f}" for k, v in base.items())
    log.info(
        "tune: best trial %d: CV %s %.4f +- %.4f%s (%s fidelity)",
        summary["best_trial"],
        metric,
        summary["cv_mean"],
        summary["cv_std"],
        f"; baselines: {base_txt}" if base else "",
        summary["fidelity"]["level"],
    )
    metrics = {
        f"tune_cv_{metric}_mean": summary["cv_mean"],
        f"tune_cv_{metric}_std": summary["cv_std"],
        "tune_best_trial": summary["best_trial"],
        **{f"tune_trials_{k}": v for k, v in summary["trials"].items()},
        **{f"tune_baseline_{k}_{metric}": v["mean"] for k, v in base.items()},
    }
    log_to_run(
        ctx,
        params={f"tune.best.{k}": v for k, v in summary["best_params"].items()}
        | {"tune.fidelity": summary["fidelity"]["level"]},
        metrics=metrics,
        artifacts=sorted(paths.tuning_reports.iterdir()),
        artifact_dir="tuning",
    )


@task(name="tune")
def tune_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    paths.tuning_dir.mkdir(parents=True, exist_ok=True)
    if not settings.tune.enabled:
        return write_disabled(paths)
    started = time.perf_counter()
    data, fidelity = load_cv_data(settings, paths)
    study, result, threads = run_trials(settings, ctx, data, fidelity, paths)
    timings = {"study": round(time.perf_counter() - started, 2)}
    # One LightGBM thread, like a trial: on a busy machine more threads than free cores spin.
    base = baselines(data, settings.tune, threads) if settings.tune.baselines else {}
    timings["baselines"] = round(time.perf_counter() - started - timings["study"], 2)
    summary = tuning_summary(settings, result, fidelity, study.study_name, base, threads, timings)
    importances = write_reports(settings, study, result, base, paths)
    summary["param_importance"] = {k: round(v, 4) for k, v in importances.items()}
    write_json(
        {
            "study": study.study_name,
            "trials_done": result.done,
            "journal": paths.study_journal.name,
        },
        paths.tuning_dir / "state.json",
    )
    timings["total"] = round(time.perf_counter() - started, 2)
    write_json(summary, paths.tuning_metrics)
    log_tuning(ctx, summary, paths)
    return paths.tuning_metrics
