"""One MLflow parent run per pipeline execution, whichever entry point started it.

The Prefect flow creates the parent run and hands its id to every stage. Under `dvc repro` each
stage is its own process: the first stage that runs creates the parent run and records it in
`.pipeline/mlflow_run.json` keyed by the `dvc` process that launched it, so the later stages of the
same `dvc repro` join that run and a new `dvc repro` starts a new one. Each stage resumes the run,
logs what it produced, and ends it FINISHED (or FAILED), so no run is left dangling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import TrackingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Where a stage logs: the parent run of this pipeline execution (None: do not log)."""

    tracking_uri: str | None = None
    run_id: str | None = None
    entry: str = "cli"
    flow_run_id: str | None = None

    @property
    def enabled(self) -> bool:
        return self.run_id is not None


NO_RUN = RunContext()


def configure_mlflow(tracking_uri: str) -> None:
    """Point MLflow at the project's store and quieten its import-time chatter."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


# MLflow 3's UI opens an experiment by its kind: without this tag it guesses, and shows the
# GenAI overview (traces, evaluations) instead of the training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(name: str, artifact_root: Path) -> str:
    """Experiment id for `name`, creating it with artifacts under the project's artifact root
    (tagged as a model-training experiment, so the UI opens on its runs)."""
    import mlflow

    try:
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            if EXPERIMENT_KIND_TAG not in exp.tags:  # e.g. created by hand
                mlflow.MlflowClient().set_experiment_tag(
                    exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                )
            return exp.experiment_id
        artifact_root.mkdir(parents=True, exist_ok=True)
        try:
            return mlflow.create_experiment(
                name,
                artifact_location=(artifact_root / name).as_uri(),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except mlflow.exceptions.MlflowException:
            exp = mlflow.get_experiment_by_name(name)  # a concurrent run created it first
            if exp is None:
                raise
            return exp.experiment_id
    except Exception as exc:
        raise TrackingError(
            f"MLflow tracking store {mlflow.get_tracking_uri()} is not usable: {exc}"
        ) from None


def ui_command(tracking_uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    """`mlflow ui` for one person on a small machine: one worker and no job runner (MLflow's
    defaults start four workers and its job consumers, ~15 processes and 3 GiB), on loopback."""
    exe = Path(sys.executable).with_name("mlflow")
    argv = [
        str(exe) if exe.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    return argv, env


def training_runs_url(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table. MLflow 3's UI opens an experiment in its GenAI view
    (traces, evaluations) unless the browser chose "Model training" or the URL asks for it."""
    return f"{base_url}/#/experiments/{experiment_id}?workflowType=machine_learning"


def start_parent_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    entry: str,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Create the parent run of one pipeline execution and return its id (left terminated)."""
    import mlflow

    configure_mlflow(tracking_uri)
    exp_id = ensure_experiment(experiment, artifact_root)
    client = mlflow.MlflowClient()
    run = client.create_run(
        exp_id, tags={"pipeline.entry": entry, **(tags or {})}, run_name=f"pipeline-{entry}"
    )
    from mlflow.entities import Param

    if params:
        client.log_batch(
            run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()]
        )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def finish_parent_run(ctx: RunContext, status: str) -> None:
    if ctx.run_id is None:
        return
    import mlflow

    mlflow.MlflowClient().set_terminated(ctx.run_id, status)


@contextlib.contextmanager
def resumed_run(ctx: RunContext) -> Iterator[Any]:
    """Make the parent run active for the duration of a stage; close it FINISHED or FAILED."""
    import mlflow

    if not ctx.enabled:
        yield None
        return
    configure_mlflow(ctx.tracking_uri or mlflow.get_tracking_uri())
    while mlflow.active_run() is not None:  # a previous stage in this thread left one open
        mlflow.end_run()
    run = mlflow.start_run(run_id=ctx.run_id)
    try:
        yield run
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def log_to_run(
    ctx: RunContext,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    artifacts: list[Path] | None = None,
    artifact_dir: str | None = None,
) -> None:
    """Log a stage's params, metrics and files to the parent run (no-op without a run)."""
    if ctx.run_id is None:
        return
    import mlflow

    client = mlflow.MlflowClient(ctx.tracking_uri)
    try:
        for key, value in (params or {}).items():
            client.log_param(ctx.run_id, key, value)
        for key, value in (metrics or {}).items():
            client.log_metric(ctx.run_id, key, float(value))
        for path in artifacts or []:
            client.log_artifact(ctx.run_id, str(path), artifact_path=artifact_dir)
    except Exception as exc:
        raise TrackingError(f"could not log to MLflow at {ctx.tracking_uri}: {exc}") from None


def log_record_to_run(ctx: RunContext, record: Mapping[str, Any], name: str) -> None:
    """Log a JSON record (as written to a tracked file) to the parent run as `name`."""
    if ctx.run_id is None:
        return
    import mlflow

    try:
        mlflow.MlflowClient(ctx.tracking_uri).log_dict(ctx.run_id, dict(record), name)
    except Exception as exc:
        raise TrackingError(f"could not log to MLflow at {ctx.tracking_uri}: {exc}") from None


def load_record_of_run(ctx: RunContext, name: str) -> dict[str, Any] | None:
    """A record `log_record_to_run` logged to the parent run (None when there is none)."""
    if ctx.run_id is None:
        return None
    import mlflow

    try:
        found = mlflow.artifacts.load_dict(f"runs:/{ctx.run_id}/{name}")
    except Exception:
        return None
    return found if isinstance(found, dict) else None


def dvc_invocation_key() -> str | None:
    """Identify the `dvc repro` process that launched this stage (None when run by hand)."""
    import psutil

    try:
        proc = psutil.Process().parent()
        while proc is not None:
            cmd = " ".join(proc.cmdline())
            if (
                "dvc" in Path(proc.cmdline()[0]).name
                or " dvc " in f" {cmd} "
                or "dvc repro" in cmd
                or "dvc/__main__" in cmd
                or "-m dvc" in cmd
            ):
                return f"{proc.pid}:{proc.create_time()}"
            proc = proc.parent()
    except (psutil.Error, IndexError):
        return None
    return None


def join_or_start_dvc_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path,
    pointer: Path,
    params: Mapping[str, Any] | None = None,
) -> RunContext:
    """Parent run for a stage launched by `dvc repro` (or by hand: then a run of its own)."""
    from core.io import read_json, write_json

    key = dvc_invocation_key() or f"pid:{os.getpid()}"
    if pointer.is_file():
        try:
            recorded = read_json(pointer)
        except ValueError:
            recorded = {}
        if recorded.get("key") == key and recorded.get("tracking_uri") == tracking_uri:
            return RunContext(tracking_uri, recorded["run_id"], entry="dvc")
    run_id = start_parent_run(tracking_uri, experiment, artifact_root, entry="dvc", params=params)
    write_json({"key": key, "run_id": run_id, "tracking_uri": tracking_uri}, pointer)
    return RunContext(tracking_uri, run_id, entry="dvc")


def log_dir_to_run(ctx: RunContext, folder: Path, artifact_dir: str) -> None:
    """Log a whole folder (e.g. a Data Docs site) under `artifact_dir` of the parent run."""
    if ctx.run_id is None:
        return
    import mlflow

    try:
        mlflow.MlflowClient(ctx.tracking_uri).log_artifacts(ctx.run_id, str(folder), artifact_dir)
    except Exception as exc:
        raise TrackingError(
            f"could not log {folder} to MLflow at {ctx.tracking_uri}: {exc}"
        ) from None
