"""validate: the data-quality gate between raw data and everything fitted on it.

Three layers, cheapest first:
1. `check_structure`: what makes a table unusable before any suite can say something useful
   (no columns, the configured target absent, no rows, duplicated names, a column with no values
   at all, infinite numbers).
2. The raw Great Expectations suite (`validate.raw_suite`). A failed expectation is either
   *table-level* (stop the run) or *row-level* (quarantine the offending rows), see `gate_of`.
   Rows go to data/quarantine/ with their reasons; above `validate.max_quarantine_fraction` the run
   stops. Exact duplicate rows are then removed and counted, so that
   raw rows = kept + quarantined + duplicates, reported in reports/validation.json.
3. `check_target`: the task-specific target checks (two classes, binary levels, positive label).

`validate_model_input` is the second gate: the model-input suite on the preprocessed features.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from adapters.data_docs import make_site_offline
from adapters.gx import Outcome, SuiteRun, gx_context, load_suite, run_suite, suite_to_dict
from adapters.tracking import RunContext, log_dir_to_run, log_to_run
from core.config import DataSettings, Settings
from core.errors import DataError, preview
from core.io import ArtifactPaths, atomic_dir, read_json, read_parquet, write_json, write_parquet

log = logging.getLogger(__name__)

REASON = "_reason"
SOURCE_ROW = "_source_row"

# Failures of these types concern single values, so the rows holding them can be set aside.
ROW_LEVEL_TYPES = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_value_lengths_to_be_between",
    }
)


# Checks that may run on a seeded sample of a large table (validate.sample_rows): the schema
# (column set, dtypes) and shares (`mostly` thresholds). Everything else -- row-level checks, whose
# failing rows are quarantined, and counts over the whole table -- always sees every row.
SAMPLE_SAFE_TYPES = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_be_between",
        "expect_table_column_count_to_equal",
        "expect_column_to_exist",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
    }
)


def sample_safe(expectation: dict[str, Any]) -> bool:
    """True if the expectation's verdict can be estimated from a sample of rows."""
    if expectation.get("meta", {}).get("gate") == "row":
        return False
    if expectation["type"] in SAMPLE_SAFE_TYPES:
        return True
    mostly = expectation.get("kwargs", {}).get("mostly")
    return expectation["type"] in ROW_LEVEL_TYPES and mostly not in (None, 1, 1.0)


def split_suite(suite: Any) -> tuple[Any, Any]:
    """(checks on every row, checks that may be sampled) as two suites, in suite order."""
    from adapters.gx import build_suite, import_gx

    d = suite_to_dict(suite)
    gx = import_gx()
    exact = [e for e in d["expectations"] if not sample_safe(e)]
    sampled = [e for e in d["expectations"] if sample_safe(e)]
    return (
        gx.ExpectationSuite(**{**d, "expectations": exact}),
        gx.ExpectationSuite(**{**d, "name": f"{d['name']}.sampled", "expectations": sampled})
        if sampled
        else build_suite(f"{d['name']}.sampled", []),
    )


def run_raw_suite(
    frame: pd.DataFrame, suite: Any, sample_rows: int, seed: int, docs_dir: Path | None = None
) -> tuple[SuiteRun, int]:
    """Run the raw suite: row-level checks on every row (COMPLETE: every failing row index, for
    an exact quarantine), the sample-safe checks on a seeded sample of `sample_rows` rows when
    the table is larger (SUMMARY: counts and examples). A sampled check that fails is checked
    again on every row before anything is decided, so a run never stops on a sample's word.
    Returns the combined run and the number of rows the sampled checks saw."""
    exact, sampled = split_suite(suite)
    context = gx_context(docs_dir)
    outcomes: list[Outcome] = []
    seen = len(frame)
    if exact.expectations:
        outcomes += run_exact_checks(frame, exact, sample_rows, docs_dir, context)
    if sampled.expectations:
        part = frame
        if len(frame) > sample_rows:
            part = frame.sample(sample_rows, random_state=seed).sort_index()
            seen = len(part)
        outcomes += run_sampled_checks(frame, part, sampled, docs_dir, context)
    return SuiteRun(
        suite=suite.name,
        success=all(o.success for o in outcomes),
        outcomes=outcomes,
        docs_index=(docs_dir / "index.html") if docs_dir else None,
    ), seen


