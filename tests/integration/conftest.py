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

from tests.conftest import ROOT

COPY = ["tasks", "flows", "expectations", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore",
        "data/labelled"]


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
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
    out = dict(base)
    for key, value in new.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and value else value
    return out


def make_project(tmp: Path, frame: pd.DataFrame | None = None, file_name: str = "data.csv",
                 suggest_suites: bool = False, **sections: dict[str, Any]) -> Project:
    """A project copy. The committed suites in expectations/ describe the credit data; for any
    other dataset pass suggest_suites=True, which runs `python -m flows suggest-expectations`
    the way a new user would (and commits the result with the project)."""
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
        frame.to_parquet(dest, index=False) if file_name.endswith(".parquet") else \
            frame.to_csv(dest, index=False)
        sections.setdefault("data", {})["source"] = f"data/source/{file_name}"
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(root),
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GIT_PYTHON_REFRESH": "quiet",
        "DVC_NO_ANALYTICS": "1",
    })
    project = Project(root, env)
    # Small and quick: few trees, one thread, tiny splits still stratified.
    project.set_params(train={"n_estimators": 150, "early_stopping_rounds": 15, "n_jobs": 1},
                       **sections)
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
