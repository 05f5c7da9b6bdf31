"""The benchmark's synthetic table generator (bench/synth.py): seeded, typed, with its quirks."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import synth


def test_same_seed_same_table_other_seed_other_table() -> None:
    a, b = synth.make_table(3000, seed=1), synth.make_table(3000, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synth.make_table(3000, seed=2))


def test_schema_thirty_columns_of_three_kinds() -> None:
    t = synth.make_table(2000)
    assert t.shape == (2000, 30) and t.columns[0] == synth.TARGET
    kinds = {str(d) for d in t.dtypes}
    assert kinds == {"str", "int64", "float64"}
    assert (t.dtypes == "str").sum() >= 8 and t["Region"].nunique() > 25
    assert set(t[synth.TARGET]) == {"bad", "good"}


def test_missing_outliers_sentinels_imbalance_duplicates() -> None:
    t = synth.make_table(50_000, seed=3)
    missing = t.isna().mean()
    assert 0.06 < missing["Income"] < 0.11 and 0.6 < missing["Bonus"] < 0.8
    assert missing["Age"] == 0 and 0 < missing["Home"] < 0.01
    assert 0.002 < (t["Income"] == synth.SENTINEL).mean() < 0.008
    assert 0.10 < (t[synth.TARGET] == synth.POSITIVE).mean() < 0.14
    assert t["Price"].max() > 20 * t["Price"].median()  # outliers
    assert t.duplicated().sum() >= 0.001 * len(t)


def test_dirty_rows_are_rare_invalid_values() -> None:
    clean, dirty = synth.make_table(30_000, seed=5), synth.make_table(30_000, seed=5, dirty=0.003)
    assert clean["Age"].max() < 100 and (clean["Home"] != "castle").all()
    bad = (dirty["Age"] == 150) | (dirty["Home"] == "castle") | (dirty["Amount"] < 0)
    assert 0.0015 < bad.mean() < 0.0045
    assert np.array_equal(clean.columns, dirty.columns)
