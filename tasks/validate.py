"""validate: the gate between raw data and everything fitted on it.

Checks the schema the rest of the pipeline relies on: the target exists and has usable values,
there are enough rows, and classification targets have at least two classes (binary: exactly
two, one of them the declared positive label). Rows whose target is missing cannot be learnt
from; they are counted and reported, never dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task

from tasks.config import DataSettings, Settings
from tasks.errors import DataError, preview
from tasks.io import ArtifactPaths, read_parquet, write_json, write_parquet
from tasks.tracking import RunContext, log_to_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationReport:
    source: str
    raw_rows: int
    kept_rows: int
    missing_target_rows: int
    columns: list[str]
    target_levels: dict[str, int]


def check_schema(df: pd.DataFrame, data: DataSettings, min_rows: int, source: str) -> pd.DataFrame:
    """Raise DataError naming the problem; return the rows usable for training."""
    if df.shape[1] == 0:
        raise DataError(f"{source}: the table has no columns")
    if data.target not in df.columns:
        raise DataError(
            f"{source}: target column {data.target!r} (data.target in params.yaml) is not in the "
            f"data; columns are: {preview(df.columns, 20)}"
        )
    if len(df) == 0:
        raise DataError(f"{source}: the table has a header but no rows")
    features = [c for c in df.columns if c != data.target]
    if not features:
        raise DataError(f"{source}: there are no feature columns besides the target")
    y = df[data.target]
    usable = df[y.notna()]
    if usable.empty:
        raise DataError(f"{source}: target column {data.target!r} is empty (all values missing)")
    if len(usable) < min_rows:
        raise DataError(f"{source}: only {len(usable)} rows with a target; at least {min_rows} "
                        "are needed (validate.min_rows)")
    y = usable[data.target]
    if data.task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            bad = y[pd.to_numeric(y, errors="coerce").isna()].unique()
            raise DataError(f"{source}: regression target {data.target!r} holds non-numeric "
                            f"values: {preview(bad)}")
        if not np.isfinite(y.to_numpy(dtype=float)).all():
            raise DataError(f"{source}: regression target {data.target!r} holds infinite values")
        return usable
    levels = y.unique()
    if len(levels) < 2:
        raise DataError(f"{source}: target column {data.target!r} has a single class "
                        f"({preview(levels)}); classification needs at least two")
    if data.task == "binary":
        if len(levels) > 2:
            raise DataError(f"{source}: binary target {data.target!r} has {len(levels)} levels "
                            f"({preview(sorted(map(str, levels)))}); set data.task: multiclass")
        if not (y.astype(str) == str(data.positive_label)).any():
            raise DataError(f"{source}: positive label {data.positive_label!r} "
                            f"(data.positive_label) never occurs in {data.target!r}; levels are "
                            f"{preview(levels)}")
    return usable


def summarise(df: pd.DataFrame, kept: pd.DataFrame, data: DataSettings, source: str) -> ValidationReport:
    levels = kept[data.target].astype(str).value_counts().sort_index() if data.task != "regression" \
        else pd.Series(dtype=int)
    return ValidationReport(source=source, raw_rows=len(df), kept_rows=len(kept),
                            missing_target_rows=len(df) - len(kept), columns=list(df.columns),
                            target_levels={str(k): int(v) for k, v in levels.items()})


@task(name="validate")
def validate_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    raw = read_parquet(paths.raw)
    source = settings.data.source
    kept = check_schema(raw, settings.data, settings.validate_.min_rows, source)
    report = summarise(raw, kept, settings.data, source)
    write_parquet(kept, paths.validated)
    write_json(asdict(report), paths.validation_report)
    log.info("validate: %d raw rows, %d kept, %d without a target", report.raw_rows,
             report.kept_rows, report.missing_target_rows)
    log_to_run(ctx, metrics={"validated_rows": report.kept_rows,
                             "missing_target_rows": report.missing_target_rows},
               artifacts=[paths.validation_report], artifact_dir="validation")
    return paths.validated
