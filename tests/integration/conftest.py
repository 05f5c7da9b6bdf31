"""A throwaway copy of the project (git + DVC initialised) in a temp folder, and runners for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from core import CODE_PACKAGES
from tests.conftest import ROOT

COPY = [
    *CODE_PACKAGES,
    "expectations",
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    "data/labelled",
]

# One real Prefect server (127.0.0.1, temp home) shared by the projects of a test session, so
# each flow run does not pay for starting and migrating a temporary server of its own.
_PREFECT_API: dict[str, str] = {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI, which Settings honours; a URI
    left by an earlier test (say, a stopped `mlflow server`) must not leak into the next one."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    import signal
    import time
    import urllib.request

    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
    )
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not start: {(home / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        _PREFECT_API["url"] = url
        yield url
    finally:
        _PREFECT_API.clear()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: int = 600
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def flow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "flows", *args, check=check)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def set_params(self, **sections: dict[str, Any]) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for name, values in sections.items():
            params[name] = _merge(params.get(name, {}), values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base or {})
    for key, value in new.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and value else value
    return out


def make_project(
    tmp: Path,
    frame: pd.DataFrame | None = None,
    file_name: str = "data.csv",
    suggest_suites: bool = False,
    shared_prefect: bool = True,
    **sections: dict[str, Any],
) -> Project:
    """A project copy. The committed suites in expectations/ describe the credit data; for any
    other dataset pass suggest_suites=True, which runs `python -m flows suggest-expectations`
    the way a new user would (and commits the result with the project).
    shared_prefect=False leaves PREFECT_API_URL unset: flows start a temporary server, as
    `make run` does for a user."""
    root = tmp / "project"
    root.mkdir()
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, root / name)
    (root / "data" / "source").mkdir(parents=True)
    (root / "data" / "source" / ".gitkeep").touch()
    if frame is not None:
        dest = root / "data" / "source" / file_name
        frame.to_parquet(dest, index=False) if file_name.endswith(".parquet") else frame.to_csv(
            dest, index=False
        )
        sections.setdefault("data", {})["source"] = f"data/source/{file_name}"
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(root),
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "DVC_NO_ANALYTICS": "1",
            **({"PREFECT_API_URL": _PREFECT_API["url"]} if _PREFECT_API and shared_prefect else {}),
        }
    )
    project = Project(root, env)
    # Small and quick: few trees, one thread, tiny splits still stratified.
    # Tuning: a handful of trials on small folds, on threads (tests that exercise the process
    # or Dask runner ask for it). Compress builds few candidates, times few rows and compiles
    # nothing unless a test asks for it.
    # Tuning and compression are OFF unless a test turns them on (`tune={"enabled": True}`):
    # their stages still run (and write their outputs) but cost little; tests/unit covers their
    # logic and a few integration tests run them for real.
    tune = _merge(
        {
            "enabled": False,
            "n_trials": 4,
            "n_folds": 3,
            "max_rounds": 150,
            "early_stopping_rounds": 10,
            "min_resource": 10,
            "report_every": 5,
            "runner": {"kind": "thread", "workers": 2, "threads_per_trial": 1},
            # Model selection: the trials and the linear model, blended when that scores better.
            "learners": ["linear"],
            "ensemble": {"lightgbm_pool": 3, "iterations": 10},
        },
        sections.pop("tune", {}),
    )
    project.set_params(
        train={"n_estimators": 150, "early_stopping_rounds": 15, "n_jobs": 1},
        tune=tune,
        compress={
            "enabled": False,
            "feature_fractions": [0.5],
            "student_rounds": 30,
            "synthetic_factor": 0.5,
            "quantize": ["int8"],
            "compile": False,
            "latency_rows": 5,
            "batch_seconds": 0.02,
        },
    )
    if sections:
        project.set_params(**sections)
    project.run("git", "init", "-q")
    project.run("git", "config", "user.email", "ci@example.invalid")
    project.run("git", "config", "user.name", "ci")
    project.dvc("init", "-q")
    project.dvc("config", "core.analytics", "false")
    if suggest_suites:
        project.flow("suggest-expectations", "--force")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-qm", "project under test")
    return project


@pytest.fixture
def credit_small(credit: pd.DataFrame) -> pd.DataFrame:
    return credit.sample(900, random_state=11).reset_index(drop=True)
