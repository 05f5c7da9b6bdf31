"""Newly labelled data for scheduled retraining: every CSV/Parquet file in `retrain.incoming`
is appended to the source table at ingest (so it goes through validation like the rest).

The files stay in the folder: from then on they are part of the training data, versioned by DVC
as a dependency of `ingest`. Their columns must be the source's columns.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tasks.config import Settings
from tasks.errors import DataError, preview
from tasks.io import ArtifactPaths

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")


def labelled_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES)


def read_labelled(settings: Settings) -> list[tuple[Path, pd.DataFrame]]:
    from tasks.ingest import read_source

    folder = ArtifactPaths(settings.root).resolve(settings.retrain.incoming)
    # A declared DVC dependency of ingest and drift: if it was deleted (or never cloned, e.g. a
    # copy without its .gitkeep), DVC could not commit the stage; an empty folder means no files.
    folder.mkdir(parents=True, exist_ok=True)
    return [(p, read_source(str(p), settings.root, settings.data.csv_separator))
            for p in labelled_files(folder)]


def append_labelled(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The source table followed by the rows of each labelled file (same columns required)."""
    parts = [frame]
    for path, new in read_labelled(settings):
        missing = [c for c in frame.columns if c not in new.columns]
        extra = [c for c in new.columns if c not in frame.columns]
        if missing or extra:
            raise DataError(f"{path}: labelled file's columns differ from data.source: "
                            + "; ".join(s for s in (
                                f"missing {preview(missing, 10)}" if missing else "",
                                f"unexpected {preview(extra, 10)}" if extra else "") if s))
        parts.append(new[list(frame.columns)])
        log.info("ingest: + %d labelled rows from %s", len(new), path.relative_to(settings.root)
                 if path.is_relative_to(settings.root) else path)
    if len(parts) == 1:
        return frame
    return pd.concat(parts, ignore_index=True)
