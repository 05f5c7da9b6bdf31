"""Fail fast on an unusable tracking store; clean up after a killed run."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import TrackingError
from ops.preflight import break_dead_owner_lock, check_tracking_store, remove_stale_temp_files


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_fast_naming_the_uri() -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable") as err:
        check_tracking_store(uri)
    assert uri in str(err.value)
    assert time.monotonic() - start < 30  # not MLflow's minutes of retries


def test_locked_sqlite_store_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    sqlite3.connect(db).execute("create table t (x int)")
    uri = f"sqlite:///{db}"
    check_tracking_store(uri)  # unlocked: fine
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TrackingError, match="locked") as err:
            check_tracking_store(uri, timeout_s=0.2)
        assert str(db) in str(err.value)
    finally:
        holder.rollback()
        holder.close()


def test_missing_folder_and_non_database(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match="does not exist"):
        check_tracking_store(f"sqlite:///{tmp_path}/nope/mlflow.db")
    check_tracking_store(f"sqlite:///{tmp_path}/new.db")  # created on first use
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all, just text " * 100)
    with pytest.raises(TrackingError, match="junk.db"):
        check_tracking_store(f"sqlite:///{junk}")


def test_temp_files_of_interrupted_writes_are_removed(tmp_path: Path) -> None:
    (tmp_path / "data/raw").mkdir(parents=True)
    stale = tmp_path / "data/raw/.raw.parquet.abc123.tmp"
    stale.write_bytes(b"half")
    keep = tmp_path / "data/raw/raw.parquet"
    keep.write_bytes(b"whole")
    plots = tmp_path / "plots"
    half_dir = plots.parent / ".plots.xyz.tmp"  # an interrupted atomic_dir
    (half_dir / "sub").mkdir(parents=True)
    plots.mkdir()
    scorer = tmp_path / "data/predictions/.b.predictions.parquet.q1.tmp"  # a live scorer's write
    scorer.parent.mkdir(parents=True)
    scorer.write_bytes(b"being written")
    assert remove_stale_temp_files(tmp_path) == [half_dir, stale]
    assert not stale.exists() and not half_dir.exists() and keep.exists() and scorer.exists()
    (plots / ".roc.png.x.tmp").write_bytes(b"")
    (tmp_path / "reports/.tuning.q.tmp/sub").mkdir(parents=True)
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".roc.png.x.tmp", ".tuning.q.tmp"]
    assert not (tmp_path / "reports/.tuning.q.tmp").exists()


class _Registry:
    def __init__(self, owner: str) -> None:
        self.models = {"m.promotion-lock": SimpleNamespace(tags={"lock.owner": owner})}

    def get_registered_model(self, name: str):  # type: ignore[no-untyped-def]
        from mlflow.exceptions import MlflowException

        if name not in self.models:
            raise MlflowException("not found")
        return self.models[name]

    def delete_registered_model(self, name: str) -> None:
        del self.models[name]


def test_lock_of_a_dead_local_process_is_removed_others_are_kept() -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    gone = _Registry(f"{host}:{dead.pid}")
    assert break_dead_owner_lock(gone, "m") and not gone.models
    alive = _Registry(f"{host}:{os.getpid()}")
    assert not break_dead_owner_lock(alive, "m") and alive.models
    remote = _Registry(f"another-host:{dead.pid}")
    assert not break_dead_owner_lock(remote, "m") and remote.models
    assert not break_dead_owner_lock(_Registry(f"{host}:{dead.pid}"), "other")  # no lock


class _Versions:
    """Model versions of a fake registry: tags, description, aliases, creation time."""

    def __init__(self, *versions: SimpleNamespace) -> None:
        self.versions = {v.version: v for v in versions}

    def search_model_versions(self, query: str):  # type: ignore[no-untyped-def]
        return [v for v in self.versions.values() if f"name='{v.name}'" == query]

    def get_model_version(self, name: str, version: str):  # type: ignore[no-untyped-def]
        return self.versions[version]

    def delete_model_version(self, name: str, version: str) -> None:
        del self.versions[version]

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.versions[version].tags[key] = value


def _version(v: str, tags: dict[str, str], description: str = "", aliases=(), age_s=0.0):  # type: ignore[no-untyped-def]
    return SimpleNamespace(
        name="m",
        version=v,
        tags=tags,
        description=description,
        aliases=list(aliases),
        creation_timestamp=int((time.time() - age_s) * 1000),
    )


def test_half_registered_versions_of_gone_owners_are_removed_or_completed() -> None:
    import subprocess
    import sys

    from ops.preflight import clear_unfinished_versions

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    owner = "registration.owner"
    registry = _Versions(
        _version("1", {owner: f"{host}:{dead.pid}", "registration.complete": "true"}, "card"),
        _version("2", {owner: f"{host}:{dead.pid}"}),  # killed before its gate tags: removed
        _version(
            "3", {owner: f"{host}:{dead.pid}", "gate.decision": "promote"}, "card", ["champion"]
        ),
        _version("4", {owner: f"{host}:{os.getpid()}"}),  # still being registered: kept
        _version("5", {owner: f"elsewhere:{dead.pid}"}, age_s=10),  # other host, young: kept
        _version("6", {owner: f"elsewhere:{dead.pid}"}, age_s=1000),  # other host, expired
        _version("7", {"entry_point": "dvc"}, age_s=1000),  # older pipeline, never finished
        _version("8", {"entry_point": "dvc", "gate.decision": "keep"}, "card", age_s=1000),
        _version("9", {}, age_s=1000),  # registered by hand: not ours to judge
    )
    cleared = clear_unfinished_versions(registry, ["m"], ttl_s=900)
    assert cleared == ["m v2", "m v3", "m v6", "m v7"]
    assert sorted(registry.versions) == ["1", "3", "4", "5", "8", "9"]
    assert registry.versions["3"].tags["registration.complete"] == "true"


def test_a_declared_param_missing_from_params_yaml_stops_the_run_at_start(tmp_path: Path) -> None:
    import yaml

    from core.config import ConfigError
    from ops.preflight import check_declared_params
    from tests.conftest import ROOT

    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["data"]["positive_label"]  # a whole-section declaration: may be absent
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    check_declared_params(tmp_path)
    del params["evaluate"]["threshold"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"evaluate.threshold \(stage tune, evaluate\)"):
        check_declared_params(tmp_path)
