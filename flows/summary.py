"""The short report printed at the end of a run: what was produced and where."""

from __future__ import annotations

from typing import Any

from tasks.config import Settings
from tasks.io import ArtifactPaths, read_json


def summary_lines(settings: Settings, result: dict[str, Any]) -> list[str]:
    paths = ArtifactPaths(settings.root)
    rel = lambda p: p.relative_to(settings.root)  # noqa: E731
    lines = ["", "Pipeline summary"]
    lines.append(f"  stages run:     {', '.join(result['ran']) or 'none'}")
    lines.append(f"  stages skipped: {', '.join(result['skipped']) or 'none'} (current in dvc.lock)")
    lines.append(f"  data:           {rel(paths.raw)} -> {rel(paths.validated)} -> "
                 f"{rel(paths.split('train')).parent}/{{train,valid,test}}.parquet")
    if paths.test_metrics.is_file():
        test = read_json(paths.test_metrics)["test"]
        lines.append("  test metrics:   " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()))
    if paths.registration.is_file():
        reg = read_json(paths.registration)
        lines.append(f"  registered:     {reg['model_name']} version {reg['version']} "
                     f"@{reg['alias']}  (models:/{reg['model_name']}@{reg['alias']})")
    lines.append(f"  tracking:       {settings.tracking_uri}  (make ui)")
    if result.get("mlflow_run_id"):
        lines.append(f"  mlflow run:     {result['mlflow_run_id']}")
    return lines


def print_summary(settings: Settings, result: dict[str, Any]) -> None:
    print("\n".join(summary_lines(settings, result)))
