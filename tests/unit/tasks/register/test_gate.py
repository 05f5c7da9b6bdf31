import numpy as np
import pytest

from tasks.register.gate import check_absolute, clears_rule, compare_paired, decide


def _cmp(samples: np.ndarray, rule: str = "superior", margin: float = 0.0, metric: str = "roc_auc"):
    return compare_paired(metric, 0.80, 0.78, samples, rule, margin, 0.95)


def test_absolute_criteria_name_what_fails() -> None:
    metrics = {"roc_auc": 0.65, "rmse": 3.0}
    assert check_absolute(metrics, {"min_roc_auc": 0.6}) == []
    assert check_absolute(metrics, {"min_roc_auc": 0.7}) == [
        "roc_auc=0.6500 is below min_roc_auc=0.7"
    ]
    assert check_absolute(metrics, {"max_rmse": 2.5}) == ["rmse=3.0000 is above max_rmse=2.5"]
    assert "not available" in check_absolute(metrics, {"min_r2": 0.1})[0]


def test_failing_absolute_criteria_is_rejected_even_without_champion() -> None:
    d = decide(["roc_auc=0.6 is below min_roc_auc=0.7"], "superior", 0.0, None)
    assert d.action == "reject" and d.alias is None and "min_roc_auc" in d.reason


def test_missing_champion_promotes() -> None:
    d = decide([], "superior", 0.0, None)
    assert (d.action, d.alias, d.reason) == ("promote", "champion", "no current champion")
    assert d.tags()["gate.champion_version"] == "none"


def test_clear_improvement_promotes() -> None:
    c = _cmp(np.linspace(0.01, 0.04, 101))
    d = decide([], "superior", 0.0, "3", c)
    assert d.action == "promote" and d.alias == "champion" and "clears" in d.reason
    tags = d.tags()
    assert tags["gate.champion_version"] == "3" and float(tags["gate.ci_low"]) > 0
    assert tags["gate.candidate_score"] == "0.800000" and tags["gate.champion_score"] == "0.780000"


def test_interval_touching_zero_keeps_the_champion() -> None:
    c = _cmp(np.linspace(-0.01, 0.04, 101))
    d = decide([], "superior", 0.0, "3", c)
    assert d.action == "keep" and d.alias == "challenger" and "does not clear" in d.reason


def test_non_inferior_edge_is_strict() -> None:
    assert clears_rule(-0.0099, "non_inferior", 0.01)
    assert not clears_rule(-0.01, "non_inferior", 0.01)  # exactly at -margin: not enough
    assert not clears_rule(0.0, "superior", 0.0)  # exactly 0: not superior
    assert not clears_rule(float("nan"), "non_inferior", 0.01)
    # same samples: non-inferior with a margin promotes, superior does not
    samples = np.linspace(-0.005, 0.02, 201)
    assert (
        decide([], "non_inferior", 0.01, "1", _cmp(samples, "non_inferior", 0.01)).action
        == "promote"
    )
    assert decide([], "superior", 0.0, "1", _cmp(samples)).action == "keep"


def test_lower_is_better_metrics_orient_the_point_difference() -> None:
    c = compare_paired("rmse", 2.0, 2.5, np.full(50, 0.5), "superior", 0.0, 0.95)
    assert c.diff == pytest.approx(0.5) and c.clears


def test_champion_that_cannot_score_needs_manual_review() -> None:
    d = decide([], "superior", 0.0, "2", champion_error="missing column 'Income'")
    assert d.action == "manual_review" and d.alias == "challenger"
    assert "cannot score" in d.reason and "Income" in d.reason


def test_champion_without_comparison_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decide([], "superior", 0.0, "2")


def test_a_flipped_positive_label_is_incompatible_and_goes_to_manual_review() -> None:
    from tasks.register.gate import incompatibilities, model_contract

    champion = model_contract("binary", "Status", ["good", "bad"], ["probability", "label"])
    candidate = model_contract("binary", "Status", ["bad", "good"], ["probability", "label"])
    assert champion["positive_label"] == "bad" and candidate["positive_label"] == "good"
    diffs = incompatibilities(champion, candidate)
    assert diffs[0] == "positive_label 'bad' (champion) vs 'good' (candidate)"
    assert any(d.startswith("classes") for d in diffs)
    d = decide([], "superior", 0.0, "4", incompatible=diffs)
    assert d.action == "manual_review" and d.alias == "challenger" and d.comparison is None
    assert "incompatible" in d.reason and "positive_label" in d.reason and "v4" in d.reason
    assert incompatibilities(champion, dict(champion)) == []


