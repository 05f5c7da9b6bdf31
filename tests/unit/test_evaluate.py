import numpy as np
import pytest

from tasks.evaluate import score_predictions


def test_binary_metrics_on_hand_built_scores() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = score_predictions("binary", y, p)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert set(m) == {"roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"}
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)


def test_threshold_changes_labels_not_ranking() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    low = score_predictions("binary", y, p, threshold=0.3)
    assert low["recall"] == 1.0
    assert low["roc_auc"] == score_predictions("binary", y, p)["roc_auc"]


def test_multiclass_metrics() -> None:
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.2, 0.3]])
    m = score_predictions("multiclass", y, proba)
    assert m["accuracy"] == pytest.approx(0.75)
    assert set(m) == {"accuracy", "macro_f1", "weighted_f1", "log_loss"}


def test_regression_metrics() -> None:
    m = score_predictions("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3), rel=1e-5)
    assert m["mae"] == pytest.approx(2 / 3, rel=1e-5)
