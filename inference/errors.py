"""Errors a user can act on, shared by the pipeline and the model it ships.

They live here, in the inference package, because a registered model raises them at predict
time (a missing input column) and must not depend on the training code. The CLI prints their
message without a traceback and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Iterable


class PipelineError(Exception):
    """Base class: the message is written for a data scientist, naming file, column and values."""


class DataError(PipelineError):
    """The input data cannot be read or does not satisfy the checks."""


def preview(values: Iterable[object], limit: int = 5) -> str:
    """A few offending values, for error messages."""
    items = list(values)[:limit]
    return ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in items)
