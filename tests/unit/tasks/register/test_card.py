from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, parse_settings
from tasks.register.card import DESCRIPTION_LIMIT, as_description, render_model_card
from tasks.register.gate import compare_paired, decide, predictions_from_output


def _card(decision, **over):  # type: ignore[no-untyped-def]
    args = dict(
        model_name="m",
        version="3",
        task="binary",
        source="data/source/x.csv",
        target="y",
        rows=100,
        learned_from="all 100 labelled rows; metrics from a twin fitted on 60 train rows",
        data_md5="abc",
        class_balance={"bad": 30, "good": 70},
        params={"num_leaves": 15},
        cv={"mean": 0.8, "std": 0.02, "metric": "roc_auc"},
        test={
            "test": {"roc_auc": 0.81},
            "ci": {"roc_auc": {"low": 0.75, "high": 0.86}},
            "n_boot": 100,
            "test_rows": 20,
            "ci_level": 0.95,
        },
        threshold=0.31,
        threshold_objective="f1",
        top_features=[{"feature": "Income", "gain": 12.5}],
        decision=decision,
        git_commit="deadbeef",
    )
    args.update(over)
    return render_model_card(**args)


def test_model_card_carries_data_metrics_threshold_features_and_decision() -> None:
    cmp = compare_paired("roc_auc", 0.81, 0.79, np.linspace(0.005, 0.03, 50), "superior", 0, 0.95)
    card = _card(decide([], "superior", 0.0, "2", cmp))
    for needle in (
        "# Model card: m v3",
        "promote** -> @champion",
        "bad 30 (30.0%)",
        "- learned from: all 100 labelled rows; metrics from a twin fitted on 60 train rows",
        "`abc`",
        "| roc_auc | 0.8100 | [0.7500, 0.8600] |",
        "0.3100",
        "1. Income",
        "champion: v2",
        "superior: CI lower bound > 0",
        "mean 0.8000, std 0.0200",
    ):
        assert needle in card, needle


def test_rejected_card_says_not_registered_and_long_cards_fit_the_registry() -> None:
    card = _card(
        decide(["roc_auc=0.6 is below min_roc_auc=0.7"], "superior", 0, None), version=None
    )
    assert "not registered" in card and "min_roc_auc" in card
    long = _card(decide([], "superior", 0, None), params={f"p{i}": i for i in range(800)})
    assert len(long) > DESCRIPTION_LIMIT
    assert len(as_description(long)) <= DESCRIPTION_LIMIT and "truncated" in as_description(long)


def test_champion_output_is_read_in_the_candidates_encoding() -> None:
    out = pd.DataFrame({"probability": [0.2, 0.9], "label": ["good", "bad"]})
    pred = predictions_from_output(out, "binary", ["good", "bad"])
    assert pred.labels.tolist() == [0, 1] and pred.scores.tolist() == [0.2, 0.9]
    with pytest.raises(ValueError, match="labels do not match"):
        predictions_from_output(out, "binary", ["no", "yes"])
    multi = pd.DataFrame({"proba_a": [0.7], "proba_b": [0.3], "label": ["a"]})
    with pytest.raises(ValueError, match="lacks"):
        predictions_from_output(multi, "multiclass", ["a", "b", "c"])
    with pytest.raises(ValueError, match="prediction"):
        predictions_from_output(out, "regression", [])


def test_gate_params_must_name_metrics_of_the_task(tmp_path: Path) -> None:
    parse_settings({"gate": {"criteria": {"min_roc_auc": 0.7}}}, tmp_path)
    with pytest.raises(ConfigError, match="'min_roc_auc' names metric 'roc_auc'.*regression"):
        parse_settings(
            {
                "data": {"task": "regression", "positive_label": None},
                "gate": {"criteria": {"min_roc_auc": 0.7}},
            },
            tmp_path,
        )
    with pytest.raises(ConfigError, match="min_<metric> or max_<metric>"):
        parse_settings({"gate": {"criteria": {"roc_auc": 0.7}}}, tmp_path)
    settings = parse_settings({"data": {"task": "regression", "positive_label": None}}, tmp_path)
    assert settings.gate_metric == "rmse"


def test_card_says_which_rows_the_shipped_and_the_evaluated_model_learned_from(
    tmp_path: Path,
) -> None:
    from core.io import ArtifactPaths, write_json
    from tasks.register.stage import learned_from

    paths = ArtifactPaths(tmp_path)
    write_json(
        {
            "winner": "ensemble of 2 (lightgbm, linear)",
            "evaluation_model_rows": 60,
            "shipped_model_rows": 100,
        },
        paths.train_metrics,
    )
    text = learned_from(paths)
    assert "all 100 labelled rows" in text and "60 train-split rows only" in text
    assert text.endswith("chosen by CV: ensemble of 2 (lightgbm, linear)")
    write_json({"winner": "trial 0"}, paths.train_metrics)  # a model trained before the twin
    assert learned_from(paths) == "the train split"


def test_the_card_counts_rows_after_duplicates_were_dropped() -> None:
    d = decide([], "superior", 0.0, None)
    card = _card(d, rows=4452, raw_rows=200000, duplicate_rows=195548, quarantined_rows=0)
    assert "- rows: 4,452 (of 200,000 read: 195,548 duplicates dropped, 0 quarantined)" in card
    assert "- rows: 100;" in _card(d, raw_rows=100)  # nothing set aside: one number
