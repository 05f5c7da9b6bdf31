"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero.

`PipelineError`, `DataError` and `preview` are defined in the inference package (a registered
model raises them too); the errors only the pipeline raises are defined here.
"""

from __future__ import annotations

from inference.errors import DataError, PipelineError, preview

__all__ = ["DataError", "PipelineError", "StorageError", "TrackingError", "preview"]


class TrackingError(PipelineError):
    """The MLflow tracking store or registry cannot be reached or used."""


class StorageError(PipelineError):
    """An output cannot be written (disk full, read-only folder, no permission): names the file."""
