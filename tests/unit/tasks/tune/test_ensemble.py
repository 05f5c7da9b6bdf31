"""Greedy ensemble selection (Caruana et al. 2004) on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.tune.ensemble import blend, oof_score, select_ensemble


def test_two_complementary_models_beat_either_alone() -> None:
    # A worked example small enough to check by hand. Each model ranks 3 of the 4 positive /
    # negative pairs right (ROC-AUC 0.75), but not the same pairs: their mean ranks all four.
    y = np.array([0, 0, 1, 1])
    a = np.array([0.1, 0.6, 0.4, 0.9])
    b = np.array([0.5, 0.1, 0.9, 0.3])
    assert oof_score("binary", y, a) == oof_score("binary", y, b) == 0.75
    np.testing.assert_allclose(blend([a, b], {0: 1, 1: 1}), [0.3, 0.35, 0.65, 0.6])
    sel = select_ensemble([a, b], y, "binary", iterations=5)
    # step 1: a and b tie at 0.75, the lower index wins; step 2: adding b gives 1.0
    assert sel.counts == {0: 1, 1: 1} and sel.weights == {0: 0.5, 1: 0.5}
    assert sel.score == 1.0 and sel.best_single == 0 and sel.best_single_score == 0.75
    assert not sel.is_single


def test_a_clearly_better_model_ships_alone() -> None:
    y = np.array([0, 1, 0, 1, 1])
    good = np.array([0.1, 0.9, 0.2, 0.8, 0.7])
    poor = np.array([0.9, 0.1, 0.8, 0.2, 0.3])
    sel = select_ensemble([poor, good], y, "binary")
    assert sel.counts == {1: 1} and sel.is_single and sel.score == 1.0  # the shortest best prefix


def test_regression_minimises_rmse_and_never_ends_below_the_best_single() -> None:
    y = np.array([1.0, 2.0, 3.0])
    low, high = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 4.0])
    sel = select_ensemble([low, high], y, "regression")
    assert sel.counts == {0: 1, 1: 1} and sel.score == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    preds = [y + rng.normal(scale=s, size=200) for s in (0.5, 1.0, 2.0)]
    sel = select_ensemble(preds, y, "regression")
    assert sel.score <= sel.best_single_score + 1e-12


def test_multiclass_blends_probability_rows() -> None:
    y = np.array([0, 1, 2, 0])
    a = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2]])
    b = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2]])
    sel = select_ensemble([a, b], y, "multiclass")
    mixed = blend([a, b], sel.counts)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    assert sel.score <= min(oof_score("multiclass", y, a), oof_score("multiclass", y, b))


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        select_ensemble([], np.array([0, 1]), "binary")
