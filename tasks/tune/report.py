"""What the tune stage reports: the trials table, the optimization history and parameter
importance plots, and one MLflow child run per trial."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from adapters.tracking import RunContext
from core.io import atomic_path
from tasks.tune.study import TrialOutcome


def trials_table(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    """One row per trial: state, CV score, rounds, error, params (no timings: those change
    from run to run and go to the trial's MLflow child run)."""
    rows = []
    for t in trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "rounds": t.user_attrs.get("rounds"),
                "error": t.user_attrs.get("error", ""),
                **{f"params_{k}": v for k, v in t.params.items()},
            }
        )
    return pd.DataFrame(rows)


def plot_history(
    trials: Sequence[optuna.trial.FrozenTrial],
    direction: str,
    metric: str,
    lines: dict[str, float],
    dest: Path,
) -> None:
    """CV score per trial (best so far in red), with horizontal lines for the other learners and
    the chosen model (`lines`: label -> CV score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig, ax = plt.subplots(figsize=(7, 4))
    xs, ys = [t.number for t in done], [float(t.value or 0.0) for t in done]
    ax.scatter(xs, ys, s=18, label="complete trial")
    if ys:
        best = np.maximum.accumulate(ys) if direction == "maximize" else np.minimum.accumulate(ys)
        ax.step(xs, best, where="post", color="tab:red", label="best so far")
    pruned = [
        t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values
    ]
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
            marker="x",
            color="grey",
            s=18,
            label="pruned (last report)",
        )
    styles = ("--", ":", "-.", (0, (1, 3)), (0, (5, 5)), "-")
    for i, (label, value) in enumerate(lines.items()):
        ax.axhline(
            value, linestyle=styles[i % len(styles)], color="black", linewidth=1, label=label
        )
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
    complete = [
        t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
    ]
    if len(complete) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return {
        k: float(v)
        for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
    }


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


def log_trial_runs(
    ctx: RunContext,
    outcomes: Sequence[TrialOutcome],
    params: dict[int, dict[str, Any]],
    study_name: str,
    metric: str,
) -> None:
    """One nested MLflow child run per trial (params, CV score, state) under the parent run."""
    if ctx.run_id is None:
        return
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(ctx.tracking_uri)
    experiment_id = client.get_run(ctx.run_id).info.experiment_id
    now = int(time.time() * 1000)
    for outcome in outcomes:
        run = client.create_run(
            experiment_id,
            run_name=f"trial-{outcome.number}",
            tags={
                "mlflow.parentRunId": ctx.run_id,
                "tune.state": outcome.state,
                "tune.study": study_name,
            },
        )
        metrics = [
            Metric(f"cv_{metric}_step", v, now, step)
            for step, v in sorted(outcome.intermediate.items())
        ]
        if outcome.value is not None:
            metrics.append(Metric(f"cv_{metric}", outcome.value, now, 0))
            metrics.append(Metric(f"cv_{metric}_std", outcome.std or 0.0, now, 0))
        if outcome.rounds is not None:
            metrics.append(Metric("rounds", float(outcome.rounds), now, 0))
        metrics.append(Metric("seconds", outcome.seconds, now, 0))
        tags = [RunTag("tune.error", outcome.error[:5000])] if outcome.error else []
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            tags=tags,
            params=[Param(k, str(v)) for k, v in params[outcome.number].items()]
            + [Param("trial_number", str(outcome.number))],
        )
        client.set_terminated(
            run.info.run_id, "FAILED" if outcome.state == "failed" else "FINISHED"
        )
