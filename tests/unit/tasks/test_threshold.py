import numpy as np
import pytest

from core.config import ThresholdSettings
from tasks.train import choose_threshold, expected_cost


def test_f1_threshold_separates_a_separable_valid_split() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.8])
    t = choose_threshold(y, p, ThresholdSettings())
    assert 0.3 < t <= 0.6  # between the classes: every label right
    assert ((p >= t).astype(int) == y).all()


def test_f1_threshold_beats_default_when_positives_score_low() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.1, 0.1, 0.15, 0.2, 0.3, 0.35])
    t = choose_threshold(y, p, ThresholdSettings())
    assert t < 0.2 and ((p >= t) == (y == 1)).all()


def test_cost_threshold_moves_with_the_cost_of_a_false_negative() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.35 * y + rng.random(400) * 0.65, 0, 1)
    cheap_fn = choose_threshold(y, p, ThresholdSettings(objective="cost", cost_fp=5, cost_fn=1))
    dear_fn = choose_threshold(y, p, ThresholdSettings(objective="cost", cost_fp=1, cost_fn=5))
    assert dear_fn < cheap_fn  # expensive misses -> flag more rows
    costs = ThresholdSettings(objective="cost", cost_fp=1, cost_fn=5)
    best = expected_cost(y, p, dear_fn, costs)
    for other in np.linspace(0, 1, 41):  # no grid threshold does better on this split
        assert best <= expected_cost(y, p, other, costs) + 1e-12


def test_cost_threshold_can_flag_nothing() -> None:
    y = np.array([0, 0, 1, 0])
    p = np.array([0.2, 0.9, 0.3, 0.4])
    t = choose_threshold(y, p, ThresholdSettings(objective="cost", cost_fp=100, cost_fn=1))
    assert (p < t).all()


def test_one_class_valid_split_keeps_the_default() -> None:
    assert choose_threshold(
        np.zeros(5), np.linspace(0, 1, 5), ThresholdSettings()
    ) == pytest.approx(0.5)