def test_other_target_task_or_outputs_and_unrecorded_keys_are_incompatible() -> None:
    from tasks.register.gate import incompatibilities, model_contract

    base = model_contract("multiclass", "y", ["a", "b", "c"], ["proba_a", "proba_b", "proba_c"])
    other = model_contract("multiclass", "z", ["a", "b"], ["proba_a", "proba_b"])
    keys = [d.split()[0] for d in incompatibilities(base, other)]
    assert keys == ["target", "classes", "output_columns"]
    regression = model_contract("regression", "y", [], ["prediction"])
    assert (
        incompatibilities(base, regression)[0]
        == "task 'multiclass' (champion) vs 'regression' (candidate)"
    )
    legacy = {"task": "multiclass"}  # registered before versions recorded their contract
    assert "champion records no target (candidate: 'y')" in incompatibilities(legacy, base)


def test_an_experiment_never_takes_champion_unless_allowed() -> None:
    from tasks.register.gate import hold_back, promotion_blocker

    assert promotion_blocker("auto", None, "main", "main") is None
    assert promotion_blocker("auto", None, None, None) is None  # outside git: cannot tell
    assert "DVC experiment 'exp-1'" in str(promotion_blocker("auto", "exp-1", "main", "main"))
    assert "branch 'lineage'" in str(promotion_blocker("auto", None, "lineage", "main"))
    assert "detached HEAD" in str(promotion_blocker("auto", None, None, "main"))
    assert promotion_blocker(True, "exp-1", "lineage", "main") is None
    assert "allow_promotion is false" in str(promotion_blocker(False, None, "main", "main"))

    promoted = decide([], "superior", 0.0, None)
    held = hold_back(promoted, "the run is the DVC experiment 'exp-1'")
    assert (held.action, held.alias) == ("hold", "challenger")
    assert held.reason.startswith("no current champion; held back as @challenger: the run is")
    assert held.tags()["gate.decision"] == "hold"
    kept = decide([], "superior", 0.0, "3", _cmp(np.linspace(-0.02, 0.01, 101)))
    assert hold_back(kept, "whatever") is kept and hold_back(promoted, None) is promoted


def _gate_with_champion(monkeypatch, tmp_path, twin_output):  # type: ignore[no-untyped-def]
    """gate_against_champion with a registered @champion v4 whose evaluation model predicts
    `twin_output(rows)` (None: it carries none); returns the decision and what was asked."""
    from types import SimpleNamespace

    import tasks.register.stage as stage
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, evaluate={"n_boot": 50})
    champion = SimpleNamespace(version="4", tags={"task": "binary"})
    monkeypatch.setattr(stage, "current_champion", lambda client, name: champion)
    asked: list = []

    def evaluation_model_output(name, version, rows):  # type: ignore[no-untyped-def]
        asked.append((name, version, sorted(rows.columns)))
        return twin_output(rows)

    monkeypatch.setattr(stage, "predict_evaluation_model", evaluation_model_output)
    # The contracts agree (their comparison has its own tests above): this is about scoring.
    monkeypatch.setattr(stage, "champion_contract", lambda name, champion, rows: {})
    monkeypatch.setattr(stage, "candidate_contract", lambda model, test: {})
    return settings, asked


def test_the_gate_compares_with_the_champions_evaluation_model(
    monkeypatch, tmp_path, credit_sample
) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    import tasks.register.stage as stage
    from tasks.preprocess import build_preprocessor, feature_frame, split_frame
    from tests.conftest import fit_on_train

    parts = split_frame(credit_sample, 0.3, 0.2, 42)
    X = feature_frame(parts["train"], "Status")
    holder: dict = {}
    settings, asked = _gate_with_champion(
        monkeypatch, tmp_path, lambda rows: pd.DataFrame(holder["model"].predict_frame(rows))
    )
    pre = build_preprocessor(X, settings.preprocess, {}).fit(X)
    holder["model"] = model = fit_on_train(parts["train"], pre, settings)
    decision = stage.gate_against_champion(None, settings, model, parts["test"], [])
    # The champion's twin is the candidate itself here: the difference is exactly zero.
    assert decision.comparison is not None and decision.comparison.diff == 0.0
    assert decision.champion_version == "4"
    assert asked == [("credit-scoring", "4", sorted(X.columns))]  # raw rows, no target


def test_a_champion_without_an_evaluation_model_goes_to_manual_review(
    monkeypatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Its shipped model may have learnt from today's test rows: no fair comparison exists."""
    from types import SimpleNamespace

    import pandas as pd

    import tasks.register.stage as stage

    settings, asked = _gate_with_champion(monkeypatch, tmp_path, lambda rows: None)
    candidate = SimpleNamespace(task="binary", classes=["good", "bad"])
    test = pd.DataFrame({"Income": [1.0, 2.0], "Status": ["good", "bad"]})
    decision = stage.gate_against_champion(None, settings, candidate, test, [])
    assert decision.action == "manual_review" and decision.alias == "challenger"
    assert "no evaluation model" in decision.reason and asked
