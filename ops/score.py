"""Batch scoring: new files in `scoring.incoming` -> predictions in `scoring.output`.

A file is taken only when it is complete: a `<file>.done` marker next to it says so at once;
otherwise it must be non-empty and unchanged (its last write, the mtime) for `scoring.settle_s`.
A file written elsewhere (or under a hidden or non-data name) and renamed in is never seen
half-written. A complete file is then claimed by an atomic rename into this scorer's working
folder `<incoming>/.claimed/<host>-<pid>-<token>/`, so two scorers never read the same file (the
loser of the rename skips it), and a writer that kept writing past the settle time is caught
when the file read differs from the file judged complete (it goes back and waits).

Each claimed file is read like ingest reads a source, checked with the raw suite minus what
concerns the target (and minus the row-count floor, a batch may be small), and scored with the
model at `scoring.model_uri` (default `models:/<register.model_name>@champion`; any `models:/`
URI works, e.g. a compact model). A table-level failure moves the file to `scoring.rejected` next
to a `<file>.reason.txt` and scores nothing; row-level failures set the offending rows aside in
`<stem>.<stamp>.quarantine.parquet` (same `_source_row` / `_reason` columns as validate) and the
rest are scored. The outputs a file will get are recorded in the working folder first
(`<file>.outputs.json`), then written atomically (quarantine, predictions), and only then is the
input moved to `scoring.processed`. A scorer that dies leaves its working folder behind; the next
scorer on the same host adopts the folders of processes that no longer run and, per file, either
moves the input to processed/ (every recorded output was written) or removes the partial outputs
and returns the input to the incoming folder. So every row ends in exactly one of predictions,
quarantine and rejected, whichever process dies where.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from adapters.gx import import_gx, suite_to_dict
from adapters.registry import load_registered_model, predict_validated
from core.config import Settings
from core.errors import DataError, TrackingError
from core.io import ArtifactPaths, read_json, write_json, write_parquet, write_text
from ops.preflight import pid_alive
from tasks.ingest import read_source
from tasks.validate import _relevant, format_failures, gate_of, quarantine_rows, run_raw_suite

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
MARKER_SUFFIX = ".done"  # <file>.done next to <file>: the writer says it is complete
PLAN_SUFFIX = ".outputs.json"  # in the working folder: the outputs a claimed file will get
CLAIMED = ".claimed"  # <incoming>/.claimed/<host>-<pid>-<token>/: one working folder per scorer
# Dropped from the raw suite for scoring: a batch may be small. Likewise the `mostly` missing-value
# shares (noisy on a small batch; the model imputes missing values): see scoring_suite.
BATCH_SKIPPED_TYPES = frozenset({"expect_table_row_count_to_be_between"})


@dataclass
class ScoredFile:
    """What became of one incoming file. For a scored file rows == scored + quarantined; a
    rejected file's rows are all rejected (None when it could not be read as a table)."""

    source: Path
    status: str  # scored | rejected | waiting (not complete yet) | skipped (another scorer has it)
    rows: int | None = None
    scored_rows: int = 0
    quarantined_rows: int = 0
    rejected_rows: int = 0
    output: Path | None = None
    moved_to: Path | None = None
    reason: str = ""


@dataclass(frozen=True)
class ResolvedModel:
    uri: str
    name: str
    version: str
    model: Any


@dataclass(frozen=True)
class Seen:
    """A file as one stat saw it: a writer that adds a byte changes both."""

    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int


@dataclass(frozen=True)
class Folders:
    incoming: Path
    output: Path
    processed: Path
    rejected: Path

    @classmethod
    def of(cls, settings: Settings) -> Folders:
        paths, cfg = ArtifactPaths(settings.root), settings.scoring
        return cls(
            *(paths.resolve(p) for p in (cfg.incoming, cfg.output, cfg.processed, cfg.rejected))
        )

    @property
    def claimed(self) -> Path:
        return self.incoming / CLAIMED


# ------------------------------------------------------------------------------------------------
# decisions
# ------------------------------------------------------------------------------------------------
def waiting_reason(seen: Seen, now_ns: int, settle_s: float, marked: bool) -> str | None:
    """Why a file is not complete yet, or None when it may be claimed.

    With a marker it is complete. Without, it must have bytes (a writer that has just created it
    has not flushed any yet) and its last write must be settle_s old by this machine's clock (a
    file whose mtime lies in the future is still changing too)."""
    if marked:
        return None
    if seen.size == 0:
        return "empty so far"
    if settle_s > 0 and now_ns - seen.mtime_ns < settle_s * 1e9:
        return "still changing"
    return None


