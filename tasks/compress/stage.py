"""compress: the smallest model within `compress.max_metric_drop` of the full one, compiled.

Candidates (each a CompactModel that takes raw rows, `candidates`): tree pruning, feature
pruning (top-k by gain, retrained), distillation (a small student on the teacher's raw scores over
train + synthetic rows) next to the same small model on hard labels, quantization (float16 / int8
leaves). Every candidate is scored on the valid split; the choice (`select.select_candidate`,
pure) is the smallest serialized size whose valid-metric drop is within tolerance. The chosen
model is compiled (treelite + tl2cgen, gcc) with a parity check on the test split; without a
compiler or runtime it predicts with LightGBM. `report` measures and tabulates them.

Outputs: models/compact/ (model.joblib, compact.so when compiled, compact.json manifest),
reports/compress/ (pareto.csv, pareto.json, size_vs_metric.png), metrics/compress.json.
The register stage registers the chosen model as `<model_name>-compact`
(tasks/register/compact.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from adapters.tracking import RunContext, log_dir_to_run, log_to_run
from core.config import Settings
from core.io import (
    ArtifactPaths,
    atomic_dir,
    dump_joblib,
    file_md5,
    load_joblib,
    read_parquet,
    write_csv,
    write_json,
)
from inference.compact import CompactModel
from inference.model import InferenceModel, encode_target
from tasks.compress.candidates import Splits, build_candidates, compile_chosen
from tasks.compress.report import (
    COLUMNS,
    Scored,
    full_row,
    measure_latency,
    pareto_table,
    plot_size_vs_metric,
    timings_table,
)
from tasks.compress.select import metric_drop, select_candidate

log = logging.getLogger(__name__)


def load_splits(settings: Settings, model: InferenceModel, paths: ArtifactPaths) -> Splits:
    frames = {n: read_parquet(paths.split(n)) for n in ("train", "valid", "test")}
    ys = {
        n: encode_target(f[settings.data.target], model.task, classes=model.classes or None)[0]
        for n, f in frames.items()
    }
    return Splits(
        frames["train"], frames["valid"], frames["test"], ys["train"], ys["valid"], ys["test"]
    )


def write_disabled(
    paths: ArtifactPaths, reason: str = "compress.enabled: false", table: pd.DataFrame | None = None
) -> Path:
    """No compact model: the declared outputs still exist and say why (compression off, or no
    candidate within tolerance); the Pareto table lists what was tried, if anything."""
    table = pd.DataFrame(columns=COLUMNS) if table is None else table
    paths.compress_timings.unlink(missing_ok=True)
    with atomic_dir(paths.compact_dir) as staging:
        write_json({"enabled": False, "reason": reason}, staging / "compact.json")
    write_json({"enabled": False, "reason": reason}, paths.compress_metrics)
    with atomic_dir(paths.compress_reports) as reports:
        write_csv(table, reports / "pareto.csv")  # the same columns, empty when nothing ran
        write_json(table.to_dict("records"), reports / "pareto.json")
    log.info("compress: no compact model (%s); only the full model is registered", reason)
    return paths.compress_metrics


def choose(
    settings: Settings,
    scored: list[Scored],
    reference: Scored,
    metric: str,
    dropped: list[tuple[str, str, str]],
) -> tuple[Scored | None, pd.DataFrame]:
    """The candidate `select_candidate` picks from the Pareto table (None: none qualifies)."""
    table = pareto_table(
        [reference, *scored], metric, reference.valid_metric, reference.test_metric, None, dropped
    )
    pick = select_candidate(table.to_dict("records"), settings.compress.max_metric_drop)
    if pick is None:
        return None, table
    return next(s for s in scored if s.name == pick["candidate"]), table


def compact_summary(
    settings: Settings,
    chosen: Scored,
    reference: Scored,
    packed: Scored | None,
    compiled: Scored | None,
    model: CompactModel,
    model_file: Path,
    train_rows: int,
) -> dict[str, Any]:
    """models/compact/compact.json: what was chosen, its size and drop against the full."""
    cfg, metric = settings.compress, settings.gate_metric
    summary: dict[str, Any] = {
        "enabled": True,
        "metric": metric,
        "max_metric_drop": cfg.max_metric_drop,
        "candidate": chosen.name,
        "kind": chosen.kind,
        "compiled": compiled is not None,
        "parity_max_abs": compiled.parity if compiled else None,
        "raw_columns": model.raw_columns,
        "retrain_rows": min(train_rows, cfg.retrain_rows),
        "full_size_bytes": reference.size_bytes,
        "compact_size_bytes": model_file.stat().st_size,
        "full_packed_bytes": packed.size_bytes if packed else None,
        "compact_packed_bytes": chosen.size_bytes,
        "valid_drop": round(metric_drop(metric, reference.valid_metric, chosen.valid_metric), 6),
        "test_drop": round(metric_drop(metric, reference.test_metric, chosen.test_metric), 6),
        f"valid_{metric}": round(chosen.valid_metric, 6),
        f"test_{metric}": round(chosen.test_metric, 6),
        # The held-out figure: paired bootstrap interval of the drop on the test split, which
        # nothing in compression chose on.
        "test_drop_interval": [round(v, 6) for v in chosen.test_drop_ci],
        "valid_drop_bound": round(chosen.valid_drop_bound, 6),
        "ci_level": settings.evaluate.ci_level,
    }
    summary["size_ratio"] = round(summary["full_size_bytes"] / summary["compact_size_bytes"], 2)
    summary["packed_size_ratio"] = (
        round(packed.size_bytes / chosen.size_bytes, 2) if packed else None
    )
    return summary


def compress_timings(
    reference: Scored, final: Scored, measured: list[Scored], compact_md5: str
) -> dict[str, Any]:
    """reports/timings/compress.json: the speed of the full and the compact model, and of every
    candidate, measured in this run; `compact_model_md5` names the model they belong to."""
    return {
        "compact_model_md5": compact_md5,
        "full_p50_single_row_ms": round(reference.p50_ms, 4),
        "compact_p50_single_row_ms": round(final.p50_ms, 4),
        "full_batch_rows_per_s": round(reference.rows_per_s, 1),
        "compact_batch_rows_per_s": round(final.rows_per_s, 1),
        "latency_ratio": round(reference.p50_ms / final.p50_ms, 2),
        "throughput_ratio": round(final.rows_per_s / reference.rows_per_s, 2),
        "candidates": timings_table(measured),
    }


def write_compact(
    settings: Settings,
    paths: ArtifactPaths,
    chosen: Scored,
    scored: list[Scored],
    reference: Scored,
    packed: Scored | None,
    rows: pd.DataFrame,
    train_rows: int,
    dropped: list[tuple[str, str, str]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compile the chosen model and write models/compact/ and reports/compress/, each as one
    folder swap; returns the manifest and the timings."""
    cfg, metric = settings.compress, settings.gate_metric
    with atomic_dir(paths.compact_dir) as staging, atomic_dir(paths.compress_reports) as reports:
        compiled = None
        if cfg.compile:
            compiled = compile_chosen(chosen, rows, staging / "compact.so", settings.train.n_jobs)
            if compiled is not None:
                measure_latency([compiled], rows, cfg.latency_rows, cfg.batch_seconds)
                chosen.model.detach_compiled()  # type: ignore[attr-defined]  # loaders attach it
        every = [reference, *scored, *([compiled] if compiled else [])]
        table = pareto_table(
            every, metric, reference.valid_metric, reference.test_metric, chosen.name, dropped
        )
        model: CompactModel = chosen.model  # type: ignore[assignment]
        model.metadata.update(
            {"candidate": chosen.name, "full_model_md5": file_md5(paths.evaluation_model)}
        )
        dump_joblib(model, staging / "model.joblib")
        summary = compact_summary(
            settings,
            chosen,
            reference,
            packed,
            compiled,
            model,
            staging / "model.joblib",
            train_rows,
        )
        write_json(summary, staging / "compact.json")
        timings = compress_timings(
            reference, compiled or chosen, every, file_md5(staging / "model.joblib")
        )
        write_csv(table, reports / "pareto.csv")
        write_json(table.to_dict("records"), reports / "pareto.json")
        plot_size_vs_metric(
            table,
            metric,
            cfg.max_metric_drop,
            reference.valid_metric,
            reports / "size_vs_metric.png",
        )
    return summary, timings


