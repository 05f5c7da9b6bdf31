"""What model selection chooses (the single best or an ensemble, by out-of-fold score) and the
recipe train fits (models/selection.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.train import choose_threshold
from tasks.tune.candidates import Candidate, choose, ranked, recipe, winner_name
from tasks.tune.cv import CVData
from tasks.tune.ensemble import blend, oof_score
from tests.conftest import make_settings

# Each ranks 3 of the 4 positive / negative pairs right (ROC-AUC 0.75), not the same pairs: their
# mean ranks all four (tests/unit/tasks/tune/test_ensemble.py works it through).
Y = np.array([0, 0, 1, 1])
A = np.array([0.1, 0.6, 0.4, 0.9])
B = np.array([0.5, 0.1, 0.9, 0.3])
GOOD = np.array([0.1, 0.2, 0.8, 0.9])  # ranks every pair right on its own


def _data(y: np.ndarray = Y, task: str = "binary") -> CVData:
    folds = [(np.array([0, 2]), np.array([1, 3])), (np.array([1, 3]), np.array([0, 2]))]
    return CVData(pd.DataFrame(index=range(len(y))), y, folds, [], task, 2, "none", 0)


def _lgbm(number: int, oof: np.ndarray, y: np.ndarray = Y) -> Candidate:
    score = oof_score("binary", y, oof)
    params = {"learning_rate": 0.1, "num_leaves": 7 + number}
    return Candidate(f"trial {number}", "lightgbm", params, score, oof, rounds=30, trial=number)


def _learner(kind: str, oof: np.ndarray, y: np.ndarray = Y) -> Candidate:
    return Candidate(kind, kind, {"C": 1.0}, oof_score("binary", y, oof), oof)


def test_an_ensemble_is_chosen_when_it_beats_the_best_single_out_of_fold(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    pool = [_lgbm(0, A), _learner("linear", B)]
    selection = choose(pool, _data(), settings)
    assert selection.counts == {0: 1, 1: 1} and not selection.is_single
    assert selection.score == 1.0 > selection.best_single_score == 0.75
    out = recipe(pool, selection, _data(), settings)
    assert out["winner"] == "ensemble of 2 (lightgbm, linear)"
    assert out["members"] == [
        {
            "name": "trial 0",
            "kind": "lightgbm",
            "params": {"learning_rate": 0.1, "num_leaves": 7},
            "rounds": 30,
            "weight": 0.5,
        },
        {"name": "linear", "kind": "linear", "params": {"C": 1.0}, "rounds": None, "weight": 0.5},
    ]
    # The threshold is chosen on the blended out-of-fold predictions (what the ensemble outputs).
    blended = blend([A, B], selection.counts)
    threshold = choose_threshold(Y, blended, settings.evaluate.threshold)
    assert out["threshold"] == round(threshold, 6)
    assert threshold != choose_threshold(Y, A, settings.evaluate.threshold)
    assert out["cv"] == {
        "chosen": 1.0,
        "best_single": {"name": "trial 0", "score": 0.75},
        "candidates": {"trial 0": 0.75, "linear": 0.75},
    }
    assert (out["task"], out["cv_metric"], out["cv_rows"], out["cv_folds"]) == (
        "binary",
        "roc_auc",
        4,
        2,
    )


def test_the_single_best_ships_when_no_blend_scores_better(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    # A clearly better candidate, listed after a weaker one: the recipe names the better one.
    pool = [_learner("linear", A), _lgbm(3, GOOD)]
    selection = choose(pool, _data(), settings)
    assert selection.counts == {1: 1} and selection.best_single == 1
    out = recipe(pool, selection, _data(), settings)
    assert out["winner"] == "trial 3" and [m["name"] for m in out["members"]] == ["trial 3"]
    assert out["members"][0]["weight"] == 1.0 and out["cv"]["chosen"] == 1.0
    # A copy of the same predictions ties with the single best: the shorter (single) one wins.
    same = choose([_lgbm(0, A), _lgbm(1, A.copy())], _data(), settings)
    assert same.is_single and same.counts == {0: 1}


def test_ensembling_off_or_a_pool_of_one_ships_the_best_single(tmp_path: Path) -> None:
    off = make_settings(tmp_path, tune={"ensemble": {"enabled": False}})
    pool = [_lgbm(0, A), _learner("linear", B)]
    selection = choose(pool, _data(), off)
    assert selection.counts == {0: 1} and selection.score == 0.75
    assert recipe(pool, selection, _data(), off)["winner"] == "trial 0"
    alone = choose([_learner("linear", B)], _data(), make_settings(tmp_path))
    assert alone.counts == {0: 1} and alone.score == alone.best_single_score == 0.75


def test_regression_recipes_have_no_threshold_and_rank_by_lower_rmse(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, data={"task": "regression", "positive_label": None})
    y = np.array([1.0, 2.0, 3.0, 4.0])
    close, far = y + 0.1, y + np.array([1.0, -1.0, 1.0, -1.0])
    pool = [
        Candidate("linear", "linear", {"alpha": 1.0}, oof_score("regression", y, far), far),
        Candidate("trial 0", "lightgbm", {}, oof_score("regression", y, close), close, rounds=5),
    ]
    assert ranked(pool, "regression") == [1, 0]
    out = recipe(
        pool, choose(pool, _data(y, "regression"), settings), _data(y, "regression"), settings
    )
    assert out["threshold"] is None and out["cv_metric"] == "rmse"
    assert out["cv"]["chosen"] <= out["cv"]["best_single"]["score"] == pytest.approx(0.1)


def test_winner_names_say_what_the_ensemble_is_made_of() -> None:
    members = [_lgbm(0, A), _lgbm(4, A), _learner("extra_trees", B)]
    assert winner_name(members) == "ensemble of 3 (lightgbm, extra_trees)"
    assert winner_name(members[2:]) == "extra_trees"
    logged = Candidate("linear (log target)", "linear", {"log_target": True}, 1.0, A)
    assert winner_name([members[0], logged]) == "ensemble of 2 (lightgbm, linear (log target))"
