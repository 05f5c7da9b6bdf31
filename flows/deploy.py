"""Deployments: the training flow on `schedule.training_cron`, batch scoring on
`schedule.scoring_cron`, served by this process (`python -m flows serve`).

`make serve` also starts a local Prefect server on 127.0.0.1 with the project's PREFECT_HOME
(adapters/prefect.py `start_server`), so the Prefect UI shows both deployments with their
schedules. On a team's own
infrastructure the same flows are deployed to a work pool with `prefect deploy` (prefect.yaml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from core.config import Settings

TRAINING_DEPLOYMENT = "scheduled-training"
SCORING_DEPLOYMENT = "batch-scoring"


def build_deployments(
    settings: Settings, params_path: Path, interval_s: float | None = None, only: str | None = None
) -> list[Any]:
    """The runner deployments (both, or `only` "training" / "scoring"); `interval_s` replaces
    the crons (for trying it out)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    from flows.scoring import scoring_flow
    from flows.training import training_flow

    tz = settings.schedule.timezone

    def schedule(cron: str) -> Any:
        return Interval(interval_s) if interval_s else Cron(cron, timezone=tz)

    common: dict[str, Any] = {
        "parameters": {"params_path": str(params_path)},
        "entrypoint_type": EntrypointType.MODULE_PATH,
        "tags": [settings.base.project],
    }
    deployments = {
        "training": lambda: training_flow.to_deployment(
            name=TRAINING_DEPLOYMENT,
            schedule=schedule(settings.schedule.training_cron),
            description="Retrain on data.source + retrain.incoming; gate; register",
            **common,
        ),
        "scoring": lambda: scoring_flow.to_deployment(
            name=SCORING_DEPLOYMENT,
            schedule=schedule(settings.schedule.scoring_cron),
            description="Score scoring.incoming with scoring.model_uri",
            **common,
        ),
    }
    return [make() for kind, make in deployments.items() if only in (None, kind)]


def serve_deployments(
    settings: Settings, params_path: Path, interval_s: float | None, only: str | None = None
) -> None:
    """Register the deployments with the Prefect API and run their scheduled runs here, one at a
    time: the runs share one working copy (DVC outputs, incoming folders), so they must not
    overlap. Ctrl-C or SIGTERM cancels the run in flight (Cancelled in the API), pauses the
    schedules and stops."""
    from prefect import serve

    from adapters.prefect import interrupts_stop_the_runner

    # Scheduled runs execute in subprocesses that import flows/ and tasks/ by module path.
    root = str(settings.root)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    if root not in sys.path:
        sys.path.insert(0, root)
    with interrupts_stop_the_runner():
        serve(*build_deployments(settings, params_path, interval_s, only), limit=1)