def run_exact_checks(
    frame: pd.DataFrame, exact: Any, sample_rows: int, docs_dir: Path | None, context: Any
) -> list[Outcome]:
    """The every-row checks. GX filters a copy of the whole frame for each column check, so on
    a large table the text columns go in as categoricals (codes, not strings) and the column
    checks run on a few columns at a time: each copy is narrow, values and row labels unchanged."""
    big = len(frame) > sample_rows
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype)]
    coded = frame.astype(dict.fromkeys(text, "category")) if big else frame
    outcomes: list[Outcome] = []
    for part, columns in exact_parts(exact, list(frame.columns), big):
        run = run_suite(
            coded if columns is None else coded[columns],
            part,
            docs_dir,
            result_format="COMPLETE",
            context=context,
        )
        outcomes += run.outcomes
    return outcomes


def run_sampled_checks(
    frame: pd.DataFrame, part: pd.DataFrame, sampled: Any, docs_dir: Path | None, context: Any
) -> list[Outcome]:
    """The sample-safe checks on `part`; any that fails on a sample is run again on every row,
    and that verdict replaces the sample's."""
    run = run_suite(part, sampled, docs_dir, result_format="SUMMARY", context=context)
    failed = {i for i, o in enumerate(run.outcomes) if not o.success}
    if not failed or part is frame:
        return run.outcomes
    d = suite_to_dict(sampled)
    recheck = type(sampled)(
        **{
            **d,
            "name": f"{d['name']}.confirmed",
            "expectations": [
                e for e in d["expectations"] if any(_same(e, run.outcomes[i]) for i in failed)
            ],
        }
    )
    confirmed = run_suite(frame, recheck, docs_dir, result_format="SUMMARY", context=context)
    return [
        next((c for c in confirmed.outcomes if _same_outcome(c, o)), o) if i in failed else o
        for i, o in enumerate(run.outcomes)
    ]


COLUMNS_PER_RUN = 6


def exact_parts(suite: Any, columns: list[str], split: bool) -> list[tuple[Any, list[str] | None]]:
    """The every-row checks as (suite, columns to hand GX; None = the whole frame). Split: the
    single-column checks of each group of COLUMNS_PER_RUN columns (suite order) get only those
    columns; table-level and multi-column checks, and checks on absent columns, see the frame."""
    from adapters.gx import import_gx

    if not split:
        return [(suite, None)]
    gx = import_gx()
    d = suite_to_dict(suite)
    whole: list[dict[str, Any]] = []
    by_column: dict[str, list[dict[str, Any]]] = {}
    for e in d["expectations"]:
        column = e.get("kwargs", {}).get("column")
        if isinstance(column, str) and column in columns:
            by_column.setdefault(column, []).append(e)
        else:
            whole.append(e)
    names = list(by_column)
    parts: list[tuple[Any, list[str] | None]] = []
    if whole:
        parts.append((gx.ExpectationSuite(**{**d, "expectations": whole}), None))
    for i in range(0, len(names), COLUMNS_PER_RUN):
        group = names[i : i + COLUMNS_PER_RUN]
        parts.append(
            (
                gx.ExpectationSuite(
                    **{
                        **d,
                        "name": f"{d['name']}.columns{i // COLUMNS_PER_RUN + 1}",
                        "expectations": [e for c in group for e in by_column[c]],
                    }
                ),
                group,
            )
        )
    return parts


def _same(expectation: dict[str, Any], o: Outcome) -> bool:
    kwargs = {k: v for k, v in expectation.get("kwargs", {}).items() if k != "batch_id"}
    return expectation["type"] == o.type and kwargs == o.kwargs


def _same_outcome(a: Outcome, b: Outcome) -> bool:
    return a.type == b.type and a.kwargs == b.kwargs


@dataclass
class RawValidation:
    kept: pd.DataFrame
    quarantined: pd.DataFrame
    duplicates: int
    run: SuiteRun
    report: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# 1. structure
