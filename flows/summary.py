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
    if paths.validation_report.is_file():
        v = read_json(paths.validation_report)
        if "kept_rows" in v and "quarantined_rows" in v:
            lines.append(f"  validation:     {v['raw_rows']} raw rows = {v['kept_rows']} kept + "
                         f"{v['quarantined_rows']} quarantined ({rel(paths.quarantine)}) + "
                         f"{v['duplicate_rows']} duplicates")
        if v.get("data_docs"):
            lines.append(f"  data docs:      {v['data_docs']}, "
                         f"{rel(paths.data_docs('model_input'))}/index.html")
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
