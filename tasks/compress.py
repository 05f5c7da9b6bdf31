"""compress: the smallest model within `compress.max_metric_drop` of the full one, compiled.

Candidates (each a CompactModel that takes raw rows, built in tasks/compact_build.py):
tree pruning, feature pruning (top-k by gain, retrained), distillation (a small student on the
teacher's raw scores over train + synthetic rows) next to the same small model on hard labels,
quantization (float16 / int8 leaves). Every candidate is scored on the valid split; the choice
(`select_candidate`, pure) is the smallest serialized size whose valid-metric drop is within
tolerance. The chosen model is compiled (treelite + tl2cgen, gcc) with a parity check on the test
split; without a compiler or runtime it predicts with LightGBM.

Outputs: models/compact/ (model.joblib, compact.so when compiled, compact.json manifest),
reports/compress/ (pareto.csv, pareto.json, size_vs_metric.png), metrics/compress.json.
`register` registers the chosen model as `<model_name>-compact` (`register_compact`).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from tasks import compact_build as cb
from tasks.compact import CompactModel
from tasks.config import LOWER_IS_BETTER, Settings
from tasks.evaluate import score_predictions
from tasks.io import (ArtifactPaths, dump_joblib, load_joblib, read_json, read_parquet, replace_dir,
                      write_csv, write_json)
from tasks.model import InferenceModel, encode_target
from tasks.tracking import RunContext, log_dir_to_run, log_to_run

log = logging.getLogger(__name__)

FULL = "full"
COLUMNS = ["candidate", "kind", "size_bytes", "trees", "leaves", "features", "valid_metric",
           "valid_drop", "test_metric", "test_drop", "p50_single_row_ms", "batch_rows_per_s",
           "parity_max_abs", "selectable", "chosen"]


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------


def metric_drop(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` (positive = worse), whatever the direction."""
    return (value - reference) if metric in LOWER_IS_BETTER else (reference - value)


def select_candidate(rows: Sequence[dict[str, Any]], max_drop: float) -> dict[str, Any] | None:
    """The smallest serialized size among selectable candidates whose valid drop <= max_drop.

    Ties go to the smaller drop, then the name (so the choice is deterministic). None when no
    candidate qualifies.
    """
    eligible = [r for r in rows if r.get("selectable", True)
                and r["valid_drop"] is not None and math.isfinite(r["valid_drop"])
                and r["valid_drop"] <= max_drop + 1e-12]
    if not eligible:
        return None
    return min(eligible, key=lambda r: (r["size_bytes"], r["valid_drop"], r["candidate"]))


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class Scored:
    name: str
    kind: str
    model: InferenceModel
    size_bytes: int
    trees: int
    leaves: int
    features: int
    selectable: bool = True
    parity: float | None = None        # max |prediction - its source's prediction| on test
    valid_metric: float = math.nan
    test_metric: float = math.nan
    p50_ms: float = math.nan
    rows_per_s: float = math.nan


def single_row_p50_ms(predict: Callable[[pd.DataFrame], Any], rows: pd.DataFrame, n: int) -> float:
    """Median wall time of predicting one raw row (a one-row DataFrame), over n rows."""
    singles = [rows.iloc[[i % len(rows)]] for i in range(n)]
    predict(singles[0])  # warm-up: lazy loading, first-call allocations
    times = []
    for row in singles:
        start = time.perf_counter()
        predict(row)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def batch_rows_per_s(predict: Callable[[pd.DataFrame], Any], rows: pd.DataFrame,
                     min_seconds: float = 0.3) -> float:
    predict(rows)
    done, start = 0, time.perf_counter()
    while True:
        predict(rows)
        done += len(rows)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def score_split(model: InferenceModel, rows: pd.DataFrame, y: np.ndarray, metric: str,
                scores: np.ndarray | None = None) -> float:
    scores = model.predict_scores(rows) if scores is None else scores
    return float(score_predictions(model.task, y, scores, model.threshold)[metric])


