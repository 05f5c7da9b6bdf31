"""The training flow's last log line."""

from __future__ import annotations

from flows.training import stages_line


def test_stages_line_names_what_ran_what_was_current_and_where_it_stopped() -> None:
    assert stages_line(["drift"], ["ingest", "validate"]) == (
        "training: stages run: drift; skipped: ingest, validate (current in dvc.lock)"
    )
    assert stages_line([], ["ingest"], stopped_at="validate") == (
        "training: stages run: none; skipped: ingest (current in dvc.lock); stopped at: validate"
    )
