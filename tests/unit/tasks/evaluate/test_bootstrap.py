import numpy as np
import pytest

from tasks.evaluate.bootstrap import (
    bootstrap_metrics,
    paired_differences,
    percentile_interval,
    predicted_codes,
    weight_chunks,
    weighted_metrics,
)
from tasks.evaluate.metrics import score_predictions


def _binary(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)  # rounded: ties


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_unit_weights_reproduce_the_point_metrics(task: str) -> None:
    rng = np.random.default_rng(1)
    n = 200
    if task == "binary":
        y, s = _binary(n)
    elif task == "multiclass":
        y = rng.integers(0, 3, n)
        s = rng.dirichlet([1, 1, 1], n)
        s[np.arange(n), y] += 0.5
        s /= s.sum(axis=1, keepdims=True)
    else:
        y = rng.normal(size=n)
        s = y + rng.normal(scale=0.5, size=n)
    labels = predicted_codes(task, s, 0.4)
    got = {k: float(v[0]) for k, v in weighted_metrics(task, np.ones((1, n)), y, s, labels).items()}
    want = score_predictions(task, y, s, threshold=0.4)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=2e-6), k


def test_weights_are_seeded_and_chunked_consistently() -> None:
    a = np.vstack(list(weight_chunks(50, 30, seed=7)))
    b = np.vstack(list(weight_chunks(50, 30, seed=7)))
    assert a.shape == (30, 50) and np.array_equal(a, b) and (a.sum(axis=1) == 50).all()
    assert not np.array_equal(a, np.vstack(list(weight_chunks(50, 30, seed=8))))


def test_interval_covers_the_point_and_narrows_with_more_rows() -> None:
    y, p = _binary(200)
    small = bootstrap_metrics("binary", y, p, predicted_codes("binary", p), 300, seed=1)["roc_auc"]
    y2, p2 = _binary(2000)
    big = bootstrap_metrics("binary", y2, p2, predicted_codes("binary", p2), 300, seed=1)["roc_auc"]
    lo, hi = percentile_interval(small, 0.95)
    assert lo < score_predictions("binary", y, p)["roc_auc"] < hi
    lo2, hi2 = percentile_interval(big, 0.95)
    assert hi2 - lo2 < hi - lo


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    y, p = _binary()
    pair = (p, predicted_codes("binary", p))
    diff = paired_differences("binary", "roc_auc", y, pair, pair, 200, seed=3)
    assert diff.shape == (200,) and np.all(diff == 0)


def test_paired_difference_is_oriented_so_positive_is_better() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=300)
    good, bad = y + rng.normal(scale=0.1, size=300), y + rng.normal(scale=1.0, size=300)
    zeros = np.zeros(300, dtype=int)
    diff = paired_differences("regression", "rmse", y, (good, zeros), (bad, zeros), 200, seed=0)
    assert (diff > 0).all()  # lower RMSE counts as an improvement


def test_max_rows_at_or_above_n_changes_nothing() -> None:
    y, s = _binary(400)
    labels = predicted_codes("binary", s, 0.5)
    before = bootstrap_metrics("binary", y, s, labels, 200, 3)
    for max_rows in (None, 400, 10_000):
        after = bootstrap_metrics("binary", y, s, labels, 200, 3, max_rows)
        assert all(np.array_equal(before[k], after[k]) for k in before)
    ref = np.clip(s + 0.1, 0, 1)
    pair = ((s, labels), (ref, predicted_codes("binary", ref, 0.5)))
    assert np.array_equal(
        paired_differences("binary", "roc_auc", y, *pair, 200, 3),
        paired_differences("binary", "roc_auc", y, *pair, 200, 3, 400),
    )


def test_subsampled_bootstrap_is_seeded_centred_on_all_rows_and_keeps_the_width() -> None:
    y, s = _binary(20_000, seed=4)
    labels = predicted_codes("binary", s, 0.5)
    full = bootstrap_metrics("binary", y, s, labels, 300, 5)
    sub = bootstrap_metrics("binary", y, s, labels, 300, 5, max_rows=2_000)
    again = bootstrap_metrics("binary", y, s, labels, 300, 5, max_rows=2_000)
    point = weighted_metrics("binary", np.ones((1, len(y))), y, s, labels)
    for k in ("roc_auc", "log_loss", "accuracy"):
        assert np.array_equal(sub[k], again[k])
        lo_f, hi_f = percentile_interval(full[k], 0.95)
        lo_s, hi_s = percentile_interval(sub[k], 0.95)
        assert lo_s < point[k][0] < hi_s
        assert 0.6 < (hi_s - lo_s) / (hi_f - lo_f) < 1.5, k  # m-out-of-n rescaling


def test_subsampled_paired_differences_are_centred_on_the_full_difference() -> None:
    y, s = _binary(20_000, seed=6)
    ref = np.clip(s + np.random.default_rng(1).normal(0, 0.2, len(s)), 0, 1)
    cand_pair = (s, predicted_codes("binary", s, 0.5))
    ref_pair = (ref, predicted_codes("binary", ref, 0.5))
    d = paired_differences("binary", "roc_auc", y, cand_pair, ref_pair, 300, 2, max_rows=2_000)
    full = paired_differences("binary", "roc_auc", y, cand_pair, ref_pair, 300, 2)
    ones = np.ones((1, len(y)))
    diff = (
        weighted_metrics("binary", ones, y, *cand_pair)["roc_auc"]
        - weighted_metrics("binary", ones, y, *ref_pair)["roc_auc"]
    )[0]
    lo, hi = percentile_interval(d, 0.95)
    lo_f, hi_f = percentile_interval(full, 0.95)
    assert lo < diff < hi and 0.6 < (hi - lo) / (hi_f - lo_f) < 1.5


def test_only_one_metric_gives_the_same_values() -> None:
    y, s = _binary(300)
    labels = predicted_codes("binary", s, 0.5)
    W = np.vstack(list(weight_chunks(len(y), 40, seed=2)))
    every = weighted_metrics("binary", W, y, s, labels)
    for name, values in every.items():
        np.testing.assert_array_equal(
            weighted_metrics("binary", W, y, s, labels, only=name)[name], values
        )