# ------------------------------------------------------------------------------------------------
def check_structure(df: pd.DataFrame, data: DataSettings, source: str) -> None:
    """Raise DataError for tables no suite can make sense of."""
    if df.shape[1] == 0:
        raise DataError(f"{source}: the table has no columns")
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"{source}: duplicated column names: {preview(duplicated)}")
    if data.target not in df.columns:
        raise DataError(
            f"{source}: target column {data.target!r} (data.target in params.yaml) is not in the "
            f"data; columns are: {preview(df.columns, 20)}"
        )
    if len(df) == 0:
        raise DataError(f"{source}: the table has a header but no rows")
    if df.shape[1] == 1:
        raise DataError(f"{source}: there are no feature columns besides the target")
    empty = [c for c in df.columns if df[c].isna().all()]
    if empty:
        raise DataError(
            f"{source}: column(s) {preview(empty)} are entirely missing "
            f"(all {len(df)} values empty)"
        )
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_float_dtype(s.dtype):
            inf = s[np.isinf(s.to_numpy(dtype=float, na_value=np.nan))]
            if len(inf):
                raise DataError(
                    f"{source}: column {col!r} holds {len(inf)} infinite value(s) "
                    f"({preview(inf.unique())}) at row(s) {preview(inf.index)}; "
                    "replace them with a number or leave the cell empty"
                )


# ------------------------------------------------------------------------------------------------
# 2. the suite: table-level vs row-level failures, quarantine
# ------------------------------------------------------------------------------------------------
def gate_of(outcome: Outcome, target: str) -> str:
    """'row' if the failing rows can be quarantined, else 'table' (the run stops).

    A suite entry may say so itself with meta {"gate": "row"|"table"}. Otherwise: anything on the
    target except a missing value, a `mostly` threshold (too many rows missing), an expectation
    that could not be evaluated, and every type outside ROW_LEVEL_TYPES are table-level.
    """
    declared = outcome.meta.get("gate")
    if declared in {"row", "table"}:
        return "row" if declared == "row" and outcome.rows else "table"
    if outcome.exception or not outcome.rows:
        return "table"
    if outcome.column == target and outcome.type != "expect_column_values_to_not_be_null":
        return "table"
    if outcome.kwargs.get("mostly") not in (None, 1, 1.0):
        return "table"
    return "row" if outcome.type in ROW_LEVEL_TYPES else "table"


