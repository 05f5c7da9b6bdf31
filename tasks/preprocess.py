"""preprocess: clean, split, and fit the preprocessing transformers on the train split only.

Exact duplicate rows were already removed and counted by validate (so that raw rows = kept +
quarantined + duplicates is reported in one place). Cleaning that must also happen at inference
(sentinel codes -> missing, imputation,
encoding, scaling) is a fitted scikit-learn pipeline that travels inside the registered model.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder, StandardScaler

from adapters.tracking import RunContext, log_to_run
from core.config import PreprocessSettings, Settings
from core.errors import DataError, preview
from core.io import ArtifactPaths, dump_joblib, read_parquet, write_json, write_parquet
from inference.transformers import SentinelMapper

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def column_roles(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numeric and categorical feature columns, decided by dtype."""
    numeric = [
        c
        for c in X.columns
        if pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c])
    ]
    categorical = [c for c in X.columns if c not in numeric]
    return numeric, categorical


def check_sentinel_columns(sentinels: Mapping[str, Sequence[object]], columns: list[str]) -> None:
    """A sentinel on a column the features do not have (a typo, the target) would be ignored."""
    unknown = [c for c in sentinels if c not in columns]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, columns, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise DataError(
        f"data.sentinels names column(s) that are not feature columns of the data: "
        f"{', '.join(hints)}; feature columns: {preview(columns, 20)}"
    )


def build_preprocessor(
    X: pd.DataFrame, settings: PreprocessSettings, sentinels: Mapping[str, Sequence[object]]
) -> Pipeline:
    """Unfitted preprocessing for raw feature columns; outputs a numeric DataFrame."""
    check_sentinel_columns(sentinels, list(X.columns))
    numeric, categorical = column_roles(X)
    num_steps: list[tuple[str, object]] = []
    if settings.numeric_impute != "none":
        num_steps.append(
            (
                "impute",
                SimpleImputer(
                    strategy=settings.numeric_impute,
                    add_indicator=settings.missing_indicators,
                    keep_empty_features=True,
                ),
            )
        )
    if settings.scaling == "standard":
        num_steps.append(("scale", StandardScaler()))
    elif settings.scaling == "minmax":
        num_steps.append(("scale", MinMaxScaler()))
    cat_steps: list[tuple[str, object]] = []
    if settings.categorical_impute == "most_frequent":
        cat_steps.append(("impute", SimpleImputer(strategy="most_frequent")))
    # Unseen levels and missing values both become NaN, which LightGBM treats as missing.
    cat_steps.append(
        (
            "encode",
            OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                dtype=np.float64,
            ),
        )
    )
    transformers = []
    if numeric:
        transformers.append(("num", Pipeline(num_steps) if num_steps else "passthrough", numeric))
    if categorical:
        transformers.append(("cat", Pipeline(cat_steps), categorical))
    columns = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    pipe = Pipeline([("sentinels", SentinelMapper(dict(sentinels))), ("columns", columns)])
    return pipe.set_output(transform="pandas")


def categorical_outputs(preprocessor: Pipeline) -> list[str]:
    """Names of the encoded categorical columns in the preprocessor's output."""
    columns: ColumnTransformer = preprocessor.named_steps["columns"]
    for name, _, cols in columns.transformers_:
        if name == "cat":
            return list(cols)
    return []


# splitmix64 constants: a fast, well-mixed 64-bit hash of 64-bit keys, computed with numpy.
_GOLDEN, _MIX1, _MIX2 = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
)


def _mix(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * _MIX1
        h = (h ^ (h >> np.uint64(27))) * _MIX2
        return h ^ (h >> np.uint64(31))


def _text_key(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little")


def column_keys(s: pd.Series) -> np.ndarray:
    """A 64-bit key per value that depends on the value only, not on the column's dtype: numbers
    (ints, floats, bools) by their float64 value, text by its UTF-8 bytes, missing as one key."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        values = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
        values = np.where(values == 0.0, 0.0, values)  # -0.0 and 0.0 are the same value
        keys = _mix(values.view(np.uint64))
        return np.where(np.isnan(values), np.uint64(0x5EED), keys)
    codes, uniques = pd.factorize(s.astype("string"), use_na_sentinel=True)
    table = np.array([_text_key(str(u)) for u in uniques] + [0x5EED], dtype=np.uint64)
    return table[codes]  # code -1 (missing) picks the last entry


def row_keys(df: pd.DataFrame, seed: int) -> np.ndarray:
    """A stable 64-bit hash of each row's content (columns by name, any order), salted by the
    seed. The same row gets the same key whatever else is in the table."""
    h = _mix(np.full(len(df), np.uint64(seed), dtype=np.uint64) ^ _GOLDEN)
    with np.errstate(over="ignore"):
        for col in sorted(map(str, df.columns)):
            h = _mix(h ^ (column_keys(df[col]) + np.uint64(_text_key(col))))
    return h


def assign_splits(df: pd.DataFrame, test_size: float, valid_size: float, seed: int) -> np.ndarray:
    """ "train" / "valid" / "test" per row, from the row's own hash: a row keeps its split when
    rows are appended or removed, so a later test split holds no row an earlier model trained
    on (for the same seed and sizes)."""
    u = row_keys(df, seed).astype(np.float64) / 2.0**64
    return np.where(u < test_size, "test", np.where(u < test_size + valid_size, "valid", "train"))


def split_frame(
    df: pd.DataFrame, test_size: float, valid_size: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Train/valid/test split before anything is fitted, by `assign_splits` (rows keep their
    order within each split)."""
    where = assign_splits(df, test_size, valid_size, seed)
    return {name: df[where == name].reset_index(drop=True) for name in SPLITS}


def sample_positions(y: np.ndarray, size: int, seed: int, stratify: bool) -> np.ndarray:
    """Sorted positions of a seeded sample of `size` rows, stratified on y for classification
    (the reduced-fidelity CV of `tune`, the retrain sample of `compress`)."""
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=size, random_state=seed, stratify=y if stratify else None
    )
    return np.sort(keep)


def feature_frame(df: pd.DataFrame, target: str) -> pd.DataFrame:
    return df.drop(columns=[target])


def imputed_outputs(preprocessor: Pipeline) -> list[str]:
    """Output columns that imputation must have filled (numeric columns when imputing)."""
    columns: ColumnTransformer = preprocessor.named_steps["columns"]
    out: list[str] = []
    for name, trans, cols in columns.transformers_:
        if name == "num" and isinstance(trans, Pipeline) and "impute" in trans.named_steps:
            out += list(cols)
        if name == "cat" and isinstance(trans, Pipeline) and "impute" in trans.named_steps:
            out += list(cols)
    return out


@task(name="preprocess")
def preprocess_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    data = settings.data
    frame = read_parquet(paths.validated)
    splits = split_frame(
        frame, settings.split.test_size, settings.split.valid_size, settings.base.seed
    )
    preprocessor = build_preprocessor(
        feature_frame(splits["train"], data.target), settings.preprocess, data.sentinels
    )
    preprocessor.fit(feature_frame(splits["train"], data.target))
    # The model-input gate runs at the end of `features` (tasks/features.py), on what the model
    # actually sees.
    for name, part in splits.items():
        write_parquet(part, paths.split(name))
    dump_joblib(preprocessor, paths.preprocessor)
    summary = {f"{k}_rows": len(v) for k, v in splits.items()}
    write_json(summary, paths.split("summary").with_suffix(".json"))
    log.info("preprocess: split %s", ", ".join(f"{k}={len(v)}" for k, v in splits.items()))
    log_to_run(ctx, metrics=summary)
    return paths.preprocessor
