import numpy as np
import pytest

from tasks.evaluate.metrics import score_predictions


def test_binary_metrics_on_hand_built_scores() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = score_predictions("binary", y, p)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert set(m) == {
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "accuracy",
        "precision",
        "recall",
        "f1",
    }
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


def test_write_plots_draws_every_image_of_the_task(credit, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from inference.model import encode_target
    from tasks.evaluate.plots import write_plots
    from tasks.preprocess import build_preprocessor, feature_frame, split_frame
    from tests.conftest import fit_on_train, make_settings

    settings = make_settings(tmp_path, evaluate={"shap_sample": 50})
    parts = split_frame(credit.sample(600, random_state=4).reset_index(drop=True), 0.2, 0.2, 42)
    X = feature_frame(parts["train"], "Status")
    pre = build_preprocessor(X, settings.preprocess, {}).fit(X)
    model = fit_on_train(parts["train"], pre, settings)
    test = parts["test"]
    y, _ = encode_target(test["Status"], "binary", classes=model.classes)
    scores = model.predict_scores(test)
    facts = write_plots(
        model, y, scores, test, score_predictions("binary", y, scores), settings, tmp_path / "plots"
    )
    for name in (
        "roc",
        "precision_recall",
        "calibration",
        "confusion",
        "importance",
        "shap_summary",
    ):
        data = (tmp_path / "plots" / f"{name}.png").read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 5000, name
    assert facts["shap_rows"] == 50 and facts["top_features_gain"][0]["gain"] > 0
