"""The command line: commands that talk to the tracking store fail fast when it is down."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("argv", [["compare", "2", "1"], ["reproduce", "--version", "1"]])
def test_registry_commands_fail_fast_on_an_unreachable_store(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    from flows.__main__ import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and closed in err