# What metrics/compress.json and the MLflow run carry of the manifest (timings: MLflow only).
SUMMARY_METRICS = ("size_ratio", "packed_size_ratio", "valid_drop", "test_drop")


def log_choice(
    summary: dict[str, Any],
    timings: dict[str, Any],
    chosen: Scored,
    candidates: int,
    seconds: float,
) -> None:
    log.info(
        "compress: %d candidates in %.1fs; chose %s (%s): %d bytes (%.1fx smaller), valid "
        "%s drop %+.4f (bound %+.4f), held-out test drop %+.4f [%+.4f, %+.4f], single row "
        "%.2f ms vs %.2f ms (%.1fx)%s",
        candidates,
        seconds,
        chosen.name,
        chosen.kind,
        summary["compact_size_bytes"],
        summary["size_ratio"],
        summary["metric"],
        summary["valid_drop"],
        summary["valid_drop_bound"],
        summary["test_drop"],
        *summary["test_drop_interval"],
        timings["compact_p50_single_row_ms"],
        timings["full_p50_single_row_ms"],
        timings["latency_ratio"],
        f"; compiled, parity {summary['parity_max_abs']:.2g}" if summary["compiled"] else "",
    )


@task(name="compress")
def compress_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    if not settings.compress.enabled:
        return write_disabled(paths)
    try:
        return compress_model(settings, ctx, paths)
    except Exception as exc:  # optional: never takes the full model down
        reason = f"compression failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
        log.warning("compress: %s", reason)
        return write_disabled(paths, reason)