def quarantine_rows(df: pd.DataFrame, failures: list[Outcome]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split df into (kept, quarantined); each quarantined row says which expectations it failed."""
    reasons: dict[int, list[str]] = defaultdict(list)
    for o in failures:
        for row in o.rows:
            reasons[row].append(o.label)
    bad = sorted(reasons)
    quarantined = df.loc[bad].copy()
    quarantined[SOURCE_ROW] = bad
    quarantined[REASON] = ["; ".join(reasons[r]) for r in bad]
    return df.drop(index=bad), quarantined.reset_index(drop=True)


def drop_duplicate_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    deduped = df.drop_duplicates(ignore_index=True)
    return deduped, len(df) - len(deduped)


def _column_set_difference(kwargs: dict[str, Any], df: pd.DataFrame) -> str:
    expected, observed = set(kwargs.get("column_set") or []), set(df.columns)
    parts = []
    if expected - observed:
        parts.append(f"missing column(s) {preview(sorted(expected - observed), 10)}")
    if kwargs.get("exact_match", True) and observed - expected:
        parts.append(f"unexpected column(s) {preview(sorted(observed - expected), 10)}")
    return "; ".join(parts) or "columns differ"


def _wrong_type(kwargs: dict[str, Any], column: pd.Series) -> str:
    wanted = kwargs.get("type_") or "/".join(kwargs.get("type_list") or [])
    text = ""
    if any(t in wanted for t in ("int", "float")) and not pd.api.types.is_numeric_dtype(column):
        s = column.dropna()
        not_numbers = s[pd.to_numeric(s, errors="coerce").isna()].unique()
        if len(not_numbers):
            text = f"; values that are not numbers: {preview(not_numbers)}"
    return f"expected {wanted} values but the column holds {column.dtype}{text}"


def describe_failure(o: Outcome, df: pd.DataFrame) -> str:
    """One line a data scientist can act on: expectation, column, what was wrong, examples."""
    k, col = o.kwargs, o.column
    where = f"{o.type} on column {col!r}" if col else o.type
    if col and col not in df.columns:
        return f"{where}: column {col!r} is not in the data"
    if o.exception:
        return f"{where}: could not be checked ({o.exception.splitlines()[0][:200]})"
    n = len(df)
    count = o.unexpected_count or 0
    eg = f"; e.g. {preview(o.examples)}" if o.examples else ""
    if o.type == "expect_table_columns_to_match_set":
        return f"{where}: {_column_set_difference(k, df)}"
    if o.type == "expect_table_row_count_to_be_between":
        return (
            f"{where}: the table has {n} rows; expected between {k.get('min_value')} and "
            f"{k.get('max_value') or 'any number'}"
        )
    if o.type in {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}:
        return f"{where}: {_wrong_type(k, df[col])}"
    if o.type == "expect_column_values_to_not_be_null":
        missing = int(df[col].isna().sum())
        mostly = k.get("mostly")
        limit = (
            f"; at most {100 * (1 - mostly):.0f}% may be missing"
            if mostly
            else "; no value may be missing"
        )
        return f"{where}: {missing} of {n} values are missing ({100 * missing / n:.1f}%){limit}"
    if o.type == "expect_column_unique_value_count_to_be_between":
        levels = df[col].dropna().unique()
        return (
            f"{where}: {o.observed} distinct value(s) ({preview(levels)}); expected at least "
            f"{k.get('min_value')}"
            + (" (a classification target needs two classes)" if k.get("min_value") == 2 else "")
        )
    if o.type == "expect_column_values_to_be_in_set":
        allowed = k.get("value_set") or []
        return (
            f"{where}: {count} value(s) not in the allowed set "
            f"[{preview(allowed, 10)}{', ...' if len(allowed) > 10 else ''}]{eg}"
        )
    if o.type == "expect_column_values_to_be_between":
        return f"{where}: {count} value(s) outside [{k.get('min_value')}, {k.get('max_value')}]{eg}"
    if o.type == "expect_column_values_to_be_unique":
        return f"{where}: {count} value(s) are not unique{eg}"
    detail = f"{count} unexpected value(s)" if o.unexpected_count else f"observed {o.observed!r}"
    return f"{where}: {detail}{eg}"


def format_failures(
    source: str, suite_path: str, headline: str, failures: list[Outcome], df: pd.DataFrame
) -> str:
    lines = [f"{source}: {headline} (suite {suite_path}):"]
    lines += [f"  - {describe_failure(o, df)}" for o in failures]
    return "\n".join(lines)


TYPE_CHECKS = ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list")


def _relevant(failures: list[Outcome], df: pd.DataFrame) -> list[Outcome]:
    """Drop follow-on noise (checks on a column the column-set check reports missing, checks that
    could not run on a column whose type is already reported wrong); table checks first."""
    has_set_failure = any(o.type == "expect_table_columns_to_match_set" for o in failures)
    wrong_type = {o.column for o in failures if o.type in TYPE_CHECKS}
    kept = [
        o
        for o in failures
        if not (has_set_failure and o.column is not None and o.column not in df.columns)
        and not (o.exception and o.column in wrong_type)
    ]
    return sorted(kept, key=lambda o: (o.column is not None, o.type not in TYPE_CHECKS))


def validate_raw(
    df: pd.DataFrame, suite: Any, settings: Settings, source: str, docs_dir: Path | None = None
) -> RawValidation:
    """Gate the raw table: raise DataError on table-level problems, else quarantine and dedupe."""
    data, cfg = settings.data, settings.validate_
    suite_path = cfg.raw_suite
    check_structure(df, data, source)
    frame = df.reset_index(drop=True)
    run, sampled_rows = run_raw_suite(frame, suite, cfg.sample_rows, settings.base.seed, docs_dir)
    failed = [o for o in run.outcomes if not o.success]
    table = _relevant([o for o in failed if gate_of(o, data.target) == "table"], frame)
    if table:
        raise DataError(
            format_failures(source, suite_path, "the data does not match the suite", table, frame)
        )
    row_failures = [o for o in failed if gate_of(o, data.target) == "row"]
    kept, quarantined = quarantine_rows(frame, row_failures)
    fraction = len(quarantined) / len(frame)
    if fraction > cfg.max_quarantine_fraction:
        raise DataError(
            format_failures(
                source,
                suite_path,
                f"{len(quarantined)} of {len(frame)} rows ({100 * fraction:.1f}%) fail row-level "
                f"checks, more than validate.max_quarantine_fraction "
                f"({100 * cfg.max_quarantine_fraction:.1f}%)",
                row_failures,
                frame,
            )
        )
    duplicates = 0
    if settings.preprocess.drop_duplicates:
        kept, duplicates = drop_duplicate_rows(kept)
    kept = kept.reset_index(drop=True)
    check_target(kept, data, cfg.min_rows, source)
    report = {
        "source": source,
        "suite": suite_path,
        "success": True,
        "raw_rows": len(frame),
        "kept_rows": len(kept),
        "quarantined_rows": len(quarantined),
        "duplicate_rows": duplicates,
        "quarantine_fraction": round(fraction, 6),
        "max_quarantine_fraction": cfg.max_quarantine_fraction,
        "columns": list(frame.columns),
        "expectations": len(run.outcomes),
        "sampled_checks_rows": sampled_rows,
        "failed_expectations": [dict(o.summary(), rows=len(o.rows)) for o in row_failures],
        "target_levels": target_levels(kept, data),
    }
    if report["raw_rows"] != len(kept) + len(quarantined) + duplicates:  # nothing silently lost
        raise RuntimeError(f"validate lost rows: {report}")
    return RawValidation(kept, quarantined, duplicates, run, report)


# ------------------------------------------------------------------------------------------------
# 3. target checks that depend on the task in params.yaml
# ------------------------------------------------------------------------------------------------
def check_target(df: pd.DataFrame, data: DataSettings, min_rows: int, source: str) -> None:
    y = df[data.target].dropna()
    if len(y) < min_rows:
        raise DataError(
            f"{source}: only {len(y)} rows with a target left after validation; at "
            f"least {min_rows} are needed (validate.min_rows)"
        )
    if data.task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            bad = y[pd.to_numeric(y, errors="coerce").isna()].unique()
            raise DataError(
                f"{source}: regression target {data.target!r} holds non-numeric "
                f"values: {preview(bad)}"
            )
        if not np.isfinite(y.to_numpy(dtype=float)).all():
            raise DataError(f"{source}: regression target {data.target!r} holds infinite values")
        return
    levels = y.unique()
    if len(levels) < 2:
        raise DataError(
            f"{source}: target column {data.target!r} has a single class "
            f"({preview(levels)}); classification needs at least two"
        )
    if data.task == "binary":
        if len(levels) > 2:
            raise DataError(
                f"{source}: binary target {data.target!r} has {len(levels)} levels "
                f"({preview(sorted(map(str, levels)))}); set data.task: multiclass"
            )
        if not (y.astype(str) == str(data.positive_label)).any():
            raise DataError(
                f"{source}: positive label {data.positive_label!r} "
                f"(data.positive_label) never occurs in {data.target!r}; levels are "
                f"{preview(levels)}"
            )


def target_levels(df: pd.DataFrame, data: DataSettings) -> dict[str, int]:
    if data.task == "regression":
        return {}
    counts = df[data.target].astype(str).value_counts().sort_index()
    return {str(k): int(v) for k, v in counts.items()}


# ------------------------------------------------------------------------------------------------
# Model input (after preprocessing / features)
# ------------------------------------------------------------------------------------------------
def validate_model_input(
    frame: pd.DataFrame, suite: Any, suite_path: str, docs_dir: Path | None = None
) -> SuiteRun:
    """Every failure of the model-input suite is a bug upstream (imputation, encoding): stop."""
    # Any failure stops the run, so counts and examples are enough (SUMMARY): no per-row lists.
    run = run_suite(frame.reset_index(drop=True), suite, docs_dir, result_format="SUMMARY")
    failed = _relevant([o for o in run.outcomes if not o.success], frame)
    if failed:
        raise DataError(
            format_failures(
                "model input (preprocessed train/valid/test)",
                suite_path,
                "the model input does not match the suite",
                failed,
                frame,
            )
        )
    return run


def require_suite(paths: ArtifactPaths, rel: str, key: str) -> Any:
    path = paths.resolve(rel)
    if not path.is_file():
        raise DataError(
            f"{rel}: expectation suite not found (validate.{key} in params.yaml). For new data, "
            "run `python -m flows suggest-expectations` to write suggested suites from it, review "
            "them, and commit them."
        )
    return load_suite(path)


def gate_model_input(settings: Settings, ctx: RunContext, frames: dict[str, pd.DataFrame]) -> dict:
    """Run the model-input suite on the transformed splits; write its report and Data Docs.

    Called by the stage that produces the model input (`features`), before it writes any
    output, so a failure leaves the previous outputs as they were.
    """
    paths = ArtifactPaths(settings.root)
    cfg = settings.validate_
    suite = require_suite(paths, cfg.model_input_suite, "model_input_suite")
    frame = pd.concat(list(frames.values()), ignore_index=True)
    with data_docs_site(paths, "model_input", cfg.data_docs, ctx) as docs:
        run = validate_model_input(frame, suite, cfg.model_input_suite, docs)
    report = {
        "suite": cfg.model_input_suite,
        "success": run.success,
        "rows": len(frame),
        "columns": list(frame.columns),
        "expectations": len(run.outcomes),
    }
    write_json(report, paths.model_input_report)
    return report


@contextlib.contextmanager
def data_docs_site(
    paths: ArtifactPaths, name: str, enabled: bool, ctx: RunContext
) -> Iterator[Path | None]:
    """The folder GX writes a validation's Data Docs into (None when they are off).

    Only a passing validation replaces the published site (reports/data_docs/<name>/, one folder
    swap); a failed one's docs go to the (failed) MLflow run only. Turned off, the declared
    output still exists and says why it is empty."""
    with atomic_dir(paths.data_docs(name)) as site:
        try:
            yield site if enabled else None
        except DataError:
            if enabled:
                make_site_offline(site)
                log_dir_to_run(ctx, site, f"data_docs/{name}")
            raise
        if enabled:
            make_site_offline(site)  # readable offline and in MLflow's artifact viewer
            log_dir_to_run(ctx, site, f"data_docs/{name}")
        else:
            (site / "index.html").write_text(
                "<p>Data Docs are turned off (validate.data_docs: false in params.yaml).</p>\n"
            )


@task(name="validate")
def validate_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    cfg = settings.validate_
    suite = require_suite(paths, cfg.raw_suite, "raw_suite")
    raw = read_parquet(paths.raw)
    source = settings.data.source
    with data_docs_site(paths, "raw", cfg.data_docs, ctx) as docs:
        result = validate_raw(raw, suite, settings, source, docs)
        report = dict(result.report)
        if paths.ingest_report.is_file():  # text such as "N/A" that ingest read as missing
            report["missing_markers"] = read_json(paths.ingest_report).get("missing_markers", {})
        if cfg.data_docs:
            report["data_docs"] = str(
                paths.data_docs("raw").relative_to(settings.root) / "index.html"
            )
        write_parquet(result.quarantined, paths.quarantine)
        write_parquet(result.kept, paths.validated)
        write_json(report, paths.validation_report)
    log.info(
        "validate: %d raw rows = %d kept + %d quarantined + %d duplicates (suite %s, %d "
        "expectations)",
        report["raw_rows"],
        report["kept_rows"],
        report["quarantined_rows"],
        report["duplicate_rows"],
        cfg.raw_suite,
        report["expectations"],
    )
    if report["quarantined_rows"]:
        log.warning(
            "validate: %d row(s) quarantined in %s: %s",
            report["quarantined_rows"],
            paths.quarantine.relative_to(settings.root),
            "; ".join(
                f"{f['expectation']}({f['column']}): {f['rows']}"
                for f in report["failed_expectations"]
            ),
        )
    log_to_run(
        ctx,
        metrics={
            "validated_rows": report["kept_rows"],
            "quarantined_rows": report["quarantined_rows"],
            "duplicate_rows": report["duplicate_rows"],
            "raw_rows_validated": report["raw_rows"],
        },
        artifacts=[paths.validation_report],
        artifact_dir="validation",
    )
    return paths.validated
