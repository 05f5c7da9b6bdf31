"""Batch scoring throughput at 1M rows: rows/s including validation and preprocessing.

For each model URI: load it with `mlflow.pyfunc.load_model(uri)` (timed apart), then per batch
  validate  the raw GX suite without its target expectations (scoring data has no target), run as
            training runs it (tasks/validate.py run_raw_suite: row-level checks on every row,
            schema/share checks on a sample), failing rows set aside (quarantine_rows);
  predict   `adapters/registry.py predict_validated(model, kept_rows)`, as batch scoring does: the
            registered pipeline (preprocessing + model + threshold) without MLflow's per-value
            signature check (the GX suite has checked the rows).
Prints one JSON line with rows/s for validate + predict together and apart, and their CPU seconds.

    python bench/scoring.py                       # trains a champion on 100k synthetic rows first
                                                  # (and its compact model, measured too)
    python bench/scoring.py --project DIR         # a project (e.g. bench/scale.py --keep) with a
                                                  # registered @champion
    python bench/scoring.py --model-uri URI [--model-uri URI2] --tracking-uri URI [--rows N]
        --target Status --suite bench/expectations/synth_raw.json   (e.g. a compact model's URI)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth
from _project import ROOT, TreeSampler, machine, make_project


def scoring_suite(suite: Any, target: str) -> Any:
    """The raw suite for rows without the target: target checks dropped, column set without it."""
    from adapters.gx import import_gx, suite_to_dict

    d = suite_to_dict(suite)
    exps = []
    for e in d["expectations"]:
        if e.get("kwargs", {}).get("column") == target:
            continue
        kwargs = dict(e.get("kwargs", {}))
        for key in ("column_set", "column_list"):
            if key in kwargs:
                kwargs[key] = [c for c in kwargs[key] if c != target]
        exps.append({**e, "kwargs": kwargs})
    return import_gx().ExpectationSuite(
        **{**d, "name": f"{d['name']}_scoring", "expectations": exps}
    )


def train_champion(tmp: Path, rows: int) -> tuple[str, str, str]:
    """A project on `rows` synthetic rows run through register; returns (uri, tracking, target)."""
    table = synth.write_table(rows, tmp / "train.parquet", seed=7, dirty=0.001)
    source = "data/source/synth.parquet"
    project = make_project(
        tmp,
        source_files={
            source: table,
            "expectations/raw.json": synth.SUITE_DIR / "synth_raw.json",
            "expectations/model_input.json": synth.SUITE_DIR / "synth_model_input.json",
        },
        **synth.scale_params(source),
    )
    project.python("-m", "flows", "run", timeout=3600)
    return champion_of(project.root)


def champion_of(root: Path) -> tuple[str, str, str]:
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    name = params["register"]["model_name"]
    return (f"models:/{name}@champion", f"sqlite:///{root / 'mlflow.db'}", params["data"]["target"])


def compact_of(champion_uri: str) -> list[str]:
    """`models:/<name>-compact@champion` when the registry has it (compress was enabled)."""
    import mlflow

    name = champion_uri[len("models:/") :].split("@", 1)[0]
    try:
        mlflow.MlflowClient().get_model_version_by_alias(f"{name}-compact", "champion")
    except Exception:
        return []
    return [f"models:/{name}-compact@champion"]


def measure(uri: str, frame: Any, suite: Any, sample_rows: int, seed: int) -> dict[str, Any]:
    import mlflow

    from adapters.registry import predict_validated
    from tasks.validate import gate_of, quarantine_rows, run_raw_suite

    start = time.perf_counter()
    saved = list(sys.path)
    model = mlflow.pyfunc.load_model(uri)
    load_s = time.perf_counter() - start
    with TreeSampler(os.getpid()) as sampler:
        t0, c0 = time.perf_counter(), time.process_time()
        run, _ = run_raw_suite(frame, suite, sample_rows, seed)
        failures = [o for o in run.outcomes if not o.success and gate_of(o, "") == "row"]
        kept, quarantined = quarantine_rows(frame, failures)
        t1, c1 = time.perf_counter(), time.process_time()
        out = predict_validated(model, kept)
        t2, c2 = time.perf_counter(), time.process_time()
    sys.path[:] = saved
    n = len(frame)
    return {
        "model_uri": uri,
        "rows": n,
        "scored_rows": len(out),
        "set_aside_rows": len(quarantined),
        "load_s": round(load_s, 2),
        "validate_s": round(t1 - t0, 2),
        "predict_s": round(t2 - t1, 2),
        "rows_per_s": round(n / (t2 - t0)),
        "predict_rows_per_s": round(len(kept) / (t2 - t1)),
        "validate_rows_per_s": round(n / (t1 - t0)),
        "peak_mib": round(sampler.peak_bytes / 2**20),
        # CPU seconds (all threads of this process): less dependent on a shared machine's load
        "validate_cpu_s": round(c1 - c0, 2),
        "predict_cpu_s": round(c2 - c1, 2),
        "rows_per_cpu_s": round(n / (c2 - c0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-uri", action="append", default=[])
    parser.add_argument("--tracking-uri")
    parser.add_argument("--project", type=Path, help="project folder with a registered @champion")
    parser.add_argument("--target", default=synth.TARGET)
    parser.add_argument("--suite", type=Path, default=synth.SUITE_DIR / "synth_raw.json")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    load_before = machine()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from flows._runtime import configure_stage_logging, prepare_environment

    with tempfile.TemporaryDirectory() as tmp:
        prepare_environment(Path(tmp), in_flow=False)
        configure_stage_logging()
        uris, tracking, target = args.model_uri, args.tracking_uri, args.target
        trained_on = None
        if args.project:
            uri, tracking, target = champion_of(args.project.resolve())
            uris = [uri, *uris]
        elif not uris:
            uri, tracking, target = train_champion(Path(tmp), args.train_rows)
            uris, trained_on = [uri], args.train_rows
        import mlflow

        from adapters.gx import load_suite

        mlflow.set_tracking_uri(tracking)
        if (args.project or trained_on) and len(uris) == 1:
            uris += compact_of(uris[0])  # the target is about the compact model: measure it too
        frame = synth.make_table(args.rows, seed=args.seed + 1, dirty=0.001)
        frame = frame.drop(columns=[target]) if target in frame.columns else frame
        suite = scoring_suite(load_suite(args.suite), target)
        results = [measure(u, frame, suite, args.sample_rows, args.seed) for u in uris]
    print(
        json.dumps(
            {
                "bench": "scoring",
                "machine": load_before,
                "load_avg_1m_after": machine()["load_avg_1m"],
                "champion_trained_on_rows": trained_on,
                "models": results,
                "target_rows_per_s_compact": 100_000,
            }
        )
    )


if __name__ == "__main__":
    main()
