"""Shared by the benchmarks: a throwaway project copy, the stage order, and a process-tree
memory sampler. Stage names come from flows/training.py STAGES in dvc.yaml order, so stages added
later (features, tune, compress, ...) are measured without editing the benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from core import CODE_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
COPY = [*CODE_PACKAGES, "expectations", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"]


def stage_names(root: Path = ROOT) -> list[str]:
    """The flow's stages, in the order dvc.yaml lists them (STAGES must agree)."""
    sys.path.insert(0, str(root))
    try:
        from flows.training import STAGES
    finally:
        sys.path.remove(str(root))
    declared = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    return [s for s in declared if s in STAGES] + [s for s in STAGES if s not in declared]


def merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base or {})
    for key, value in new.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) and value else value
    return out


@dataclass
class Project:
    root: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
        return proc

    def python(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, *args, timeout=timeout)

    def set_params(self, **sections: dict[str, Any]) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for name, values in sections.items():
            params[name] = merge(params.get(name, {}), values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_project(
    tmp: Path,
    source_files: dict[str, Path] | None = None,
    git_dvc: bool = True,
    **sections: dict[str, Any],
) -> Project:
    """A project copy in tmp/project (own PREFECT_HOME, own MLflow store), like the tests'."""
    root = tmp / "project"
    root.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, root / name)
    shutil.copytree(ROOT / "data" / "source", root / "data" / "source")
    shutil.copytree(ROOT / "data" / "labelled", root / "data" / "labelled")  # retrain.incoming
    for rel, src in (source_files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, root / rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(root),
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
    )
    project = Project(root, env)
    if sections:
        project.set_params(**sections)
    if git_dvc:
        project.run("git", "init", "-q")
        project.run("git", "config", "user.email", "bench@example.invalid")
        project.run("git", "config", "user.name", "bench")
        project.python("-m", "dvc", "init", "-q")
        project.python("-m", "dvc", "config", "core.analytics", "false")
        project.run("git", "add", "-A")
        project.run("git", "commit", "-qm", "bench project")
    return project


@dataclass
class TreeSampler:
    """Peak resident memory of a process and all its children, sampled every `interval` s."""

    pid: int
    interval: float = 0.1
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += p.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def measured(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float | None = None
) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Run a command; return (wall seconds, peak RSS bytes of its process tree, result)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with TreeSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(
                f"{' '.join(cmd)} timed out after {timeout}s\n{err[-3000:]}"
            ) from None
    wall = time.perf_counter() - start
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{err[-3000:]}")
    return wall, sampler.peak_bytes, result


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
