"""register: log the whole inference pipeline to MLflow and register it as a new version.

The first version becomes @champion; later ones become @challenger (the promotion gate decides
more carefully once it exists). Each version is tagged with what is needed to reproduce it.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from tasks.config import Settings
from tasks.errors import TrackingError
from tasks.io import ArtifactPaths, load_joblib, read_json, read_parquet, write_json
from tasks.model import InferenceModel
from tasks.tracking import RunContext, configure_mlflow, resumed_run

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


def choose_alias(has_champion: bool) -> str:
    """Backbone rule: the first registered version serves; later ones wait as challenger."""
    return CHALLENGER if has_champion else CHAMPION


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_md5(path: Path) -> str:
    """The same hash DVC records for a file output."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_tags(settings: Settings, ctx: RunContext, raw_path: Path, raw_rows: int) -> dict[str, str]:
    return {
        "git_commit": git_commit(settings.root),
        "data_md5": file_md5(raw_path),
        "params_hash": settings.section_hash(),
        "dataset": settings.data.source,
        "dataset_rows": str(raw_rows),
        "task": settings.data.task,
        "entry_point": ctx.entry,
        "prefect_flow_run_id": ctx.flow_run_id or "",
    }


def current_champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def log_inference_model(model: InferenceModel, model_file: Path, example: pd.DataFrame) -> Any:
    """Log the pyfunc model (models-from-code; `tasks/` travels with it); return its ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    code_dir = Path(__file__).resolve().parent
    signature = infer_signature(example, model.predict_frame(example))
    return mlflow.pyfunc.log_model(
        name="model", python_model=str(code_dir / "pyfunc.py"),
        artifacts={"inference_model": str(model_file)}, signature=signature,
        input_example=example, code_paths=[str(code_dir)], pip_requirements=_pip_requirements(),
    )


def create_version(client: Any, name: str, info: Any, run_id: str | None,
                   tags: dict[str, str]) -> Any:
    """Register the logged model as a new version of `name` (creating the model if needed)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code):
            raise
    return client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                       model_id=info.model_id, await_creation_for=60)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    names = ["mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "cloudpickle"]
    return [f"{n}=={version(n)}" for n in names]


@task(name="register", retries=2, retry_delay_seconds=2)
def register_stage(settings: Settings, ctx: RunContext) -> Path:
    import mlflow

    paths = ArtifactPaths(settings.root)
    model: InferenceModel = load_joblib(paths.model)
    test = read_parquet(paths.split("test"))
    raw_rows = read_json(paths.validation_report)["raw_rows"]
    name = settings.register_.model_name
    configure_mlflow(settings.tracking_uri)
    client = mlflow.MlflowClient()
    try:
        with resumed_run(ctx) as run:
            info = log_inference_model(model, paths.model, test[model.feature_columns].head(5))
            tags = version_tags(settings, ctx, paths.raw, raw_rows)
            version = create_version(client, name, info, run.info.run_id if run else None, tags)
            alias = choose_alias(current_champion(client, name) is not None)
            client.set_registered_model_alias(name, alias, version.version)
            mlflow.set_tags({"registered_model": name, "registered_version": version.version,
                             "registered_alias": alias})
            run_id = run.info.run_id if run else None
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"registering {name!r} in {settings.tracking_uri} failed: {exc}") from None
    record = {"model_name": name, "version": int(version.version), "alias": alias,
              "model_uri": f"models:/{name}/{version.version}", "run_id": run_id,
              "tracking_uri": settings.tracking_uri}
    write_json(record, paths.registration)
    log.info("register: %s version %s is @%s", name, version.version, alias)
    return paths.registration
