"""The training flow: ingest -> validate -> preprocess -> features -> tune -> train -> evaluate ->
compress -> register -> drift.

Composition only: each stage's logic is the Prefect task in its `tasks/` module, the same
function `dvc repro` runs through `python -m flows stage NAME`. The order is dvc.yaml's: both
entry points read the one stage list there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task, flow, runtime

from adapters.dvc import DvcState, read_stages, report_restored, restore_missing_outputs
from adapters.tracking import RunContext, finish_parent_run, start_parent_run
from core.config import ConfigError, Settings, load_settings
from core.errors import PipelineError
from flows._runtime import configure_flow_logging
from ops.preflight import preflight
from tasks.compress.stage import compress_stage
from tasks.drift import drift_stage
from tasks.evaluate.stage import evaluate_stage
from tasks.features import features_stage
from tasks.ingest import ingest_stage
from tasks.preprocess import preprocess_stage
from tasks.register.stage import register_stage, registration_in_store, registration_of_run
from tasks.train import train_stage
from tasks.tune.stage import tune_stage
from tasks.validate import validate_stage

log = logging.getLogger("flows.training")

# State outside the repo that DVC cannot see: a stage DVC calls current still runs when its
# check says the outside world lacks what it produced (e.g. a fresh clone has no registry).
EXTERNAL_CHECKS: dict[str, Callable[[Settings], bool]] = {"register": registration_in_store}

# The task of each stage by name; which stages run, and in which order, is dvc.yaml's.
STAGES: dict[str, Task[[Settings, RunContext], Path]] = {
    "ingest": ingest_stage,
    "validate": validate_stage,
    "preprocess": preprocess_stage,
    "features": features_stage,
    "tune": tune_stage,
    "train": train_stage,
    "evaluate": evaluate_stage,
    "compress": compress_stage,
    "register": register_stage,
    "drift": drift_stage,
}


class StageGraphError(PipelineError):
    """dvc.yaml and the flow's tasks name different stages."""


def stage_order(root: Path) -> list[str]:
    """The stages in dvc.yaml's order; every one of them must have a task and vice versa."""
    names = list(read_stages(root))
    unknown = [n for n in names if n not in STAGES]
    absent = [n for n in STAGES if n not in names]
    if unknown or absent:
        raise StageGraphError(
            f"{root / 'dvc.yaml'} and flows/training.py disagree: "
            + "; ".join(
                part
                for part in (
                    f"no task for stage(s) {', '.join(unknown)}" if unknown else "",
                    f"stage(s) {', '.join(absent)} missing from dvc.yaml" if absent else "",
                )
                if part
            )
        )
    return names


def open_flow_run(settings: Settings) -> RunContext:
    flow_run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    run_id = start_parent_run(
        settings.tracking_uri,
        settings.register_.experiment,
        settings.artifact_root,
        entry="prefect",
        tags={"prefect.flow_run_id": flow_run_id or ""},
        params=settings.flat(),
    )
    return RunContext(settings.tracking_uri, run_id, entry="prefect", flow_run_id=flow_run_id)


def stages_line(ran: list[str], skipped: list[str], stopped_at: str | None = None) -> str:
    """The run log's last line: which stages ran, which DVC found current, and the stage that
    raised or was interrupted, if any."""
    line = (
        f"training: stages run: {', '.join(ran) or 'none'}; "
        f"skipped: {', '.join(skipped) or 'none'} (current in dvc.lock)"
    )
    return f"{line}; stopped at: {stopped_at}" if stopped_at else line


def check_params_file(path: str | Path) -> None:
    """DVC compares a stage's params with `params.yaml` next to `dvc.yaml`: a run from any other
    file would train with values dvc.lock never records (and skip stages by the wrong ones)."""
    resolved = Path(path).resolve()
    if resolved.name != "params.yaml" and (resolved.parent / "dvc.yaml").is_file():
        raise ConfigError(
            f"{path}: the training flow reads the project's params.yaml, the file dvc.yaml's "
            "stages declare, so that dvc.lock records what ran; put these values in "
            f"{resolved.parent / 'params.yaml'} (or try them with `dvc exp run -S key=value`)"
        )


@flow(name="training", log_prints=True)
def training_flow(params_path: str = "params.yaml", force: bool = False) -> dict[str, Any]:
    """Run every stage that is not current according to DVC; return what ran and was skipped."""
    configure_flow_logging()  # a deployment run's process has had no other setup
    check_params_file(params_path)
    settings = load_settings(params_path)
    preflight(settings)  # unusable tracking store: fail before any stage; clean up after a crash
    order = stage_order(settings.root)
    dvc = DvcState(settings.root)
    ctx: RunContext | None = None
    ran: list[str] = []
    skipped: list[str] = []
    registration: dict[str, Any] | None = None
    try:
        for name in order:
            stage = STAGES[name]
            if not force and dvc.is_current(name):
                check = EXTERNAL_CHECKS.get(name)
                if check is None or check(settings):
                    log.info("%s: up to date (dvc.lock), skipped", name)
                    skipped.append(name)
                    continue
                log.info(
                    "%s: current in dvc.lock but missing from the tracking store %s; running it",
                    name,
                    settings.tracking_uri,
                )
            if ctx is None:
                ctx = open_flow_run(settings)
            stage(settings, ctx)
            if name == "register":  # the version this run registered, for its summary
                registration = registration_of_run(settings, ctx)
            dvc.commit(name)
            ran.append(name)
    except BaseException:
        if dvc.enabled:
            report_restored(name, *restore_missing_outputs(settings.root, name))
        log.info(stages_line(ran, skipped, stopped_at=name))
        if ctx is not None:
            finish_parent_run(ctx, "FAILED")
        raise
    finally:
        dvc.close()
    log.info(stages_line(ran, skipped))
    if ctx is not None:
        finish_parent_run(ctx, "FINISHED")
    return {
        "ran": ran,
        "skipped": skipped,
        "mlflow_run_id": ctx.run_id if ctx else None,
        "registration": registration,
        "root": str(settings.root),
    }