def working_folder_name(owner: Owner, token: str) -> str:
    return f"{owner.host}-{owner.pid}-{token}"


def folder_owner(name: str) -> Owner | None:
    """The owner a working folder's name records, or None for a name no scorer made."""
    host, _, rest = name.rpartition("-")
    host, _, pid = host.rpartition("-")
    if not host or not pid.isdigit() or not rest:
        return None
    return Owner(host, int(pid))


def orphaned(names: Iterable[str], host: str, alive: Callable[[int], bool]) -> list[str]:
    """Working folders whose owner is a process of this host that no longer runs: the rule of
    the promotion lock (ops/preflight.py break_dead_owner_lock). Folders of another host, or of a
    process that runs, are left alone."""
    found = []
    for name in sorted(names):
        owner = folder_owner(name)
        if owner is not None and owner.host == host and not alive(owner.pid):
            found.append(name)
    return found


def recovery_action(planned: Sequence[str] | None, existing: Iterable[str]) -> str:
    """What to do with a file a dead scorer had claimed: "finish" (move it to processed/) when
    every output it recorded for the file exists, so only that move was left; otherwise "return"
    it to the incoming folder, its partial outputs removed, to be scored again."""
    if planned is not None and set(planned) <= set(existing):
        return "finish"
    return "return"


def as_record(r: ScoredFile) -> dict[str, Any]:
    """A file's outcome as the flow returns it (plain values)."""
    return {
        "source": str(r.source),
        "status": r.status,
        "rows": r.rows,
        "scored_rows": r.scored_rows,
        "quarantined_rows": r.quarantined_rows,
        "rejected_rows": r.rejected_rows,
        "output": str(r.output) if r.output else None,
        "moved_to": str(r.moved_to) if r.moved_to else None,
        "reason": r.reason,
    }


def rejection_message(records: Sequence[Mapping[str, Any]], root: Path) -> str | None:
    """Why a scoring run fails: the files it rejected. Waiting and skipped files do not count."""
    rejected = [Path(r["source"]) for r in records if r["status"] == "rejected"]
    if not rejected:
        return None
    names = [str(p.relative_to(root) if p.is_relative_to(root) else p) for p in rejected]
    return f"{len(names)} file(s) rejected: {', '.join(names)}"


# ------------------------------------------------------------------------------------------------
# the batch suite and the model
# ------------------------------------------------------------------------------------------------
def scoring_suite(suite: Any, target: str) -> Any:
    """The raw suite without the target's expectations and with the target optional."""
    gx = import_gx()
    d = suite_to_dict(suite)
    kept = []
    for e in d["expectations"]:
        kwargs = e.get("kwargs", {})
        if kwargs.get("column") == target or e.get("type") in BATCH_SKIPPED_TYPES:
            continue
        if e.get("type") == "expect_column_values_to_not_be_null" and kwargs.get("mostly") not in (
            None,
            1,
            1.0,
        ):
            continue  # a share of missing values is a training-data check; the model imputes
        if e.get("type") == "expect_table_columns_to_match_set":
            kwargs = {
                **kwargs,
                "column_set": [c for c in kwargs.get("column_set") or [] if c != target],
            }
            e = {**e, "kwargs": kwargs}
        kept.append(e)
    d["expectations"] = kept
    d["name"] = f"{d.get('name', 'raw')}_scoring"
    return gx.ExpectationSuite(**d)


