"""bench/quality.py's comparison: paired bootstrap intervals of the held-out difference and the
per-peer summary built from them."""

from __future__ import annotations

import sys

import numpy as np

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import _quality_tables as protocol
import quality


def _binary(n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    good = np.clip(0.5 + 0.3 * (2 * y - 1) + 0.3 * rng.normal(size=n), 0, 1)
    noise = rng.uniform(size=n)
    return np.where(y == 1, "yes", "no"), good, noise


def test_the_paired_interval_is_above_zero_when_the_champion_is_clearly_better() -> None:
    y, good, noise = _binary()
    low, high = protocol.paired_interval("binary", y, good, noise, "yes", ["no", "yes"], 200)
    assert 0 < low < high  # their error (1 - AUC of noise) is larger on every resample
    low, high = protocol.paired_interval("binary", y, noise, good, "yes", ["no", "yes"], 200)
    assert low < high < 0
    # The same predictions: no difference on any resample.
    assert protocol.paired_interval("binary", y, good, good, "yes", ["no", "yes"], 50) == (0, 0)


def test_regression_and_seeded() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    ours, theirs = y + 0.1 * rng.normal(size=300), y + rng.normal(size=300)
    a = protocol.paired_interval("regression", y, ours, theirs, None, [], 100)
    assert a == protocol.paired_interval("regression", y, ours, theirs, None, [], 100)
    assert a[0] > 0  # their RMSE is larger


def test_the_summary_counts_wins_and_lists_tables_behind_beyond_noise() -> None:
    rows = [
        {"table": "a", "task": "binary", "ours": {"score": 0.80}, "p": {"score": 0.78}},
        {
            "table": "b",
            "task": "binary",
            "ours": {"score": 0.80},
            "p": {"score": 0.81, "paired": [-0.02, 0.01]},  # behind, within noise
        },
        {
            "table": "c",
            "task": "regression",
            "ours": {"score": 5.0},
            "p": {"score": 4.0, "paired": [-1.5, -0.5]},  # behind beyond noise
        },
        {"table": "d", "task": "binary", "ours": {"failed": "x"}, "p": {"score": 0.7}},
    ]
    out = quality.summarise(rows, ["p"])["p"]
    assert out["tables"] == 3 and out["wins"] == 1 and out["behind"] == ["c"]
    assert out["ratio"]["a"] == round(0.22 / 0.20, 4) and out["ratio"]["c"] == 0.8
