"""Great Expectations (GX Core 1.x) plumbing: suites as plain JSON, a quiet in-memory context,
one validation with per-expectation outcomes, and Data Docs built into a folder we choose.

GX is imported lazily (it costs ~3 s), so stages that never validate do not pay for it. How GX
1.24 behaves on pandas 3 (types, NaN, inf, silent drops) is commented where it matters.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DOCS_SITE = "local"


def import_gx() -> Any:
    """Import GX without its side effects on the rest of the process."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # 1.24 has no analytics; belt and braces
    import great_expectations as gx

    # GX calls logging.captureWarnings(True) at import, which swallows every warning in the
    # process (pandas', ours). Undo it.
    logging.captureWarnings(False)
    return gx


# --------------------------------------------------------------------------------------------
# Suites as committed JSON
# --------------------------------------------------------------------------------------------
def suite_to_dict(suite: Any) -> dict[str, Any]:
    """The suite as JSON without store-assigned ids (so the committed file is stable)."""
    d = suite.to_json_dict()
    d.pop("id", None)
    for e in d.get("expectations", []):
        e.pop("id", None)
    return _jsonable(d)


def save_suite(suite: Any, path: Path) -> Path:
    from core.io import write_text

    write_text(json.dumps(suite_to_dict(suite), indent=2) + "\n", path)
    return path


def load_suite(path: Path) -> Any:
    """Load a suite file. GX's constructor logs and *drops* an invalid expectation; we refuse."""
    from core.errors import DataError

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: expectation suite cannot be read as JSON: {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get("expectations"), list):
        raise DataError(f"{path}: not an expectation suite (needs 'name' and 'expectations')")
    d.pop("id", None)
    for e in d["expectations"]:
        e.pop("id", None)
    gx = import_gx()
    gx_log = logging.getLogger("great_expectations")
    level = gx_log.level
    gx_log.setLevel(logging.CRITICAL)  # the dropped entry is reported below, without a traceback
    try:
        suite = gx.ExpectationSuite(**d)
    except Exception as exc:
        raise DataError(f"{path}: invalid expectation suite: {exc}") from None
    finally:
        gx_log.setLevel(level)
    if len(suite.expectations) != len(d["expectations"]):
        known = {e.expectation_type for e in suite.expectations}
        bad = [e.get("type") for e in d["expectations"] if e.get("type") not in known]
        raise DataError(
            f"{path}: {len(d['expectations']) - len(suite.expectations)} expectation(s) "
            f"could not be loaded (unknown type or bad arguments): {bad[:5]}"
        )
    return suite


def build_suite(name: str, expectations: list[Any], meta: dict[str, Any] | None = None) -> Any:
    gx = import_gx()
    return gx.ExpectationSuite(name=name, expectations=expectations, meta=meta or {})


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One expectation's result, in plain Python."""

    type: str
    column: str | None
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # index labels of every unexpected row
    exception: str | None = None

    @property
    def label(self) -> str:
        return f"{self.type}({self.column})" if self.column else self.type

    def summary(self) -> dict[str, Any]:
        return _jsonable(
            {
                "expectation": self.type,
                "column": self.column,
                "success": self.success,
                "observed": self.observed,
                "unexpected_count": self.unexpected_count,
                "examples": self.examples,
                "error": self.exception,
            }
        )


@dataclass
class SuiteRun:
    suite: str
    success: bool
    outcomes: list[Outcome]
    docs_index: Path | None


def _context(docs_dir: Path | None) -> Any:
    """A throw-away in-memory context: no progress bars, no temp docs site, no network."""
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if docs_dir is not None:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir.resolve()),
            },  # must be absolute
        }
    cfg = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    # mode= is required: without it GX picks a cloud or file context if it finds one.
    return gx.get_context(project_config=cfg, mode="ephemeral")


gx_context = _context  # public name: one context shared by several run_suite calls


def run_suite(
    df: pd.DataFrame,
    suite: Any,
    docs_dir: Path | None = None,
    examples: int = 5,
    result_format: str = "COMPLETE",
    context: Any = None,
) -> SuiteRun:
    """Validate an in-memory frame (unique index required); build Data Docs into docs_dir.

    COMPLETE is the only result format returning every unexpected row index (for quarantine);
    SUMMARY returns counts and a few examples, which is all a table-level check needs and keeps
    GX from serialising million-entry index lists. Pass one `context` (`gx_context(docs_dir)`)
    to several calls to put their results in one Data Docs site.
    """
    gx = import_gx()
    from great_expectations.checkpoint import UpdateDataDocsAction

    ctx = context if context is not None else _context(docs_dir)
    bound = ctx.suites.add(gx.ExpectationSuite(**suite_to_dict(suite)))
    batch = (
        ctx.data_sources.add_pandas(f"pandas.{bound.name}")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{bound.name}", data=batch, suite=bound)
    )
    actions = [UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])] if docs_dir else []
    cp = ctx.checkpoints.add(
        gx.Checkpoint(
            name=f"{bound.name}_checkpoint",
            validation_definitions=[vd],
            actions=actions,
            result_format={
                "result_format": result_format,
                "partial_unexpected_count": examples,
                "return_unexpected_index_query": False,
            },
        )
    )
    result = cp.run(batch_parameters={"dataframe": df})
    ((_, vres),) = result.run_results.items()
    outcomes = [_outcome(r, examples) for r in vres.results]
    return SuiteRun(
        suite=bound.name,
        success=bool(vres.success),
        outcomes=outcomes,
        docs_index=(docs_dir / "index.html") if docs_dir else None,
    )


