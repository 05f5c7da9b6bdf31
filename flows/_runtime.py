"""Process-level setup for the command line, done before Prefect or MLflow are imported.

Kept out of the library modules so that importing them has no side effects.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

# The project's own loggers: shown at INFO, and sent to the Prefect run log inside a flow.
LOGGERS = ("tasks", "flows", "adapters", "ops", "core", "inference")


def prepare_environment(root: Path, in_flow: bool) -> None:
    """Offline-friendly, quiet defaults; any value the user already set wins."""
    defaults = {
        # In a flow our loggers go to the Prefect run log; in a DVC stage there is no flow run.
        **(
            {"PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(LOGGERS)}
            if in_flow
            else {"PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}
        ),
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The temporary server migrates its database on first use; 20 s is too short on a
        # loaded 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "PREFECT_UI_ENABLED": "false",
        # OpenMP threads (LightGBM) sleep instead of spinning while they wait: on a machine whose
        # cores are busy with other work, spinning threads made training 10-15x slower
        # (measured with 2 threads on 60k rows at load ~11; README "Performance").
        "OMP_WAIT_POLICY": "PASSIVE",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow 3 telemetry would try the network
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", category=FutureWarning)


def configure_stage_logging() -> None:
    """Plain logging for stages run by `dvc repro` (no Prefect run around them)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "urllib3", "git", "prefect", "httpx", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _UserErrorFilter(logging.Filter):
    """Prefect logs a failing task with its traceback; for errors we wrote for the user, the
    message is the whole story, so drop the traceback (other exceptions keep theirs)."""

    def __init__(self, user_errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.user_errors = user_errors

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.user_errors):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_user_error_tracebacks(user_errors: tuple[type[BaseException], ...]) -> None:
    flt = _UserErrorFilter(user_errors)
    for name in (
        "prefect.task_runs",
        "prefect.flow_runs",
        "prefect.task_engine",
        "prefect.flow_engine",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _UserErrorFilter) for f in logger.filters):
            logger.addFilter(flt)


def configure_flow_logging() -> None:
    """Inside a flow run: the project's loggers at INFO and sent to the run's log in the Prefect
    API, and no traceback for errors written for the user.

    A deployment run starts in a fresh process (`prefect serve` and workers spawn
    `python -m prefect.engine`) where the CLI's setup never ran: without this, its log holds
    Prefect's own lines only. Safe to call again (`python -m flows run` does it first)."""
    from prefect.logging.handlers import APILogHandler

    from core.config import ConfigError
    from core.errors import PipelineError

    hide_user_error_tracebacks((PipelineError, ConfigError))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        # PREFECT_LOGGING_EXTRA_LOGGERS attaches it when set in this process's environment.
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(APILogHandler())


# A watchdog for the processes a run starts (Prefect's temporary server, process-pool workers of
# the tuning trials): killed with SIGKILL, or by SIGTERM before Prefect could stop them, the run
# would leave them running for minutes. The watchdog is a small separate process that keeps the
# list of this process's descendants and, once this process is gone, stops them.
_REAPER = r"""
import os, signal, sys, time
import psutil
parent = int(sys.argv[1])
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
seen = {}
me = os.getpid()
while os.getppid() == parent:
    try:
        seen = {p.pid: p for p in psutil.Process(parent).children(recursive=True) if p.pid != me}
    except psutil.Error:
        break
    time.sleep(0.5)
alive = [p for p in seen.values() if p.is_running()]
for p in alive:
    try:
        p.terminate()
    except psutil.Error:
        pass
_, alive = psutil.wait_procs(alive, timeout=3)
for p in alive:
    try:
        p.kill()
    except psutil.Error:
        pass
"""


def start_child_reaper() -> None:
    """Start the watchdog (above) for this process; it ends by itself when this process does."""
    import subprocess

    subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
