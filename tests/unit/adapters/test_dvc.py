"""What the pipeline reads from dvc.yaml without DVC: stages, outputs, declared params."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapters.dvc import experiment_name, missing_params, pipeline_outputs, read_stages
from tests.conftest import ROOT


def _write(root: Path, stages: dict) -> Path:
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return root


def test_outputs_are_every_out_metric_and_plot_and_the_lock(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "a": {"cmd": "x", "outs": ["data/raw", {"reports/r.json": {"cache": False}}]},
            "b": {"cmd": "y", "metrics": [{"metrics/m.json": {"cache": False}}], "plots": ["p"]},
        },
    )
    assert list(read_stages(root)) == ["a", "b"]
    assert pipeline_outputs(root) == [
        "data/raw",
        "reports/r.json",
        "metrics/m.json",
        "p",
        "dvc.lock",
    ]
    assert pipeline_outputs(tmp_path / "nowhere") == []


def test_missing_params_name_the_key_and_its_stages(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "a": {"cmd": "x", "params": ["data", "evaluate.threshold"]},
            "b": {"cmd": "y", "params": ["evaluate.threshold", "base.seed"]},
        },
    )
    assert missing_params(root, {"data": {}, "evaluate": {"threshold": None}, "base": {}}) == {
        "base.seed": ["b"]
    }
    assert missing_params(root, {"evaluate": {}}) == {
        "data": ["a"],
        "evaluate.threshold": ["a", "b"],
        "base.seed": ["b"],
    }


def test_the_repo_params_have_every_declared_key() -> None:
    assert missing_params(ROOT, yaml.safe_load((ROOT / "params.yaml").read_text())) == {}


def test_a_dvc_experiment_is_told_by_its_environment() -> None:
    assert experiment_name({}) is None
    assert experiment_name({"DVC_ROOT": "/x"}) is None  # any dvc repro sets this one
    assert experiment_name({"DVC_EXP_NAME": "exp-1", "DVC_EXP_BASELINE_REV": "abc"}) == "exp-1"
    assert experiment_name({"DVC_EXP_BASELINE_REV": "abc"}) == "unnamed"
