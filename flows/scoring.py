"""The batch scoring flow: score every complete file waiting in `scoring.incoming` (ops/score.py).

A run that rejected a file ends Failed (its result still lists every file); files left waiting or
claimed by another scorer do not fail it.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import State, flow, task
from prefect.states import Failed

from core.config import load_settings
from flows._runtime import configure_flow_logging
from ops.preflight import check_tracking_store
from ops.score import as_record, rejection_message, score_incoming

log = logging.getLogger("flows.scoring")


@task(name="score", retries=1, retry_delay_seconds=2)
def score_task(params_path: str) -> list[dict[str, Any]]:
    settings = load_settings(params_path)
    return [as_record(r) for r in score_incoming(settings)]


@flow(name="scoring", log_prints=True)
def scoring_flow(params_path: str = "params.yaml") -> list[dict[str, Any]] | State[Any]:
    """Score new files with scoring.model_uri; write predictions, move inputs aside."""
    configure_flow_logging()  # a deployment run's process has had no other setup
    settings = load_settings(params_path)
    check_tracking_store(settings.tracking_uri)
    results = score_task(params_path)
    failure = rejection_message(results, settings.root)
    if failure is not None:
        return Failed(message=failure, data=results)
    return results
