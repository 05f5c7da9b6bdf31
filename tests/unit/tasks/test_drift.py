"""PSI per feature and for the score; flags above the threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.drift import categorical_psi, drift_report, numeric_psi


def test_identical_distributions_have_zero_psi() -> None:
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=2000))
    assert numeric_psi(x, x.copy(), 10) == pytest.approx(0.0, abs=1e-12)
    c = pd.Series(rng.choice(["a", "b", "c"], size=500))
    assert categorical_psi(c, c.copy()) == pytest.approx(0.0, abs=1e-12)


def test_shifted_numeric_and_new_level_are_flagged() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=3000),
            "y": rng.normal(size=3000),
            "c": rng.choice(["a", "b"], size=3000),
        }
    )
    new = pd.DataFrame(
        {
            "x": rng.normal(loc=1.5, size=800),
            "y": rng.normal(size=800),
            "c": rng.choice(["a", "b", "zzz"], size=800),
        }
    )
    report = drift_report(ref, new, ["x", "y", "c"], threshold=0.2, bins=10)
    assert report["flagged"] == ["c", "x"]
    assert report["features"]["y"]["psi"] < 0.05
    assert report["features"]["c"]["kind"] == "categorical"
    assert report["features"]["x"]["kind"] == "numeric"
    assert report["new_rows"] == 800 and "score" not in report


def test_missing_values_are_their_own_bin() -> None:
    ref = pd.Series([1.0, 2.0, 3.0, 4.0] * 50)
    new = pd.Series([1.0, 2.0, np.nan, np.nan] * 50)
    assert numeric_psi(ref, new, 4) > 1.0
    cref = pd.Series(["a", "b"] * 50)
    cnew = pd.Series(["a", None] * 50)
    assert categorical_psi(cref, cnew) > 1.0


def test_score_psi_uses_the_model() -> None:
    class Model:
        def predict_scores(self, rows: pd.DataFrame) -> np.ndarray:
            return 1 / (1 + np.exp(-rows["x"].to_numpy()))

    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(size=1000)})
    same = drift_report(ref, pd.DataFrame({"x": rng.normal(size=500)}), ["x"], 0.2, 10, Model())
    moved = drift_report(ref, pd.DataFrame({"x": rng.normal(2, size=500)}), ["x"], 0.2, 10, Model())
    assert not same["score"]["flagged"] and moved["score"]["flagged"]


def test_a_missing_labelled_folder_is_recreated_empty(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """retrain.incoming is a DVC dependency of ingest and drift: deleting it must not break a
    run."""
    from tasks.ingest import read_labelled
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, retrain={"incoming": "data/labelled_new"})
    assert read_labelled(settings) == []
    assert (settings.root / "data/labelled_new").is_dir()