def pareto_table(scored: list[Scored], metric: str, full_valid: float, full_test: float,
                 chosen: str | None) -> pd.DataFrame:
    rows = []
    for s in scored:
        rows.append({
            "candidate": s.name, "kind": s.kind, "size_bytes": s.size_bytes, "trees": s.trees,
            "leaves": s.leaves, "features": s.features,
            "valid_metric": round(s.valid_metric, 6),
            "valid_drop": round(metric_drop(metric, full_valid, s.valid_metric), 6),
            "test_metric": round(s.test_metric, 6),
            "test_drop": round(metric_drop(metric, full_test, s.test_metric), 6),
            "p50_single_row_ms": round(s.p50_ms, 4), "batch_rows_per_s": round(s.rows_per_s, 1),
            "parity_max_abs": None if s.parity is None else float(f"{s.parity:.3g}"),
            "selectable": s.selectable, "chosen": s.name == chosen,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_size_vs_metric(table: pd.DataFrame, metric: str, max_drop: float, full_valid: float,
                        dest: Path) -> Path:
    from matplotlib.figure import Figure

    from tasks.plots import _save

    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    ax.scatter(table["size_bytes"], table["valid_metric"], color="tab:blue")
    for _, r in table.iterrows():
        ax.annotate(r["candidate"], (r["size_bytes"], r["valid_metric"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points",
                    color="tab:red" if r["chosen"] else "black")
    bound = full_valid + max_drop if metric in LOWER_IS_BETTER else full_valid - max_drop
    ax.axhline(bound, linestyle="--", color="grey", label=f"tolerance ({max_drop:g})")
    ax.set_xscale("log")
    ax.set(xlabel="serialized size (bytes, log scale)", ylabel=f"valid {metric}",
           title="Compression candidates: size vs metric")
    ax.legend(loc="best")
    return _save(fig, dest)


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    y_train: np.ndarray
    y_valid: np.ndarray
    y_test: np.ndarray


def load_splits(settings: Settings, model: InferenceModel, paths: ArtifactPaths) -> Splits:
    frames = {n: read_parquet(paths.split(n)) for n in ("train", "valid", "test")}
    ys = {n: encode_target(f[settings.data.target], model.task, classes=model.classes or None)[0]
          for n, f in frames.items()}
    return Splits(frames["train"], frames["valid"], frames["test"], ys["train"], ys["valid"],
                  ys["test"])


def build_candidates(settings: Settings, full: InferenceModel, splits: Splits,
                     metric: str) -> list[Scored]:
    """Every candidate model, scored on valid and test (latency is measured separately)."""
    cfg = settings.compress
    ctx = cb.BuildContext.create(full, splits.train, splits.valid, splits.y_train, splits.y_valid,
                                 settings)

    def valid_drop(model: InferenceModel) -> float:
        return ctx.valid_drop(ctx.scores(model, "valid", splits.valid))

    built: list[cb.Built] = [cb.packed_full(ctx)]
    built.append(cb.prune_trees(ctx, cfg.max_metric_drop))
    built += cb.prune_features(ctx, cfg.feature_fractions)
    if full.task != "multiclass":
        built.append(cb.distill(ctx, cfg))
    else:
        log.info("compress: distillation skipped (multiclass: one student per class is not built)")
    built.append(cb.hard_label_student(ctx, cfg))
    # Quantize the full model (quantization alone) and the smallest candidate within tolerance.
    within = [b for b in built if valid_drop(b.model) <= cfg.max_metric_drop + 1e-12]
    smallest = min(within, key=lambda b: b.size_bytes) if within else None
    bases = [built[0]] + ([smallest] if smallest is not None and smallest is not built[0] else [])
    for base in bases:
        for precision in cfg.quantize:
            built.append(cb.quantize(ctx, base, precision, splits.test))
    scored = []
    for b in built:
        scored.append(Scored(b.name, b.kind, b.model, b.size_bytes, b.trees, b.leaves,
                             b.features, parity=b.parity))
    for s in scored:
        s.valid_metric = score_split(s.model, splits.valid, splits.y_valid, metric,
                                     ctx.scores(s.model, "valid", splits.valid))
        s.test_metric = score_split(s.model, splits.test, splits.y_test, metric,
                                    ctx.scores(s.model, "test", splits.test))
    ctx.memo.clear()
    return scored


# Batch throughput is timed on batches of at most this many test rows: on the whole test split
# of a 1M-row table (200k rows) the warm-up and one timed batch alone took 90 s per run.
BATCH_ROWS = 20_000


def measure_latency(scored: list[Scored], rows: pd.DataFrame, n_single: int,
                    batch_seconds: float) -> None:
    batch = rows.head(BATCH_ROWS)
    for s in scored:
        s.p50_ms = single_row_p50_ms(s.model.predict_frame, rows, n_single)
        s.rows_per_s = batch_rows_per_s(s.model.predict_frame, batch, batch_seconds)


def full_row(full: InferenceModel, packed: Scored, paths: ArtifactPaths, splits: Splits,
             metric: str) -> Scored:
    """The full model as registered (its joblib file size; same trees as `packed`)."""
    s = Scored(FULL, "full", full, paths.model.stat().st_size, packed.trees, packed.leaves,
               len(full.feature_columns), selectable=False, parity=0.0)
    s.valid_metric = score_split(full, splits.valid, splits.y_valid, metric)
    s.test_metric = score_split(full, splits.test, splits.y_test, metric)
    return s


def compile_chosen(chosen: Scored, test: pd.DataFrame, libpath: Path, nthread: int) -> Scored | None:
    """Compile the chosen model; a row for the table, or None when no compiler/runtime works."""
    model = chosen.model
    assert isinstance(model, CompactModel)
    reason = cb.compile_library(model, libpath, nthread)
    if reason is not None:
        log.warning("compress: compiled inference unavailable (%s); the compact model predicts "
                    "with LightGBM", reason)
        return None
    before = model.predict_scores(test)
    if not model.attach_compiled(str(libpath)):
        return None
    parity = float(np.max(np.abs(model.predict_scores(test) - before))) if len(test) else 0.0
    return Scored(f"{chosen.name}+compiled", "compiled", model, libpath.stat().st_size,
                  chosen.trees, chosen.leaves, chosen.features, selectable=False, parity=parity,
                  valid_metric=chosen.valid_metric, test_metric=chosen.test_metric)


def _disabled(paths: ArtifactPaths, ctx: RunContext) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=".compact.", dir=paths.root / "models"))
    staging.chmod(0o755)
    write_json({"enabled": False}, staging / "compact.json")
    replace_dir(staging, paths.compact_dir)
    write_json({"enabled": False}, paths.compress_metrics)
    reports = Path(tempfile.mkdtemp(prefix=".compress.", dir=paths.root / "reports"))
    reports.chmod(0o755)
    write_csv(pd.DataFrame(columns=COLUMNS), reports / "pareto.csv")  # empty table, same shape
    write_json([], reports / "pareto.json")
    replace_dir(reports, paths.compress_reports)
    log.info("compress: disabled (compress.enabled: false); only the full model is registered")
    return paths.compress_metrics


@task(name="compress")
def compress_stage(settings: Settings, ctx: RunContext) -> Path:
    from tasks.register import file_md5

    paths = ArtifactPaths(settings.root)
    cfg = settings.compress
    for folder in (paths.root / "models", paths.root / "reports", paths.compress_metrics.parent):
        folder.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        return _disabled(paths, ctx)
    full: InferenceModel = load_joblib(paths.model)
    metric = settings.gate_metric
    splits = load_splits(settings, full, paths)
    start = time.perf_counter()
    scored = build_candidates(settings, full, splits, metric)
    reference = full_row(full, scored[0], paths, splits, metric)
    rows = splits.test.drop(columns=[settings.data.target])
    measure_latency([reference, *scored], rows, cfg.latency_rows, cfg.batch_seconds)
    table = pareto_table([reference, *scored], metric, reference.valid_metric,
                         reference.test_metric, None)
    pick = select_candidate(table.to_dict("records"), cfg.max_metric_drop)
    if pick is None:  # cannot happen: the lossless packed full model has drop 0
        raise RuntimeError("compress: no candidate within tolerance, not even the packed model")
    chosen = next(s for s in scored if s.name == pick["candidate"])

    staging = Path(tempfile.mkdtemp(prefix=".compact.", dir=paths.root / "models"))
    staging.chmod(0o755)
    reports = Path(tempfile.mkdtemp(prefix=".compress.", dir=paths.root / "reports"))
    reports.chmod(0o755)
    try:
        compiled = None
        if cfg.compile:
            compiled = compile_chosen(chosen, rows, staging / "compact.so", settings.train.n_jobs)
            if compiled is not None:
                measure_latency([compiled], rows, cfg.latency_rows, cfg.batch_seconds)
                chosen.model.detach_compiled()  # pickled without it; loaders attach the file
        final = compiled or chosen
        table = pareto_table([reference, *scored, *([compiled] if compiled else [])], metric,
                             reference.valid_metric, reference.test_metric, chosen.name)
        model: CompactModel = chosen.model  # type: ignore[assignment]
        model.metadata.update({"candidate": chosen.name, "full_model_md5": file_md5(paths.model)})
        dump_joblib(model, staging / "model.joblib")
        summary = {
            "enabled": True, "metric": metric, "max_metric_drop": cfg.max_metric_drop,
            "candidate": chosen.name, "kind": chosen.kind, "compiled": compiled is not None,
            "parity_max_abs": compiled.parity if compiled else None,
            "raw_columns": model.raw_columns,
            "retrain_rows": min(len(splits.train), cfg.retrain_rows),
            "full_size_bytes": reference.size_bytes,
            "compact_size_bytes": (staging / "model.joblib").stat().st_size,
            "full_packed_bytes": scored[0].size_bytes, "compact_packed_bytes": chosen.size_bytes,
            "valid_drop": round(metric_drop(metric, reference.valid_metric, chosen.valid_metric), 6),
            "test_drop": round(metric_drop(metric, reference.test_metric, chosen.test_metric), 6),
            f"valid_{metric}": round(chosen.valid_metric, 6),
            f"test_{metric}": round(chosen.test_metric, 6),
            "full_p50_single_row_ms": round(reference.p50_ms, 4),
            "compact_p50_single_row_ms": round(final.p50_ms, 4),
            "full_batch_rows_per_s": round(reference.rows_per_s, 1),
            "compact_batch_rows_per_s": round(final.rows_per_s, 1),
        }
        summary["size_ratio"] = round(summary["full_size_bytes"] / summary["compact_size_bytes"], 2)
        summary["packed_size_ratio"] = round(scored[0].size_bytes / chosen.size_bytes, 2)
        summary["latency_ratio"] = round(reference.p50_ms / final.p50_ms, 2)
        summary["throughput_ratio"] = round(final.rows_per_s / reference.rows_per_s, 2)
        write_json(summary, staging / "compact.json")
        write_csv(table, reports / "pareto.csv")
        write_json(table.to_dict("records"), reports / "pareto.json")
        plot_size_vs_metric(table, metric, cfg.max_metric_drop, reference.valid_metric,
                            reports / "size_vs_metric.png")
        replace_dir(staging, paths.compact_dir)
        replace_dir(reports, paths.compress_reports)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(reports, ignore_errors=True)
    metrics = {k: summary[k] for k in ("size_ratio", "packed_size_ratio", "latency_ratio",
                                       "throughput_ratio", "valid_drop", "test_drop")}
    write_json({**metrics, "candidate": chosen.name, "compiled": compiled is not None},
               paths.compress_metrics)
    log.info("compress: %d candidates in %.1fs; chose %s (%s): %d bytes (%.1fx smaller), valid "
             "%s drop %+.4f, test drop %+.4f, single row %.2f ms vs %.2f ms (%.1fx)%s",
             len(scored), time.perf_counter() - start, chosen.name, chosen.kind,
             summary["compact_size_bytes"], summary["size_ratio"], metric, summary["valid_drop"],
             summary["test_drop"], final.p50_ms, reference.p50_ms, summary["latency_ratio"],
             f"; compiled, parity {compiled.parity:.2g}" if compiled else "")
    log_to_run(ctx, metrics={f"compress_{k}": v for k, v in metrics.items()},
               params={"compress.chosen": chosen.name})
    log_dir_to_run(ctx, paths.compress_reports, "compress")
    return paths.compact_dir


# ---------------------------------------------------------------------------------------------
# Registration (called by tasks/register.py after the full model's version got its alias)
# ---------------------------------------------------------------------------------------------


def compact_model_name(settings: Settings) -> str:
    return f"{settings.register_.model_name}-compact"


def compact_signature(model: CompactModel, rows: pd.DataFrame) -> Any:
    """All raw feature columns (like the full model), optional where the compact model does not
    read them: callers may send the full model's rows or only the columns it needs."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from tasks.register import input_signature

    full = input_signature(rows, model.predict_frame(rows))  # the full model's column types
    needed = set(model.raw_columns)
    inputs = Schema([ColSpec(c.type, c.name, required=c.name in needed)
                     for c in full.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=full.outputs)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def sync_compact_aliases(client: Any, settings: Settings) -> dict[str, str]:
    """Point `<name>-compact@champion/@challenger` at the compact version made from the full
    model's @champion/@challenger; remove the alias where that full version has none.

    Runs under the registry lock of the full model, so it never interleaves with a promotion.
    Returns {compact version: alias}.
    """
    from tasks.register import CHALLENGER, CHAMPION
    from tasks.registry_lock import RegistryLock

    name, compact = settings.register_.model_name, compact_model_name(settings)
    gate = settings.gate
    by_full: dict[str, str] = {}
    for mv in client.search_model_versions(f"name='{compact}'"):
        full_version = mv.tags.get("full_version")
        if full_version is not None and int(mv.version) > int(by_full.get(full_version, 0)):
            by_full[full_version] = str(mv.version)
    moved: dict[str, str] = {}
    with RegistryLock(client, name, ttl_s=gate.lock_ttl_s, timeout_s=gate.lock_timeout_s).held():
        for alias in (CHAMPION, CHALLENGER):
            full_version = _alias_version(client, name, alias)
            target = by_full.get(full_version) if full_version else None
            current = _alias_version(client, compact, alias)
            if target is not None:
                if current != target:
                    client.set_registered_model_alias(compact, alias, target)
                moved[target] = alias
            elif current is not None:
                client.delete_registered_model_alias(compact, alias)
    return moved


def _compact_exists(client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def register_compact(settings: Settings, client: Any, full_version: str | None,
                     run_id: str | None, tags: dict[str, str]) -> dict[str, Any] | None:
    """Log and register models/compact as a version of `<model_name>-compact` (inside the active
    MLflow run), tagged with the full version it came from, and let its aliases follow the full
    model's. None when compress is disabled or the full candidate was not registered."""
    import mlflow

    from tasks.register import _pip_requirements, create_version

    paths = ArtifactPaths(settings.root)
    name = compact_model_name(settings)
    manifest = read_json(paths.compact_manifest) if paths.compact_manifest.is_file() else {}
    if full_version is None:
        return None
    if not manifest.get("enabled"):
        if _compact_exists(client, name):  # the new full version has no compact: aliases follow
            sync_compact_aliases(client, settings)
        return None
    from importlib.metadata import version as installed

    from tasks.register import file_md5

    model: CompactModel = load_joblib(paths.compact_dir / "model.joblib")
    if model.metadata.get("full_model_md5") != file_md5(paths.model):
        log.warning("register: %s not registered: models/compact was built from another "
                    "models/model.joblib (rerun the compress stage)", name)
        return None
    example = read_parquet(paths.split("test"))[model.feature_columns].head(5)
    artifacts = {"compact_model": str(paths.compact_dir / "model.joblib")}
    if (paths.compact_dir / "compact.so").is_file():
        artifacts["compiled_lib"] = str(paths.compact_dir / "compact.so")
    code_dir = Path(__file__).resolve().parent
    info = mlflow.pyfunc.log_model(
        name="compact_model", python_model=str(code_dir / "compact_pyfunc.py"),
        artifacts=artifacts, signature=compact_signature(model, example),
        input_example=example, code_paths=[str(code_dir)],
        pip_requirements=_pip_requirements() + [f"{n}=={installed(n)}"
                                                for n in ("treelite", "tl2cgen")])
    version_tags = {
        **tags, "full_model": settings.register_.model_name, "full_version": str(full_version),
        "candidate": manifest["candidate"], "candidate_kind": manifest["kind"],
        "metric": manifest["metric"], "valid_metric_drop": str(manifest["valid_drop"]),
        "test_metric_drop": str(manifest["test_drop"]),
        "size_ratio": str(manifest["size_ratio"]),
        "packed_size_ratio": str(manifest["packed_size_ratio"]),
        "latency_ratio": str(manifest["latency_ratio"]),
        "throughput_ratio": str(manifest["throughput_ratio"]),
        "size_bytes": str(manifest["compact_size_bytes"]),
        "compiled": str(manifest["compiled"]).lower(),
        "parity_max_abs": str(manifest["parity_max_abs"]),
        "raw_columns": ",".join(model.raw_columns),
    }
    registered = create_version(client, name, info, run_id, version_tags)
    version = str(registered.version)
    aliases = sync_compact_aliases(client, settings)
    mlflow.set_tags({"registered_compact_model": name, "registered_compact_version": version})
    log.info("register: %s version %s%s (%s from %s v%s; %.1fx smaller, %.1fx faster single-row)",
             name, version, f" @{aliases[version]}" if version in aliases else "",
             manifest["candidate"], settings.register_.model_name, full_version,
             manifest["size_ratio"], manifest["latency_ratio"])
    return {"model_name": name, "version": int(version), "alias": aliases.get(version),
            "candidate": manifest["candidate"], "size_ratio": manifest["size_ratio"],
            "latency_ratio": manifest["latency_ratio"], "test_drop": manifest["test_drop"],
            "compiled": manifest["compiled"]}
