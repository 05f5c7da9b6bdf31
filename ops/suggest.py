"""suggest-expectations: profile the configured dataset and write starting GX suites.

GX Core 1.x has no profiler, so this is a small pandas one (tasks/gx.py). The output is a
*suggestion*: review it (ranges, allowed categories, missing-value shares), edit it, commit it.
The default credit suite in expectations/ was written this way and then curated by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adapters.gx import save_suite, suggest_model_input_suite, suggest_raw_suite
from core.config import Settings
from core.errors import DataError
from core.io import ArtifactPaths
from tasks.features import fit_model_input, transform_splits
from tasks.ingest import normalise_frame, read_source
from tasks.preprocess import build_preprocessor, feature_frame, imputed_outputs, split_frame
from tasks.validate import check_structure, drop_duplicate_rows

SUITES = ("raw", "model_input")


def suggest_suites(
    settings: Settings, only: tuple[str, ...] = SUITES, force: bool = False
) -> list[Path]:
    """Write suggested suites to the paths in params.yaml (validate.*_suite); never overwrite a
    reviewed suite unless `force`."""
    paths = ArtifactPaths(settings.root)
    data = settings.data
    targets = {
        "raw": paths.resolve(settings.validate_.raw_suite),
        "model_input": paths.resolve(settings.validate_.model_input_suite),
    }
    existing = [str(targets[n]) for n in only if targets[n].exists()]
    if existing and not force:
        raise DataError(
            f"{', '.join(existing)} already exist(s); they may hold reviewed edits. "
            "Use --force to overwrite."
        )
    frame = normalise_frame(read_source(data.source, settings.root, data.csv_separator), data)
    check_structure(frame, data, data.source)
    written = []
    if "raw" in only:
        suite = suggest_raw_suite(
            frame, data.target, data.task, settings.validate_.min_rows, id_columns=data.id_columns
        )
        written.append(save_suite(suite, targets["raw"]))
    if "model_input" in only:
        # The model input exactly as the pipeline builds it: the same split, preprocessing and
        # features fitted on the train split, then every split transformed.
        usable, _ = drop_duplicate_rows(frame[frame[data.target].notna()])
        splits = split_frame(
            usable, settings.split.test_size, settings.split.valid_size, settings.base.seed
        )
        X = feature_frame(splits["train"], data.target)
        pre = build_preprocessor(X, settings.preprocess, data.sentinels).fit(X)
        model_input = fit_model_input(pre, splits["train"], settings)
        out = pd.concat(
            list(transform_splits(model_input, splits, data.target).values()), ignore_index=True
        )
        written.append(
            save_suite(suggest_model_input_suite(out, imputed_outputs(pre)), targets["model_input"])
        )
    return written
