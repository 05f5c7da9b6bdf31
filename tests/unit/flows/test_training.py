"""The training flow's last log line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError
from flows.training import check_params_file, stages_line


def test_stages_line_names_what_ran_what_was_current_and_where_it_stopped() -> None:
    assert stages_line(["drift"], ["ingest", "validate"]) == (
        "training: stages run: drift; skipped: ingest, validate (current in dvc.lock)"
    )
    assert stages_line([], ["ingest"], stopped_at="validate") == (
        "training: stages run: none; skipped: ingest (current in dvc.lock); stopped at: validate"
    )


def test_only_the_params_file_dvc_reads_trains(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    check_params_file(tmp_path / "params.yaml")
    with pytest.raises(ConfigError, match="dvc.lock records what ran"):
        check_params_file(tmp_path / "other.yaml")
    check_params_file(tmp_path / "sub" / "other.yaml")  # no dvc.yaml there: nothing to disagree


def test_the_cli_has_no_params_option() -> None:
    from flows.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["--params", "other.yaml", "run"])
    assert exit_.value.code == 2