def check_batch(
    frame: pd.DataFrame, suite: Any, settings: Settings, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to score, quarantined rows); DataError when the table as a whole is unusable."""
    if len(frame) == 0:
        raise DataError(f"{source}: the file has a header but no rows")
    target = settings.data.target
    features = frame.drop(
        columns=[c for c in (target, *settings.data.id_columns) if c in frame.columns]
    )
    # As the validate stage runs it: row-level checks on every row (exact quarantine), schema
    # and share checks on a seeded sample of a large batch, a failing sampled check re-run on
    # every row before the batch is rejected.
    run, _ = run_raw_suite(features, suite, settings.validate_.sample_rows, settings.base.seed)
    failed = [o for o in run.outcomes if not o.success]
    table = _relevant([o for o in failed if gate_of(o, target) == "table"], features)
    if table:
        raise DataError(
            format_failures(
                source,
                settings.validate_.raw_suite,
                "the batch does not match the raw suite (without the target)",
                table,
                features,
            )
        )
    row_failures = [o for o in failed if gate_of(o, target) == "row"]
    kept, quarantined = quarantine_rows(frame, row_failures)
    return kept, quarantined


def resolve_model(uri: str) -> ResolvedModel:
    """Load a models:/ URI and find which registered version it points to."""
    import mlflow

    if not uri.startswith("models:/"):
        raise TrackingError(f"scoring.model_uri must be a models:/ URI, got {uri!r}")
    ref = uri[len("models:/") :]
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
        else:
            name, _, ver = ref.partition("/")
            if ver in ("", "latest"):
                version = str(
                    max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
                )
            else:
                version = str(client.get_model_version(name, ver).version)
        model = load_registered_model(f"models:/{name}/{version}")
    except Exception as exc:
        raise TrackingError(
            f"cannot load the scoring model {uri} from {mlflow.get_tracking_uri()}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from None
    return ResolvedModel(uri, name, version, model)


def score_rows(
    rows: pd.DataFrame, model: ResolvedModel, scored_at: str, target: str
) -> pd.DataFrame:
    """Input columns + the model's outputs + which model scored them and when."""
    inputs = rows.drop(columns=[target], errors="ignore")
    out = predict_validated(model.model, inputs).set_axis(rows.index)
    result = pd.concat(
        [rows, out.add_prefix("pred_") if set(out.columns) & set(rows.columns) else out], axis=1
    )
    result["model_uri"] = model.uri
    result["model_version"] = model.version
    result["scored_at"] = scored_at
    return result.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# the incoming folder: what is complete, claims, moves
# ------------------------------------------------------------------------------------------------
def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def _display(path: Path, root: Path) -> str:
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


def incoming_files(folder: Path) -> list[Path]:
    """Data files waiting in the incoming folder (not in its subfolders, no hidden files)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES
    )


def marker_of(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def plan_of(path: Path) -> Path:
    return path.with_name(path.name + PLAN_SUFFIX)


def observe(path: Path) -> Seen | None:
    """The file's size and mtime, or None when it is gone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return Seen(st.st_size, st.st_mtime_ns)


def take_stock(
    incoming: Path, settle_s: float, root: Path
) -> tuple[list[tuple[Path, Seen]], list[ScoredFile]]:
    """(complete files with what was seen of them, files left waiting)."""
    ready: list[tuple[Path, Seen]] = []
    waiting: list[ScoredFile] = []
    now_ns = time.time_ns()
    for path in incoming_files(incoming):
        seen = observe(path)
        if seen is None:  # claimed by another scorer since the listing
            continue
        reason = waiting_reason(seen, now_ns, settle_s, marker_of(path).exists())
        if reason is None:
            ready.append((path, seen))
        else:
            log.info("score: waiting: %s (%s)", _display(path, root), reason)
            waiting.append(ScoredFile(path, "waiting", reason=reason))
    return ready, waiting


def claim(path: Path, workdir: Path) -> Path | None:
    """Move the file (then its marker) into this scorer's working folder; None when another
    scorer renamed it first."""
    workdir.mkdir(parents=True, exist_ok=True)
    claimed = workdir / path.name
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return None
    with contextlib.suppress(FileNotFoundError):
        os.rename(marker_of(path), marker_of(claimed))
    return claimed


