"""The whole pipeline on 10k / 100k / 1M synthetic rows x 30 columns (bench/synth.py).

Per size, in a throwaway project copy (git + DVC, own MLflow store, the synthetic GX suites from
bench/expectations/): every stage in flows/training.py STAGES order (dvc.yaml order) runs as a
plain function call in one process (bench/_driver.py; the orchestration's own cost is what
bench/overhead.py measures), timed, with the peak RSS of the whole process tree sampled every 0.1 s
while the stage ran. Then `register` runs once more (`register_again`), now against the @champion
it just created, to measure the gate (champion scored through MLflow pyfunc + paired bootstrap)
as every later run pays it.
Prints one JSON line: per size and stage wall seconds and peak MiB, the total, and per stage the
growth exponent log(t_1M / t_100k) / log(10) (n log n from 100k to 1M is 1.08).

    python bench/scale.py [--rows 10000,100000,1000000] [--timeout 3600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth
from _project import ROOT, machine, make_project, measured, stage_names

NLOGN_EXPONENT = math.log10(10 * math.log(1e6) / math.log(1e5))  # 1.079


def run_size(rows: int, tmp: Path, timeout: float, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    table = synth.write_table(rows, tmp / "synth.parquet", seed=seed, dirty=0.001)
    generate_s = time.perf_counter() - start
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
    table.unlink()
    names = stage_names(project.root)
    timings = tmp / "stages.json"
    wall, peak, _ = measured(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "_driver.py"),
            ",".join([*names, "register"]),
            str(timings),
        ],
        project.root,
        project.env,
        timeout=timeout,
    )
    stages = json.loads(timings.read_text())
    report = json.loads((project.root / "reports/validation.json").read_text())
    test = json.loads((project.root / "metrics/test.json").read_text())["test"]
    return {
        "rows": rows,
        "columns": len(report["columns"]),
        "generate_s": round(generate_s, 1),
        "stages": stages,
        # process start to exit (imports, MLflow run set-up included), without the second register
        "pipeline_s": round(wall - stages["register_again"]["s"], 1),
        "stages_sum_s": round(sum(v["s"] for k, v in stages.items() if k != "register_again"), 1),
        "peak_mib": round(peak / 2**20),
        "quarantined_rows": report["quarantined_rows"],
        "duplicate_rows": report["duplicate_rows"],
        "test_roc_auc": test.get("roc_auc"),
    }


def growth(results: list[dict[str, Any]], small: int, large: int) -> dict[str, float]:
    by_rows = {r["rows"]: r for r in results}
    if small not in by_rows or large not in by_rows:
        return {}
    a, b = by_rows[small], by_rows[large]
    k = math.log10(large / small)
    out = {
        name: round(
            math.log10(max(b["stages"][name]["s"], 0.01) / max(a["stages"][name]["s"], 0.01)) / k, 2
        )
        for name in b["stages"]
        if name in a["stages"]
    }
    out["pipeline"] = round(math.log10(b["pipeline_s"] / a["pipeline_s"]) / k, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--timeout", type=float, default=3600, help="per stage, seconds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", type=Path, help="keep the project copies under this folder")
    args = parser.parse_args()
    sizes = [int(s) for s in args.rows.split(",")]
    load_before = machine()
    results = []
    for rows in sizes:
        tmp = Path(tempfile.mkdtemp(prefix=f"scale{rows}.", dir=args.keep))
        try:
            results.append(run_size(rows, tmp, args.timeout, args.seed))
        finally:
            if args.keep is None:
                shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "scale",
                "machine": load_before,
                "load_avg_1m_after": machine()["load_avg_1m"],
                "code": str(ROOT.name),
                "sizes": results,
                "growth_exponent_100k_to_1m": growth(results, 100_000, 1_000_000),
                "nlogn_exponent": round(NLOGN_EXPONENT, 3),
                "targets": {"pipeline_s_at_1m": 900, "peak_mib_at_1m": 4096},
            }
        )
    )


if __name__ == "__main__":
    main()
