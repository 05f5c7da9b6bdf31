"""The MLflow model registry: logging a pyfunc model, versions, aliases, and a promotion lock.

Logging: the registered model is "models from code" (a pyfunc file of the `inference` package);
the `inference` package is its only `code_paths`, so a registered model never depends on the
training code's imports or file names.

The promotion lock. MLflow has no compare-and-set for aliases: `set_registered_model_alias` is an
unconditional upsert, and tags are upserts too, so "write a tag, read it back" is not mutual
exclusion. The one operation every registry backend (SQL stores and the REST server in front of
them) makes atomic is `create_registered_model(name)`: a unique constraint lets exactly one caller
create a name, the others get RESOURCE_ALREADY_EXISTS. The lock is therefore a sibling registered
model `<model>.promotion-lock`, created to acquire and hard-deleted to release. It carries a
random token (to tell our lock from a successor's) and an expiry time, so a lock left by a crashed
run is broken after `ttl_s` instead of blocking promotions for ever. Whoever holds the lock reads
@champion, decides, and moves the alias; right before the write it checks that it still holds the
lock (fencing), and afterwards reads the alias back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# Registering takes several writes (version, gate tags, description, alias). A version is
# created carrying its owner and gets the completion tag as the last write; a version whose
# owner died before that is removed by the next run (ops/preflight.py), so a reader never finds
# a half-registered version as the newest.
REGISTRATION_OWNER, REGISTRATION_COMPLETE = "registration.owner", "registration.complete"
INFERENCE_DIR = Path(__file__).resolve().parents[1] / "inference"
# Module paths of the inference code before it had a package of its own; models registered
# then pickled their objects under these names.
LEGACY_MODULES = {
    "tasks.model": "inference.model",
    "tasks.transformers": "inference.transformers",
    "tasks.compact": "inference.compact",
    "tasks.errors": "inference.errors",
}


# ------------------------------------------------------------------------------------------------
# Logging and registering models
# ------------------------------------------------------------------------------------------------
def pip_requirements(*extra: str) -> list[str]:
    """Exact versions of what the logged model imports (plus `extra` packages)."""
    from importlib.metadata import version

    names = [
        "mlflow",
        "lightgbm",
        "scikit-learn",
        "pandas",
        "numpy",
        "pyarrow",
        "cloudpickle",
        *extra,
    ]
    return [f"{n}=={version(n)}" for n in names]


def input_signature(example: pd.DataFrame, output: pd.DataFrame) -> Any:
    """Every input column typed as the training data holds it (MLflow's inferred schema):
    integer columns `long`, others `double`, text `string`.

    So `pyfunc.predict(raw_rows)` takes rows with the ingested table's dtypes as they are, and
    MLflow's scoring server converts JSON and `text/csv` input to these types, answering a value
    it cannot convert with a 400 that names the column. A column that never had a missing value
    in training is an integer column: a missing value there is refused with MLflow's hint
    (batch scoring, which validates rows with the raw suite first, still scores it: the model
    imputes).

    Every column is required: the model reads them all. (MLflow would mark a column optional
    where the example rows happen to miss a value, and then let a request without that column
    through to fail inside the model.)"""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    with warnings.catch_warnings():  # MLflow's hint about integer columns: answered above
        warnings.simplefilter("ignore", UserWarning)
        inferred = infer_signature(example, output)
    inputs = Schema([ColSpec(c.type, c.name, required=True) for c in inferred.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs)


def log_pyfunc_model(
    name: str,
    pyfunc_file: str,
    artifacts: dict[str, str],
    signature: Any,
    example: pd.DataFrame,
    requirements: list[str],
) -> Any:
    """Log a models-from-code pyfunc of the inference package into the active run."""
    import mlflow

    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(INFERENCE_DIR / pyfunc_file),
        artifacts=artifacts,
        signature=signature,
        input_example=example,
        code_paths=[str(INFERENCE_DIR)],
        pip_requirements=requirements,
    )


def process_owner() -> str:
    """Who holds a lock or is registering a version: `<host>:<pid>`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def create_version(
    client: Any, name: str, info: Any, run_id: str | None, tags: dict[str, str]
) -> Any:
    """Register the logged model as a new version of `name` (creating the model if needed).

    The version carries its owner (REGISTRATION_OWNER) until the caller marks it complete."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code):
            raise
    return client.create_model_version(
        name,
        source=info.model_uri,
        run_id=run_id,
        tags={**tags, REGISTRATION_OWNER: process_owner()},
        model_id=info.model_id,
        await_creation_for=60,
    )


def current_champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def model_exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


@contextlib.contextmanager
def loading_registered_code() -> Iterator[None]:
    """Load a registered model without letting its logged code shadow this process's modules.

    MLflow prepends the model's code folder to sys.path on load; it is put back afterwards so
    later imports keep using the current code. Models registered before the inference package
    existed pickled their objects as `tasks.<module>`: while loading, those names resolve to the
    inference package (same classes, same state).
    """
    import importlib

    saved_path = list(sys.path)
    aliased = []
    for old, new in LEGACY_MODULES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
            aliased.append(old)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for old in aliased:
            sys.modules.pop(old, None)


def load_registered_model(uri: str) -> Any:
    """`mlflow.pyfunc.load_model(uri)`, isolated as `loading_registered_code` describes."""
    import mlflow

    with loading_registered_code():
        return mlflow.pyfunc.load_model(uri)


def predict_validated(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """A loaded pyfunc model's predictions for rows the raw GX suite has already passed, from the
    logged Python model itself (same code, same outputs as `predict`).

    `pyfunc.predict` first enforces the signature: an integer column of the model's training
    data that now holds a missing value would be refused, though the model imputes it, and on
    large batches MLflow's per-value checks cost more than the model. Models that are not Python
    models (other flavors registered by hand) still go through `pyfunc.predict`."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a PythonModel flavor: MLflow's own predict path
        return pd.DataFrame(model.predict(rows))
    return pd.DataFrame(python_model.predict(None, rows))


def predict_evaluation_model(name: str, version: str, rows: pd.DataFrame) -> pd.DataFrame | None:
    """What the evaluation model of `models:/<name>/<version>` (learnt without the test split)
    predicts for these validated raw rows; None when the version carries none."""
    with loading_registered_code():
        import mlflow

        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        try:
            get = loaded.unwrap_python_model().evaluation_model
        except Exception:  # not our pyfunc, or registered before it had one
            return None
        model = get()
        return None if model is None else pd.DataFrame(model.predict_frame(rows))


def registered_python_model(name: str, version: str) -> Any:
    """The object a registered version's pyfunc wraps (for this project's models, the fitted
    InferenceModel), to read facts that versions registered earlier did not record as tags."""
    with loading_registered_code():
        import mlflow

        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        return getattr(loaded.unwrap_python_model(), "model", None)


def predict_registered_version(name: str, version: str, rows: pd.DataFrame) -> pd.DataFrame:
    """What `models:/<name>/<version>` returns for these validated raw rows."""
    with loading_registered_code():
        import mlflow

        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        return predict_validated(loaded, rows)


# ------------------------------------------------------------------------------------------------
# The promotion lock
# ------------------------------------------------------------------------------------------------
LOCK_SUFFIX = ".promotion-lock"


class LockTimeout(RuntimeError):
    """The promotion lock could not be acquired, or was lost before the alias write."""


def lock_name(model_name: str) -> str:
    return f"{model_name}{LOCK_SUFFIX}"


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


class RegistryLock:
    def __init__(
        self,
        client: Any,
        model_name: str,
        ttl_s: float = 900.0,
        timeout_s: float = 300.0,
        poll_s: float = 0.2,
    ) -> None:
        self.client = client
        self.name = lock_name(model_name)
        self.ttl_s, self.timeout_s, self.poll_s = ttl_s, timeout_s, poll_s
        self.token: str | None = None
        self.waited_s = 0.0

    def acquire(self) -> str:
        from mlflow.exceptions import MlflowException

        token = uuid.uuid4().hex
        start = time.monotonic()
        while True:
            try:
                self.client.create_registered_model(
                    self.name,
                    tags={
                        "lock.token": token,
                        "lock.owner": process_owner(),
                        "lock.expires_at": f"{time.time() + self.ttl_s:.3f}",
                    },
                    description="Promotion lock held by a training run while it moves aliases "
                    "(adapters/registry.py). Deleted on release; expires by itself.",
                )
                self.token = token
                self.waited_s = time.monotonic() - start
                return token
            except MlflowException as exc:
                # ALREADY_EXISTS: someone holds it. DOES_NOT_EXIST: the store hit the unique
                # constraint, then the holder released before the store re-read the row.
                if _error_code(exc) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                    raise
            self._break_if_expired()
            if time.monotonic() - start > self.timeout_s:
                raise LockTimeout(
                    f"could not acquire the registry lock {self.name!r} within "
                    f"{self.timeout_s:g}s (another run is promoting; if none is, "
                    f"delete that registered model)"
                )
            time.sleep(self.poll_s * (0.5 + random.random()))  # jittered back-off

    def _read(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags)
        except MlflowException:
            return None

    def _break_if_expired(self) -> None:
        from mlflow.exceptions import MlflowException

        tags = self._read()
        if tags is None or float(tags.get("lock.expires_at", "inf")) >= time.time():
            return
        # Re-read right before deleting, so we only delete the expired lock we looked at.
        again = self._read()
        if again is not None and again.get("lock.token") == tags.get("lock.token"):
            log.warning(
                "register: breaking an expired promotion lock held by %s",
                tags.get("lock.owner", "?"),
            )
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model(self.name)

    def still_held(self) -> bool:
        tags = self._read()
        return (
            tags is not None
            and self.token is not None
            and tags.get("lock.token") == self.token
            and float(tags.get("lock.expires_at", "inf")) > time.time()
        )

    def release(self) -> None:
        from mlflow.exceptions import MlflowException

        if self.token is not None and (self._read() or {}).get("lock.token") == self.token:
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model(self.name)
        self.token = None

    @contextlib.contextmanager
    def held(self) -> Iterator[RegistryLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()
