"""Signal handling of a served runner (adapters/prefect.py)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from adapters.prefect import interrupts_stop_the_runner


def test_ctrl_c_calls_the_runners_sigterm_handler_once_it_is_installed() -> None:
    calls: list[int] = []
    before = signal.getsignal(signal.SIGINT)
    with interrupts_stop_the_runner():
        with pytest.raises(KeyboardInterrupt):  # no runner yet: the caller's cleanup runs
            os.kill(os.getpid(), signal.SIGTERM)

        def runner_handler(signum: int, frame: Any) -> None:  # what Runner.start installs
            calls.append(signum)

        signal.signal(signal.SIGTERM, runner_handler)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert calls == [signal.SIGINT, signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is before  # restored