def compress_model(settings: Settings, ctx: RunContext, paths: ArtifactPaths) -> Path:
    """Build, score and choose the candidates, compile the chosen one, write the outputs."""
    cfg = settings.compress
    full: InferenceModel = load_joblib(paths.evaluation_model)
    metric = settings.gate_metric
    splits = load_splits(settings, full, paths)
    start = time.perf_counter()
    scored, dropped = build_candidates(settings, full, splits, metric)
    packed = scored[0] if full.is_single_lightgbm and scored else None
    reference = full_row(full, packed, paths, splits, metric)
    rows = splits.test.drop(columns=[settings.data.target])
    measure_latency([reference, *scored], rows, cfg.latency_rows, cfg.batch_seconds)
    chosen, table = choose(settings, scored, reference, metric, dropped)
    if chosen is None:
        return write_disabled(
            paths,
            f"no candidate's valid drop is within compress.max_metric_drop "
            f"({cfg.max_metric_drop:g}) at its one-sided {settings.evaluate.ci_level:.0%} "
            "upper bound",
            table,
        )
    summary, timings = write_compact(
        settings, paths, chosen, scored, reference, packed, rows, len(splits.train), dropped
    )
    metrics = {k: summary[k] for k in SUMMARY_METRICS}
    write_json(
        {**metrics, "candidate": chosen.name, "compiled": summary["compiled"]},
        paths.compress_metrics,
    )
    write_json(timings, paths.compress_timings)
    log_choice(summary, timings, chosen, len(scored), time.perf_counter() - start)
    speed = {k: timings[k] for k in ("latency_ratio", "throughput_ratio")}
    log_to_run(
        ctx,
        metrics={f"compress_{k}": v for k, v in {**metrics, **speed}.items() if v is not None},
        params={"compress.chosen": chosen.name},
        artifacts=[paths.compress_timings],
        artifact_dir="compress",
    )
    log_dir_to_run(ctx, paths.compress_reports, "compress")
    return paths.compact_dir
