"""Artifact paths and atomic reads/writes.

Every write goes to a temporary file (or folder, `atomic_dir`) next to its destination and is
renamed into place, so a crash never leaves half an artifact. Paths live here and nowhere else;
dvc.yaml declares the same.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from core.errors import StorageError


@dataclass(frozen=True)
class ArtifactPaths:
    root: Path

    def _p(self, rel: str) -> Path:
        return self.root / rel

    @property
    def source_dir(self) -> Path:
        """Where a user's data files live (a DVC dependency of ingest)."""
        return self._p("data/source")

    @property
    def external_sources(self) -> Path:
        """Links to a data.source outside data/source/, so DVC sees it change (not in git)."""
        return self._p("data/source/.external")

    @property
    def raw(self) -> Path:
        return self._p("data/raw/raw.parquet")

    @property
    def ingest_report(self) -> Path:
        """Facts of the read that the table cannot carry (text read as missing), for validate."""
        return self._p("data/raw/ingest.json")

    @property
    def validated(self) -> Path:
        return self._p("data/validated/validated.parquet")

    @property
    def validation_report(self) -> Path:
        return self._p("reports/validation.json")

    @property
    def quarantine(self) -> Path:
        return self._p("data/quarantine/quarantine.parquet")

    @property
    def model_input_report(self) -> Path:
        return self._p("reports/model_input_validation.json")

    def data_docs(self, suite: str) -> Path:
        """Data Docs site (HTML) of one validation: reports/data_docs/<raw|model_input>/."""
        return self._p(f"reports/data_docs/{suite}")

    def resolve(self, rel: str) -> Path:
        """A path from params.yaml, relative to the project root."""
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def split(self, name: str) -> Path:
        return self._p(f"data/processed/{name}.parquet")

    @property
    def preprocessor(self) -> Path:
        return self._p("models/preprocessor.joblib")

    @property
    def model(self) -> Path:
        """The shipped model: learnt from every labelled row; what the registry serves."""
        return self._p("models/model.joblib")

    @property
    def evaluation_model(self) -> Path:
        """The same recipe learnt from the train split only: evaluated, compressed, gated."""
        return self._p("models/evaluation_model.joblib")

    @property
    def train_metrics(self) -> Path:
        return self._p("metrics/train.json")

    @property
    def test_metrics(self) -> Path:
        return self._p("metrics/test.json")

    @property
    def plots_dir(self) -> Path:
        return self._p("plots")

    @property
    def evaluation_report(self) -> Path:
        """Non-numeric evaluation facts (top features, class balance) for the model card."""
        return self._p("reports/evaluation.json")

    @property
    def model_card(self) -> Path:
        return self._p("reports/model_card.md")

    @property
    def tuning_metrics(self) -> Path:
        """Written by the tune stage (CV mean/std); optional for evaluate."""
        return self._p("metrics/tuning.json")

    @property
    def registration(self) -> Path:
        return self._p("models/registration.json")

    @property
    def run_pointer(self) -> Path:
        """Which MLflow parent run the current `dvc repro` belongs to (not versioned)."""
        return self._p(".pipeline/mlflow_run.json")

    @property
    def features_model(self) -> Path:
        """Fitted preprocessing + feature builder: raw rows in, model input out."""
        return self._p("models/features.joblib")

    @property
    def features_report(self) -> Path:
        return self._p("reports/features.json")

    @property
    def tuning_dir(self) -> Path:
        """The tune stage's persisted state (declared `persist: true`): the Optuna journal."""
        return self._p("models/tuning")

    @property
    def selection(self) -> Path:
        """What model selection chose (members, params, weights, threshold): what train fits."""
        return self._p("models/selection.json")

    @property
    def study_journal(self) -> Path:
        return self._p("models/tuning/study.journal")

    @property
    def tuning_reports(self) -> Path:
        """Optimization history / parameter importance plots and the trials table."""
        return self._p("reports/tuning")

    @property
    def compact_dir(self) -> Path:
        """The compact model of `compress`: model.joblib, compact.so, compact.json."""
        return self._p("models/compact")

    @property
    def compact_manifest(self) -> Path:
        return self._p("models/compact/compact.json")

    @property
    def compress_reports(self) -> Path:
        """Pareto table (CSV/JSON) and the size-vs-metric plot."""
        return self._p("reports/compress")

    @property
    def compress_metrics(self) -> Path:
        return self._p("metrics/compress.json")

    @property
    def compress_timings(self) -> Path:
        """Measured latency and throughput of the last compress run on this machine: neither in
        git nor a DVC output (wall-clock figures differ on every run); also logged to MLflow."""
        return self._p("reports/timings/compress.json")

    @property
    def drift_report(self) -> Path:
        return self._p("reports/drift.json")


def _temp_sibling(dest: Path, make: Callable[[Path], None]) -> Path:
    """Create a new temporary file or folder next to `dest` (hidden, `.tmp`, ignored by DVC).

    `tempfile.mkstemp`/`mkdtemp` create it private (0600/0700) whatever the umask; outputs are
    ordinary files that others in the user's group may read, so it is created with the mode
    `open()`/`mkdir` would use (0666/0777 less the umask)."""
    for _ in range(100):
        candidate = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
        try:
            make(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name next to {dest}")


HINTS = {
    errno.ENOSPC: "the disk is full: free some space and run again",
    errno.EDQUOT: "the disk quota is exceeded: free some space and run again",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
}


def write_error(dest: Path, exc: OSError) -> StorageError:
    """An OSError of a write, as an error that names the output and says what to do."""
    reason = exc.strerror or str(exc)
    hint = HINTS.get(exc.errno or 0)
    return StorageError(
        f"cannot write {dest}: {reason} [Errno {exc.errno}]" + (f"; {hint}" if hint else "")
    )


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; rename it onto `dest` only if the block succeeds."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _temp_sibling(dest, _create_file)
    except OSError as exc:
        raise write_error(dest, exc) from None
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as exc:
        raise write_error(dest, exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        df.to_parquet(tmp, index=False)
    return dest


def read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def write_json(obj: Any, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return dest


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_csv(df: pd.DataFrame, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        df.to_csv(tmp, index=False)
    return dest


def write_text(text: str, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return dest


def dump_joblib(obj: Any, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        joblib.dump(obj, tmp)
    return dest


def load_joblib(path: Path) -> Any:
    return joblib.load(path)


def replace_dir(src: Path, dest: Path) -> None:
    """Swap a fully written folder into place."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old.tmp")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `dest`; swap it in for `dest` only if the block
    succeeds (the folder counterpart of `atomic_path`: a folder output is never half-written,
    and nothing of an earlier run survives in it)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_sibling(dest, lambda p: p.mkdir(0o777))
    except OSError as exc:
        raise write_error(dest, exc) from None
    try:
        yield tmp
        replace_dir(tmp, dest)
    except OSError as exc:
        raise write_error(dest, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_md5(path: Path) -> str:
    """The same hash DVC records for a file output."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
