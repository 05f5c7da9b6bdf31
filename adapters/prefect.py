"""Prefect plumbing: task runners for the tuning trials, the API they talk to, and servers.

- `task_runner`: the started task runner for trial tasks (processes, threads or Dask), with
  every trial process pointed at this process's Prefect API.
- `start_server` / `stop_process_group`: a Prefect server on 127.0.0.1 in its own process group
  (`python -m flows serve --start-server`, the deployment tests).
- `interrupts_stop_the_runner`: Ctrl-C cancels the served runs instead of leaving them Running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.config import TuneRunnerSettings


# ------------------------------------------------------------------------------------------------
# Task runners
# ------------------------------------------------------------------------------------------------
def make_task_runner(runner: TuneRunnerSettings) -> Any:
    if runner.kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=runner.workers)
    if runner.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=runner.workers)
    from prefect_dask import DaskTaskRunner

    # When the local cluster shuts down, the scheduler's batched streams to its workers close and
    # distributed logs that at INFO *with a traceback* ("Batched Comm Closed"): expected, but it
    # reads like a crash in a clean run. Only INFO is hidden; errors of that logger still show.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    if runner.address:
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": runner.workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
        },
    )


@contextmanager
def shared_prefect_api() -> Iterator[None]:
    """Point trial processes at this process's Prefect API.

    Without PREFECT_API_URL, Prefect runs a temporary local server per process; worker processes
    would each start their own. Started once here (inside a flow it is already running) and
    passed on, every trial is a task run on the same server (under the flow run, if any)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if url:
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


@contextmanager
def context_serialized_once() -> Iterator[None]:
    """Prefect's process runner serialises the whole Prefect context on every submit,
    every setting through pydantic: measured ~75 ms of the parent's CPU per trial here (prefect
    3.9.1), competing with the workers for the cores when trials take well under a second.
    Nothing in that context changes while a study runs (same flow run, same `tune` task run,
    same settings), so inside this block it is serialised once and reused."""
    import prefect.context as prefect_context

    original = prefect_context.serialize_context
    once = original()

    def serialize_context(asset_ctx_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        return once if asset_ctx_kwargs is None else original(asset_ctx_kwargs)

    prefect_context.serialize_context = serialize_context
    try:
        yield
    finally:
        prefect_context.serialize_context = original


@contextmanager
def task_runner(runner_settings: TuneRunnerSettings) -> Iterator[Any]:
    """The started task runner for trial tasks (workers start on the first submit)."""
    with (
        shared_prefect_api(),
        make_task_runner(runner_settings) as runner,
        context_serialized_once(),
    ):
        yield runner


# ------------------------------------------------------------------------------------------------
# A Prefect server on loopback
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    home: Path, port: int | None = None, ui: bool = True, timeout_s: float = 90.0
) -> tuple[subprocess.Popen[bytes], str]:
    """A Prefect server on 127.0.0.1 (own process group) with its database under `home`."""
    port = port or free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        # The UI asks the server which API to call (/ui-settings). `--port` alone does not
        # change the server's own settings, which then name the default port 4200.
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": api,
    }
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [
        str(prefect) if prefect.exists() else "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_healthy(f"{api}/health", proc, timeout_s, what="prefect server")
    except RuntimeError:
        stop_process_group(proc)
        raise
    return proc, api


@contextmanager
def interrupts_stop_the_runner() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM both stop a served runner the way Prefect handles SIGTERM:
    the runner kills its flow runs' processes and marks the runs Cancelled, then pauses the
    schedules and returns. A plain KeyboardInterrupt would leave a run in flight "Running".

    Before the runner has started (and after it returned) either signal raises
    KeyboardInterrupt, so the caller's cleanup (e.g. stopping the server) still runs. The
    handlers are installed whatever the inherited disposition (a background job inherits
    SIGINT ignored)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum: int, frame: Any) -> None:
        runner_handler = signal.getsignal(signal.SIGTERM)  # Runner.start installs its own
        if callable(runner_handler) and runner_handler is not stop:
            runner_handler(signum, frame)
        else:
            raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_healthy(
    url: str, proc: subprocess.Popen[Any], timeout_s: float = 90.0, what: str = "server"
) -> None:
    """Poll url until it answers 200; fail if proc exits or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout_s:.0f}s")


def stop_process_group(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 20.0
) -> None:
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
