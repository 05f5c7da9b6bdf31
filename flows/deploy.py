"""Deployments: the training flow on `schedule.training_cron`, batch scoring on
`schedule.scoring_cron`, served by this process (`python -m flows serve`).

`make serve` also starts a local Prefect server on 127.0.0.1 with the project's PREFECT_HOME
(`start_server`), so the Prefect UI shows both deployments with their schedules. On a team's own
infrastructure the same flows are deployed to a work pool with `prefect deploy` (prefect.yaml).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tasks.config import Settings

TRAINING_DEPLOYMENT = "scheduled-training"
SCORING_DEPLOYMENT = "batch-scoring"


def build_deployments(settings: Settings, params_path: Path, interval_s: float | None = None,
                      only: str | None = None) -> list[Any]:
    """The runner deployments (both, or `only` "training" / "scoring"); `interval_s` replaces
    the crons (for trying it out)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    from flows.scoring import scoring_flow
    from flows.training import training_flow

    tz = settings.schedule.timezone

    def schedule(cron: str) -> Any:
        return Interval(interval_s) if interval_s else Cron(cron, timezone=tz)

    common = {"parameters": {"params_path": str(params_path)},
              "entrypoint_type": EntrypointType.MODULE_PATH, "tags": [settings.base.project]}
    deployments = {
        "training": lambda: training_flow.to_deployment(
            name=TRAINING_DEPLOYMENT, schedule=schedule(settings.schedule.training_cron),
            description="Retrain on data.source + retrain.incoming; gate; register", **common),
        "scoring": lambda: scoring_flow.to_deployment(
            name=SCORING_DEPLOYMENT, schedule=schedule(settings.schedule.scoring_cron),
            description="Score scoring.incoming with scoring.model_uri", **common),
    }
    return [make() for kind, make in deployments.items() if only in (None, kind)]


def serve_deployments(settings: Settings, params_path: Path, interval_s: float | None,
                      only: str | None = None) -> None:
    """Register the deployments with the Prefect API and run their scheduled runs here, one at a
    time: the runs share one working copy (DVC outputs, incoming folders), so they must not
    overlap. Ctrl-C pauses the schedules and stops."""
    from prefect import serve

    # Scheduled runs execute in subprocesses that import flows/ and tasks/ by module path.
    root = str(settings.root)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    if root not in sys.path:
        sys.path.insert(0, root)
    serve(*build_deployments(settings, params_path, interval_s, only), limit=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, port: int | None = None, ui: bool = True,
                 timeout_s: float = 90.0) -> tuple[subprocess.Popen[bytes], str]:
    """A Prefect server on 127.0.0.1 (own process group) with its database under `home`."""
    port = port or free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_ENABLED": "true" if ui else "false",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect) if prefect.exists() else "prefect", "server", "start",
           "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_healthy(f"{api}/health", proc, timeout_s, what="prefect server")
    except RuntimeError:
        stop_process_group(proc)
        raise
    return proc, api


def wait_until_healthy(url: str, proc: subprocess.Popen[Any], timeout_s: float = 90.0,
                       what: str = "server") -> None:
    """Poll url until it answers 200; fail if proc exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout_s:.0f}s")


def stop_process_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                       timeout_s: float = 20.0) -> None:
    """Stop a process started with start_new_session=True and everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group (already-exited leader)