def _outcome(r: Any, examples: int) -> Outcome:
    cfg = r.expectation_config
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    res = r.result or {}
    rows = res.get("unexpected_index_list") or res.get("partial_unexpected_index_list") or []
    values = res.get("unexpected_list")
    if values is None:
        values = res.get("partial_unexpected_list", [])
    distinct: list[Any] = []
    for v in values:  # a few *different* offending values say more than five copies of one
        if v not in distinct:
            distinct.append(v)
            if len(distinct) == examples:
                break
    return Outcome(
        type=cfg.type,
        column=kwargs.get("column"),
        kwargs=_jsonable(kwargs),
        meta=dict(cfg.meta or {}),
        success=bool(r.success),
        observed=_jsonable(res.get("observed_value")),
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=res.get("unexpected_percent"),
        examples=_jsonable(distinct),
        rows=[int(v) for v in rows if not isinstance(v, dict)],
        exception=_exception_message(r.exception_info),
    )


def _exception_message(info: Any) -> str | None:
    """exception_info is {"raised_exception": ..} or a dict of those keyed by metric id."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    msgs = {
        v.get("exception_message")
        for v in info.values()
        if isinstance(v, dict) and v.get("raised_exception")
    }
    return "; ".join(sorted(m for m in msgs if m)) or None


def _jsonable(obj: Any) -> Any:
    """numpy scalars, NaN and inf -> plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return obj


# --------------------------------------------------------------------------------------------
# Suggesting suites (GX Core 1.x has no profiler: DataAssistants were removed before 1.0)
# --------------------------------------------------------------------------------------------
NUMERIC_TYPES = ["int64", "float64"]


def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def type_expectation(column: str, s: pd.Series) -> Any:
    """Type check for a column. Numbers accept int64 or float64: one missing value turns a CSV
    integer column into floats, which is not a schema change. Text is "str" (pandas 3)."""
    import great_expectations.expectations as gxe

    if _is_number(s):
        return gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMERIC_TYPES)
    if pd.api.types.is_bool_dtype(s.dtype):
        return gxe.ExpectColumnValuesToBeOfType(column=column, type_="bool")
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return gxe.ExpectColumnValuesToBeOfType(column=column, type_="datetime64")
    return gxe.ExpectColumnValuesToBeOfType(column=column, type_="str")


def suggest_raw_suite(
    df: pd.DataFrame,
    target: str,
    task: str,
    min_rows: int,
    id_columns: tuple[str, ...] = (),
    max_categories: int = 25,
    null_slack: float = 0.02,
    range_margin: float = 0.1,
) -> Any:
    """A starting suite from the observed data, meant to be reviewed and edited, then committed.

    Per column: a type; not-null (strict when nothing is missing, else `mostly` a little below
    the observed share); an allowed set for text with few levels; a [min, max] range padded by
    `range_margin` (never below 0 for a non-negative column). The target gets its level set and,
    for classification, at least two classes; both are table-level (`meta.gate: table`).
    """
    import_gx()
    import great_expectations.expectations as gxe

    n = len(df)
    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[str(c) for c in df.columns], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=None),
    ]
    for col in df.columns:
        s = df[col]
        exps.append(type_expectation(col, s))
        share = float(s.notna().mean()) if n else 1.0
        if share == 1.0 or col == target:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
        else:
            mostly = max(0.01, math.floor((share - null_slack) * 100) / 100)
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, mostly=mostly))
        values = s.dropna()
        if values.empty:
            continue
        if col in id_columns:
            exps.append(gxe.ExpectColumnValuesToBeUnique(column=col))
            continue
        if col == target and task != "regression":
            levels = sorted(_jsonable(values.unique().tolist()), key=str)
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col, value_set=levels, meta={"gate": "table"}
                )
            )
            exps.append(
                gxe.ExpectColumnUniqueValueCountToBeBetween(
                    column=col, min_value=2, max_value=None, meta={"gate": "table"}
                )
            )
            continue
        if _is_number(s):
            finite = values[np.isfinite(values.astype("float64"))]
            if finite.empty:
                continue
            lo, hi = float(finite.min()), float(finite.max())
            pad = (hi - lo) * range_margin
            lo2, hi2 = (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad
            if pd.api.types.is_integer_dtype(s.dtype):
                lo2, hi2 = float(math.floor(lo2)), float(math.ceil(hi2))
            exps.append(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo2, max_value=hi2))
        elif values.nunique() <= max_categories:
            levels = sorted(_jsonable(values.unique().tolist()), key=str)
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=levels))
    return build_suite(
        "raw",
        exps,
        meta={
            "generated_by": "python -m flows suggest-expectations",
            "rows_profiled": n,
            "target": target,
        },
    )


def suggest_model_input_suite(frame: pd.DataFrame, imputed: list[str]) -> Any:
    """Suite for the model input (the fitted preprocessing's output): the expected columns are
    present, imputed columns hold no missing values, and every number is finite."""
    import_gx()
    import great_expectations.expectations as gxe

    # Missing-value indicator columns depend on which columns had gaps in the train split, so
    # the column set is "at least these" rather than exact.
    base = [c for c in frame.columns if not str(c).startswith("missingindicator_")]
    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=base, exact_match=False),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
    ]
    for col in base:
        exps.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
        if col in imputed:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
        # Finite: GX's between flags +-inf (NaN is left to the not-null check).
        exps.append(
            gxe.ExpectColumnValuesToBeBetween(column=col, min_value=-1e300, max_value=1e300)
        )
    return build_suite(
        "model_input", exps, meta={"generated_by": "python -m flows suggest-expectations"}
    )