def aside_path(path: Path, folder: Path, stamp: str) -> Path:
    """Where move_aside puts `path`: its own name, or `<stem>.<stamp><suffix>` if that is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    return folder / f"{path.stem}.{stamp}{path.suffix}" if dest.exists() else dest


def move_aside(path: Path, folder: Path, stamp: str) -> Path:
    """Move a file into folder, never overwriting an earlier file of the same name."""
    dest = aside_path(path, folder, stamp)
    os.replace(path, dest)
    return dest


def discard_companions(claimed: Path) -> None:
    """The marker and the output record of a claimed file that has left the working folder."""
    for p in (marker_of(claimed), plan_of(claimed)):
        p.unlink(missing_ok=True)


def put_back(claimed: Path, incoming: Path, stamp: str) -> Path:
    """Return a claimed file (and its marker) to the incoming folder."""
    dest = move_aside(claimed, incoming, stamp)
    with contextlib.suppress(FileNotFoundError):
        os.replace(marker_of(claimed), marker_of(dest))
    discard_companions(claimed)
    return dest


def release(claimed: Path, folders: Folders, stamp: str) -> str:
    """Settle a claimed file that will not be finished normally (its scorer died, or failed):
    keep a complete set of outputs and move it to processed/, or remove a partial set and
    return it to the incoming folder."""
    plan = plan_of(claimed)
    planned: list[str] | None = read_json(plan)["outputs"] if plan.exists() else None
    existing = [p for p in planned or [] if Path(p).exists()]
    action = recovery_action(planned, existing)
    if action == "finish":
        move_aside(claimed, folders.processed, stamp)
        discard_companions(claimed)
    else:
        for p in existing:
            Path(p).unlink(missing_ok=True)
        put_back(claimed, folders.incoming, stamp)
    return action


def recover_orphans(folders: Folders, host: str, alive: Callable[[int], bool], root: Path) -> int:
    """Adopt (by renaming it) each working folder a dead scorer of this host left, and release
    its files; returns how many files were released."""
    claimed_root = folders.claimed
    if not claimed_root.is_dir():
        return 0
    me = Owner(host, os.getpid())
    released = 0
    for name in orphaned([p.name for p in claimed_root.iterdir() if p.is_dir()], host, alive):
        adopted = claimed_root / working_folder_name(me, secrets.token_hex(4))
        try:
            os.rename(claimed_root / name, adopted)
        except FileNotFoundError:  # another scorer adopted it first
            continue
        dead = folder_owner(name)
        for claimed in incoming_files(adopted):
            try:
                action = release(claimed, folders, _stamp(datetime.now(UTC)))
            except OSError as exc:  # left in the adopted folder: the next scorer tries again
                log.error("score: cannot recover %s: %s", _display(claimed, root), exc)
                continue
            released += 1
            log.warning(
                "score: %s was claimed by process %s, which no longer runs: %s",
                _display(folders.incoming / claimed.name, root),
                dead.pid if dead else name,
                f"its outputs were all written, moved to {_display(folders.processed, root)}"
                if action == "finish"
                else "returned to the incoming folder (partial outputs removed)",
            )
        if not incoming_files(adopted):
            shutil.rmtree(adopted, ignore_errors=True)
    return released


# ------------------------------------------------------------------------------------------------
# scoring one claimed file
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """What a run scores with."""

    settings: Settings
    folders: Folders
    suite: Any
    model: ResolvedModel


def read_batch(claimed: Path, source: Path, settings: Settings) -> pd.DataFrame:
    """The claimed file as ingest types it; errors name the file as it was dropped."""
    try:
        frame = read_source(str(claimed), settings.root, settings.data.csv_separator)
    except DataError as exc:
        raise DataError(str(exc).replace(str(claimed), str(source))) from None
    frame.columns = [str(c) for c in frame.columns]
    text = frame.select_dtypes(include=["object"]).columns  # as ingest types them
    frame[text] = frame[text].astype("str")
    return frame.reset_index(drop=True)


def reject(
    claimed: Path, source: Path, error: DataError, rows: int | None, batch: Batch
) -> ScoredFile:
    """Move the file to rejected/ with its reason (written first: a crash leaves no file there
    without one)."""
    rejected = batch.folders.rejected
    dest = aside_path(claimed, rejected, _stamp(datetime.now(UTC)))
    write_text(f"{error}\n", rejected / f"{dest.name}.reason.txt")
    os.replace(claimed, dest)
    discard_companions(claimed)
    log.error(
        "score: %s rejected, nothing scored -> %s", _display(source, batch.settings.root), dest
    )
    return ScoredFile(
        source, "rejected", rows, rejected_rows=rows or 0, moved_to=dest, reason=str(error)
    )


def write_outputs(
    claimed: Path, source: Path, rows: int, parts: tuple[pd.DataFrame, pd.DataFrame], batch: Batch
) -> ScoredFile:
    """Record the outputs in the working folder, write them (quarantine, then predictions), and
    only then move the input to processed/."""
    kept, quarantined = parts
    now = datetime.now(UTC)
    stamp, out = _stamp(now), batch.folders.output
    result = ScoredFile(source, "scored", rows, len(kept), len(quarantined))
    target, scored_at = batch.settings.data.target, now.isoformat(timespec="seconds")
    scored = score_rows(kept, batch.model, scored_at, target) if len(kept) else None
    q_path = out / f"{source.stem}.{stamp}.quarantine.parquet"
    p_path = out / f"{source.stem}.{stamp}.predictions.parquet"
    planned = [q_path] * bool(len(quarantined)) + [p_path] * (scored is not None)
    write_json({"outputs": [str(p) for p in planned]}, plan_of(claimed))
    if len(quarantined):
        write_parquet(quarantined, q_path)
        log.warning(
            "score: %s: %d row(s) quarantined: %s",
            _display(source, batch.settings.root),
            len(quarantined),
            "; ".join(sorted(set(quarantined["_reason"]))),
        )
    if scored is not None:
        result.output = write_parquet(scored, p_path)
    result.moved_to = move_aside(claimed, batch.folders.processed, stamp)
    discard_companions(claimed)
    return result


def try_read(claimed: Path, source: Path, settings: Settings) -> pd.DataFrame | DataError:
    try:
        return read_batch(claimed, source, settings)
    except DataError as exc:
        return exc


def score_claimed(claimed: Path, source: Path, seen: Seen, batch: Batch) -> ScoredFile:
    """Read, check and score a claimed file. A file that changed since it was judged complete
    goes back to the incoming folder, whatever was read of it discarded."""
    root = batch.settings.root
    read = try_read(claimed, source, batch.settings)
    if observe(claimed) != seen:
        put_back(claimed, batch.folders.incoming, _stamp(datetime.now(UTC)))
        log.info("score: waiting: %s (still changing)", _display(source, root))
        return ScoredFile(source, "waiting", reason="still changing")
    if isinstance(read, DataError):
        return reject(claimed, source, read, None, batch)
    try:
        kept, quarantined = check_batch(read, batch.suite, batch.settings, _display(source, root))
    except DataError as exc:
        return reject(claimed, source, exc, len(read), batch)
    result = write_outputs(claimed, source, len(read), (kept, quarantined), batch)
    log.info(
        "score: %s: %d rows scored with %s (v%s) -> %s",
        _display(source, root),
        result.scored_rows,
        batch.model.uri,
        batch.model.version,
        result.output,
    )
    return result


def claim_and_score(path: Path, seen: Seen, workdir: Path, batch: Batch) -> ScoredFile:
    claimed = claim(path, workdir)
    if claimed is None:
        log.info(
            "score: %s: claimed by another scorer, skipped", _display(path, batch.settings.root)
        )
        return ScoredFile(path, "skipped", reason="claimed by another scorer")
    try:
        return score_claimed(claimed, path, seen, batch)
    except BaseException:
        if claimed.exists():  # not finished: release it rather than hold it while this runs
            try:
                release(claimed, batch.folders, _stamp(datetime.now(UTC)))
            except Exception as exc:  # stays claimed: recovered once this process has ended
                log.error("score: cannot release %s: %s", claimed, exc)
        raise


# ------------------------------------------------------------------------------------------------
# a scoring run
# ------------------------------------------------------------------------------------------------
def load_batch(settings: Settings, folders: Folders) -> Batch:
    from adapters.tracking import configure_mlflow
    from tasks.validate import require_suite

    configure_mlflow(settings.tracking_uri)
    model = resolve_model(settings.scoring_model_uri)
    suite = scoring_suite(
        require_suite(ArtifactPaths(settings.root), settings.validate_.raw_suite, "raw_suite"),
        settings.data.target,
    )
    return Batch(settings, folders, suite, model)


def score_incoming(settings: Settings) -> list[ScoredFile]:
    """Recover what dead scorers left, then claim and score every complete file, one at a time
    (so scorers running at once share the files). The model is loaded only when there is
    something to score."""
    folders = Folders.of(settings)
    host = socket.gethostname()
    recover_orphans(folders, host, pid_alive, settings.root)
    ready, results = take_stock(folders.incoming, settings.scoring.settle_s, settings.root)
    if not ready:
        if not results:
            log.info("score: nothing waiting in %s", settings.scoring.incoming)
        return results
    batch = load_batch(settings, folders)
    workdir = folders.claimed / working_folder_name(Owner(host, os.getpid()), secrets.token_hex(4))
    try:
        results += [claim_and_score(path, seen, workdir, batch) for path, seen in ready]
    finally:
        with contextlib.suppress(OSError):
            workdir.rmdir()  # empty unless a file could not be released (then it is recovered)
    return sorted(results, key=lambda r: r.source.name)
