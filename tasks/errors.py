"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: the message is written for a data scientist, naming file, column and values."""


class DataError(PipelineError):
    """The input data cannot be read or does not satisfy the checks."""


class TrackingError(PipelineError):
    """The MLflow tracking store or registry cannot be reached or used."""


def preview(values: object, limit: int = 5) -> str:
    """A few offending values, for error messages."""
    items = list(values)[:limit]  # type: ignore[call-overload]
    return ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in items)
