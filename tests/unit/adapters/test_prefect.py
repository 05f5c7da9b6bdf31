"""adapters/prefect.py: the one place the project reaches into Prefect's internals
(`context_serialized_once`), and signal handling of a served runner.

The context patch:

Prefect's ProcessPoolTaskRunner serialises the whole Prefect context on every submit; inside a
study nothing in it changes, so adapters/prefect.py serialises it once. That relies on how
Prefect 3.9 submits: these tests fail as soon as it does not any more, so the patch is revisited
on a Prefect upgrade instead of silently doing nothing (or something wrong).
"""

from __future__ import annotations

import inspect
import os
import signal
from typing import Any

import prefect
import prefect.context
import pytest
from prefect.task_runners import ProcessPoolTaskRunner

from adapters.prefect import context_serialized_once, interrupts_stop_the_runner


def test_the_process_runner_still_serialises_the_context_per_submit() -> None:
    source = inspect.getsource(ProcessPoolTaskRunner.submit)
    assert "from prefect.context import serialize_context" in source
    assert "serialize_context()" in source  # called without asset kwargs, once per submit
    params = inspect.signature(prefect.context.serialize_context).parameters
    assert list(params) == ["asset_ctx_kwargs"]


def test_inside_the_block_the_context_is_serialised_once_and_restored_after() -> None:
    original = prefect.context.serialize_context
    calls = []

    def counting(asset_ctx_kwargs=None):  # type: ignore[no-untyped-def]
        calls.append(asset_ctx_kwargs)
        return original(asset_ctx_kwargs)

    prefect.context.serialize_context = counting
    try:
        with context_serialized_once():
            first = prefect.context.serialize_context()
            again = prefect.context.serialize_context()
            assert first is again  # the same serialised context, not a new one
        assert prefect.context.serialize_context is counting
    finally:
        prefect.context.serialize_context = original
    assert calls == [None]  # serialised once for the whole block


def test_patch_was_measured_on_this_prefect() -> None:
    # The saving (about 75 ms of parent CPU per trial) was measured on Prefect 3.9.1.
    assert prefect.__version__.startswith("3.9.")


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
