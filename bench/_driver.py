"""Run pipeline stages as plain function calls in this one process (no Prefect, no DVC).

Used by the benchmarks with the project copy as working directory and on PYTHONPATH:
    python bench/_driver.py STAGE[,STAGE...] OUT.json
Opens one MLflow parent run (as the flow does), calls `STAGES[name].fn(settings, ctx)` for each
stage, and writes per stage the wall seconds, CPU seconds and the peak RSS of this process and its
children
(sampled every 0.1 s while that stage ran) to OUT.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path.cwd()))

from _project import TreeSampler


def main() -> None:
    import os

    names, out = sys.argv[1].split(","), Path(sys.argv[2])
    from flows._runtime import configure_stage_logging, prepare_environment

    prepare_environment(Path.cwd(), in_flow=False)
    configure_stage_logging()
    from adapters.tracking import RunContext, finish_parent_run, start_parent_run
    from core.config import load_settings
    from flows.training import STAGES

    settings = load_settings("params.yaml")
    run_id = start_parent_run(
        settings.tracking_uri,
        settings.register_.experiment,
        settings.artifact_root,
        entry="plain",
        params=settings.flat(),
    )
    ctx = RunContext(settings.tracking_uri, run_id, entry="plain")
    stages = {}
    for name in names:
        start, cpu = time.perf_counter(), time.process_time()
        with TreeSampler(os.getpid()) as sampler:
            STAGES[name].fn(settings, ctx)
        key = name if name not in stages else f"{name}_again"
        # cpu_s (this process, all threads) says less about the load of a shared machine than s
        stages[key] = {
            "s": round(time.perf_counter() - start, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "peak_mib": round(sampler.peak_bytes / 2**20),
        }
        print(
            f"[driver] {key} {stages[key]['s']}s {stages[key]['peak_mib']} MiB",
            file=sys.stderr,
            flush=True,
        )
        out.write_text(json.dumps(stages))  # after every stage: a cut-off run still reports
    finish_parent_run(ctx, "FINISHED")


if __name__ == "__main__":
    main()
