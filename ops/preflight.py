"""Checks before a run starts: fail fast on an unusable tracking store or a params key dvc.yaml
declares but params.yaml lacks, clean up after a crash.

MLflow's own client retries an unreachable server for minutes and waits on a locked SQLite file;
one quick probe here turns both into an immediate error that names the URI, before any stage ran
and long before any alias could move. After a run killed mid-way, temp files of atomic writes
(`.<name>.*.tmp`) and a promotion lock held by a process of this machine that no longer exists are
removed, and so is a model version whose registration such a process left unfinished (created,
not yet marked `registration.complete`), so the next run starts cleanly and `models:/<name>/latest`
never names a half-registered version.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from adapters.dvc import missing_params
from adapters.registry import REGISTRATION_COMPLETE, REGISTRATION_OWNER, lock_name
from core.config import ConfigError
from core.errors import TrackingError

log = logging.getLogger(__name__)

# The folders the pipeline's stages write (batch scoring's folders under data/ are not among them:
# a scorer running next to a training run keeps its temp files).
ARTIFACT_DIRS = (
    "data/raw",
    "data/validated",
    "data/quarantine",
    "data/processed",
    "models",
    "metrics",
    "plots",
    "reports",
)


def check_tracking_store(uri: str, timeout_s: float = 3.0) -> None:
    """Raise TrackingError (naming the URI) unless the store answers within timeout_s."""
    if uri.startswith(("http://", "https://")):
        _check_http(uri, timeout_s)
    elif uri.startswith("sqlite:///"):
        _check_sqlite(uri, timeout_s)


def _check_http(uri: str, timeout_s: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            if resp.status >= 400:
                raise TrackingError(
                    f"MLflow tracking server {uri} answered {resp.status} on /health"
                )
    except urllib.error.HTTPError as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} answered {exc.code} on /health; "
            "is that an MLflow server?"
        ) from None
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking store {uri} is unreachable ({reason}); start the "
            "server or set register.tracking_uri / MLFLOW_TRACKING_URI"
        ) from None


def _check_sqlite(uri: str, timeout_s: float) -> None:
    path = Path(uri[len("sqlite:///") :])
    if not path.exists():
        if not path.parent.is_dir():
            raise TrackingError(f"MLflow tracking store {uri}: folder {path.parent} does not exist")
        return  # MLflow creates the database on first use
    try:
        conn = sqlite3.connect(str(path), timeout=timeout_s)
        try:
            conn.execute("BEGIN IMMEDIATE")  # needs the write lock, as logging a run does
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        hint = " (another process holds a write lock)" if "locked" in str(exc) else ""
        raise TrackingError(f"MLflow tracking store {uri} is not usable: {exc}{hint}") from None
    except sqlite3.DatabaseError as exc:
        raise TrackingError(
            f"MLflow tracking store {uri} is not an SQLite database: {exc}"
        ) from None


def remove_stale_temp_files(root: Path) -> list[Path]:
    """Delete leftovers of interrupted atomic writes (files and folders) in and next to the
    artifact folders: a folder output is staged next to itself (core/io.py atomic_dir), so
    `.plots.<x>.tmp` lies in the project root and `.raw.<x>.tmp` in data/."""
    candidates: set[Path] = set()
    for top in ARTIFACT_DIRS:
        base = root / top
        candidates.update(base.parent.glob(f".{base.name}.*.tmp"))
        if base.is_dir():
            candidates.update(base.rglob(".*.tmp"))
    removed: list[Path] = []
    for p in sorted(candidates):
        if not p.exists() and not p.is_symlink():  # inside a folder removed just before
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
    for p in removed:
        log.info("preflight: removed %s left by an interrupted run", p.relative_to(root))
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that id runs (or exists under another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def break_dead_owner_lock(client: Any, model_name: str) -> bool:
    """Delete the promotion lock if its owner is a process on this host that no longer runs.

    A lock of a live process, or of another host, is left to its TTL (adapters/registry.py).
    """
    from mlflow.exceptions import MlflowException

    name = lock_name(model_name)
    try:
        tags = dict(client.get_registered_model(name).tags)
    except MlflowException:
        return False
    host, _, pid = tags.get("lock.owner", "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or pid_alive(int(pid)):
        return False
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(name)
        log.warning(
            "preflight: removed the promotion lock %r left by process %s, which no longer runs",
            name,
            pid,
        )
        return True
    return False


def owner_gone(owner: str | None, created_ms: int, ttl_s: float) -> bool:
    """Whether whoever wrote `<host>:<pid>` can no longer finish: a process of this host that no
    longer runs; for another host (or no owner recorded), older than ttl_s."""
    host, _, pid = (owner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not pid_alive(int(pid))
    return time.time() - created_ms / 1000 > ttl_s


def is_finished(version: Any) -> bool:
    tags = dict(version.tags)
    if tags.get(REGISTRATION_COMPLETE) == "true":
        return True
    if REGISTRATION_OWNER in tags:
        return False
    if "entry_point" not in tags:  # not registered by this pipeline (say, by hand): not ours
        return True
    # Registered before versions carried an owner: complete when it has what registering writes
    # (the full model's gate tags and card; a compact model's link to its full version).
    return "full_version" in tags or ("gate.decision" in tags and bool(version.description))


def clear_unfinished_versions(client: Any, names: list[str], ttl_s: float) -> list[str]:
    """Remove versions whose registration was left unfinished by a process that is gone.

    One that already holds an alias had its gate tags and card written before the alias (see
    tasks/register/stage.py): it is only marked complete. Returns `<name> v<N>` of each."""
    from mlflow.exceptions import MlflowException

    cleared: list[str] = []
    for name in names:
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except MlflowException:
            continue
        for found in versions:
            if is_finished(found):
                continue
            owner = dict(found.tags).get(REGISTRATION_OWNER)
            if not owner_gone(owner, int(found.creation_timestamp or 0), ttl_s):
                continue
            mv = client.get_model_version(name, found.version)
            if mv.aliases:
                client.set_model_version_tag(name, mv.version, REGISTRATION_COMPLETE, "true")
                what = "marked complete (it holds @" + ", @".join(mv.aliases) + ")"
            else:
                client.delete_model_version(name, mv.version)
                what = "removed"
            log.warning(
                "preflight: %s v%s, left half-registered by %s, %s",
                name,
                mv.version,
                owner or "an earlier run",
                what,
            )
            cleared.append(f"{name} v{mv.version}")
    return cleared


def check_declared_params(root: Path) -> None:
    """Raise ConfigError when params.yaml lacks a key dvc.yaml declares for a stage: DVC would
    stop with MissingParamsError at that stage, after the earlier ones ran."""
    params = root / "params.yaml"
    if not (root / "dvc.yaml").is_file() or not params.is_file():
        return
    raw = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
    missing = missing_params(root, raw if isinstance(raw, dict) else {})
    if missing:
        keys = "; ".join(f"{k} (stage {', '.join(s)})" for k, s in sorted(missing.items()))
        raise ConfigError(
            f"{params} lacks keys that dvc.yaml declares as stage params: {keys}. Add them "
            "(null where the task type does not use them) or declare their section in dvc.yaml."
        )


def preflight(settings: Any) -> None:
    """Everything a run checks before its first stage."""
    check_declared_params(settings.root)
    check_tracking_store(settings.tracking_uri)
    remove_stale_temp_files(settings.root)
    import mlflow

    from adapters.tracking import configure_mlflow

    configure_mlflow(settings.tracking_uri)
    name = settings.register_.model_name
    client = mlflow.MlflowClient()
    try:
        break_dead_owner_lock(client, name)
        clear_unfinished_versions(client, [name, f"{name}-compact"], settings.gate.lock_ttl_s)
    except Exception as exc:  # the store answered the probe; a real failure shows up later
        log.warning("preflight: registry clean-up skipped: %s", exc)
