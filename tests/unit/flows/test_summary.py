"""The run summary names the version this run registered, whatever the folder's file says now."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.tracking import RunContext
from core.io import ArtifactPaths, write_json
from tests.conftest import make_settings


def _record(version: int, run_id: str) -> dict[str, object]:
    gate = {"action": "promote", "alias": "champion", "reason": "no current champion"}
    return {
        "model_name": "credit-scoring",
        "version": version,
        "alias": "champion",
        "run_id": run_id,
        "gate": {**gate, "rule": "superior: CI lower bound > 0", "comparison": None},
        "compact": None,
    }


def test_a_concurrent_runs_registration_file_does_not_change_this_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.register.stage as stage
    from flows.summary import summary_lines

    settings = make_settings(tmp_path)
    write_json(_record(8, "other-run"), ArtifactPaths(tmp_path).registration)  # the other run
    logged = {"ours": _record(7, "ours")}
    monkeypatch.setattr(stage, "load_record_of_run", lambda ctx, name: logged.get(ctx.run_id))
    ours = stage.registration_of_run(settings, RunContext("sqlite://", "ours", entry="prefect"))
    assert ours is not None and ours["version"] == 7
    result = {"ran": ["register"], "skipped": [], "registration": ours}
    lines = "\n".join(summary_lines(settings, result))
    assert "credit-scoring version 7 @champion" in lines and "version 8" not in lines
    # register skipped (current): the file is what there is
    lines = "\n".join(summary_lines(settings, {"ran": [], "skipped": ["register"]}))
    assert "credit-scoring version 8 @champion" in lines
