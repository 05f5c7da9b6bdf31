"""Which stages reproduce a version, and how metrics are compared."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import yaml

from ops.reproduce import (
    ReproduceError,
    batched_commands,
    compare_metrics,
    reproduced_metrics,
    stages_to_rerun,
)
from tests.conftest import ROOT


def test_stages_follow_dvc_yaml_from_after_ingest_to_test_metrics() -> None:
    names = [n for n, _ in stages_to_rerun(ROOT / "dvc.yaml")]
    dvc = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert names == dvc[dvc.index("ingest") + 1 : dvc.index("evaluate") + 1]
    assert "ingest" not in names and "register" not in names


def test_a_pipeline_without_test_metrics_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "ingest": {"cmd": "x", "outs": ["data/raw"]},
                    "train": {"cmd": "y", "outs": ["m"]},
                }
            }
        )
    )
    with pytest.raises(ReproduceError, match="metrics/test.json"):
        stages_to_rerun(tmp_path / "dvc.yaml")


def test_flows_stages_share_a_process_other_commands_run_as_written() -> None:
    batches = batched_commands(
        [
            ("a", "python -m flows stage a"),
            ("b", "python -m flows stage b"),
            ("c", "make c"),
            ("d", "python -m flows stage d"),
        ]
    )
    assert [names for names, _ in batches] == [["a", "b"], ["c"], ["d"]]
    assert batches[0][1][0] == sys.executable and "['a', 'b']" in batches[0][1][2]
    assert batches[1][1] == ["make", "c"]


def test_compare_metrics_tolerance_and_nan() -> None:
    rec = {"test_auc": 0.8, "test_f1": 0.5, "test_x": math.nan, "test_only_recorded": 1.0}
    new = {"test_auc": 0.8 + 1e-12, "test_f1": 0.5001, "test_x": math.nan}
    compared, bad = compare_metrics(rec, new)
    assert set(compared) == {"test_auc", "test_f1", "test_x"} and bad == ["test_f1"]


def test_reproduced_metrics_flatten_like_evaluate_logs(tmp_path: Path) -> None:
    p = tmp_path / "test.json"
    p.write_text('{"test": {"roc_auc": 0.9}, "ci": {"roc_auc": {"low": 0.8, "high": 0.95}}}')
    assert reproduced_metrics(p) == {
        "test_roc_auc": 0.9,
        "test_roc_auc_ci_low": 0.8,
        "test_roc_auc_ci_high": 0.95,
    }
