import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from core.config import ConfigError, TuneRunnerSettings
from tasks.tune.cv import CVData, cross_validate, make_folds
from tasks.tune.ensemble import oof_score
from tasks.tune.search import INTERRUPTED, choose_fidelity, select_best_trial, threads_per_trial
from tasks.tune.study import (
    TrialOutcome,
    TuningError,
    describe_states,
    open_study,
    run_study,
    run_trial,
)
from tests.conftest import make_settings

State = optuna.trial.TrialState


def _trial(number: int, value: float | None, state: State = State.COMPLETE):
    t = optuna.trial.create_trial(state=state, value=value if state == State.COMPLETE else None)
    t.number = number
    return t


def test_select_best_trial_breaks_ties_by_lower_number() -> None:
    trials = [
        _trial(0, 0.80),
        _trial(1, 0.85),
        _trial(2, 0.85),
        _trial(3, None, State.FAIL),
        _trial(4, None, State.PRUNED),
    ]
    assert select_best_trial(trials, "maximize").number == 1
    assert select_best_trial(list(reversed(trials)), "maximize").number == 1
    assert select_best_trial(trials, "minimize").number == 0
    assert select_best_trial([_trial(5, 0.3), _trial(2, 0.3)], "minimize").number == 2
    assert (
        select_best_trial([_trial(0, None, State.PRUNED), _trial(1, None, State.FAIL)], "maximize")
        is None
    )


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"learning_rate": {"low": 0.5, "high": 0.1}},
            r"tune.search_space.learning_rate: low \(0.5\) is greater",
        ),
        ({"leaves": {"low": 2, "high": 8}}, "tune.search_space.leaves: unknown parameter"),
        (
            {"reg_alpha": {"low": 0.0, "high": 1.0, "log": True}},
            "tune.search_space.reg_alpha: log scale needs a positive range",
        ),
        (
            {"subsample": {"low": 0.5, "high": 1.5}},
            "tune.search_space.subsample: 1.5 is not a valid value",
        ),
    ],
)
def test_bad_search_space_fails_at_load_naming_the_key(tmp_path: Path, space, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        make_settings(tmp_path, tune={"search_space": space})


def test_fidelity_is_reduced_above_the_row_threshold(tmp_path: Path) -> None:
    tune = make_settings(
        tmp_path, tune={"large_data": {"rows": 1000, "subsample_rows": 400, "n_folds": 2}}
    ).tune
    full = choose_fidelity(1000, tune)
    assert (full.level, full.rows, full.n_folds) == ("full", 1000, tune.n_folds)
    reduced = choose_fidelity(5000, tune)
    assert (reduced.level, reduced.rows, reduced.total_rows, reduced.n_folds) == (
        "reduced",
        400,
        5000,
        2,
    )
    assert "5000 train rows > tune.large_data.rows (1000)" in reduced.reason


def test_threads_never_oversubscribe() -> None:
    assert threads_per_trial(TuneRunnerSettings(workers=2), cores=2) == 1
    assert threads_per_trial(TuneRunnerSettings(workers=3), cores=8) == 2
    assert threads_per_trial(TuneRunnerSettings(workers=4), cores=2) == 1
    assert threads_per_trial(TuneRunnerSettings(workers=1, threads_per_trial=3), cores=8) == 3


def _cv_data(n: int = 400, task: str = "binary", imbalance: str = "none") -> CVData:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.integers(0, 3, n).astype(float)}
    )
    y = ((X["a"] + 0.5 * rng.normal(size=n)) > 0.8).astype(int).to_numpy()
    return CVData(X, y, make_folds(y, task, 3, 0), ["c"], task, 2, imbalance, 0)


@pytest.mark.parametrize("imbalance", ["none", "class_weight", "oversample"])
def test_cross_validate_scores_and_stops_early(imbalance: str) -> None:
    data = _cv_data(imbalance=imbalance)
    params = {"learning_rate": 0.1, "num_leaves": 4}
    result = cross_validate(data, params, 300, 10, 1)
    assert 0.75 < result.mean <= 1 and result.std >= 0 and 1 <= result.rounds < 300
    # Every row has one out-of-fold prediction (ensemble selection works on them), and they
    # rank as well as the folds' mean says.
    assert result.oof.shape == (len(data.y),) and ((result.oof > 0) & (result.oof < 1)).all()
    assert abs(oof_score("binary", data.y, result.oof) - result.mean) < 0.05
    again = cross_validate(data, params, 300, 10, 1)
    assert (again.mean, again.std, again.rounds) == (result.mean, result.std, result.rounds)
    assert np.array_equal(again.oof, result.oof)


def _study(tmp_path: Path, settings, name: str = "s"):  # type: ignore[no-untyped-def]
    return open_study(tmp_path / "study.journal", name, "maximize", settings.base.seed)


def _local_submitter(data: CVData, fail: set[int] = frozenset()):  # type: ignore[no-untyped-def]
    """Runs trials in-process (same function the Prefect task wraps) when waited for, i.e. in
    the order the study settles them; `fail` trials come back failed. `specs` records what was
    submitted, `seen` what ran."""
    seen: list[int] = []
    specs: list = []

    def submit(spec):  # type: ignore[no-untyped-def]
        specs.append(spec)

        def wait():  # type: ignore[no-untyped-def]
            seen.append(spec.number)
            if spec.number in fail:
                return TrialOutcome(spec.number, "failed", error=f"ValueError: boom {spec.number}")
            return run_trial(spec, data)

        return wait

    submit.seen, submit.specs = seen, specs  # type: ignore[attr-defined]
    return submit, seen


def _tune(tmp_path: Path, **kw):  # type: ignore[no-untyped-def]
    tune = {
        "n_trials": 6,
        "max_rounds": 60,
        "early_stopping_rounds": 10,
        "min_resource": 10,
        "report_every": 5,
        **kw,
    }
    return make_settings(tmp_path, tune=tune)


def test_failed_trial_is_recorded_and_study_goes_on(tmp_path: Path) -> None:
    settings = _tune(tmp_path)
    study = _study(tmp_path, settings)
    submit, seen = _local_submitter(_cv_data(), fail={1})
    result = run_study(study, settings.tune, 1, 2, submit, "roc_auc")
    assert seen == list(range(6))
    failed = [t for t in result.trials if t.state == State.FAIL]
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["error"] == "ValueError: boom 1"
    assert result.best.state == State.COMPLETE and result.best.number != 1


def test_every_trial_failing_fails_the_stage_with_the_first_error(tmp_path: Path) -> None:
    settings = _tune(tmp_path, n_trials=3)
    submit, _ = _local_submitter(_cv_data(), fail={0, 1, 2})
    with pytest.raises(
        TuningError,
        match=r"all 3 trial\(s\) failed; first error \(trial 0\): "
        r"ValueError: boom 0",
    ):
        run_study(_study(tmp_path, settings), settings.tune, 1, 2, submit, "roc_auc")


def test_interrupted_study_resumes_to_its_budget(tmp_path: Path) -> None:
    """A study killed mid-batch: finished trials are kept, running ones are retried."""
    settings = _tune(tmp_path, n_trials=5)
    data = _cv_data()
    study = _study(tmp_path, settings)
    submit, _ = _local_submitter(data)
    run_study(study, settings.tune.model_copy(update={"n_trials": 2}), 1, 2, submit, "roc_auc")
    killed = study.ask()  # a trial that was running when the process died
    killed.suggest_float("learning_rate", 0.01, 0.3, log=True)

    resumed = _study(tmp_path, settings)  # a new process opens the same journal
    submit, seen = _local_submitter(data)
    result = run_study(resumed, settings.tune, 1, 2, submit, "roc_auc")
    assert result.interrupted == 1 and seen == [3, 4, 5]
    trials = result.trials
    assert trials[2].state == State.FAIL and trials[2].user_attrs["error"] == INTERRUPTED
    assert trials[3].params["learning_rate"] == killed.params["learning_rate"]  # queued again
    assert sum(t.state.is_finished() and t.state != State.FAIL for t in trials) == 5


def test_a_journal_of_another_study_is_replaced(tmp_path: Path) -> None:
    settings = _tune(tmp_path, n_trials=2)
    submit, _ = _local_submitter(_cv_data())
    run_study(_study(tmp_path, settings, "old"), settings.tune, 1, 2, submit, "roc_auc")
    fresh = _study(tmp_path, settings, "new")
    assert fresh.trials == [] and optuna.study.get_all_study_names(fresh._storage) == ["new"]


def test_study_is_deterministic_for_a_worker_count(tmp_path: Path) -> None:
    settings = _tune(tmp_path, n_trials=6)
    data = _cv_data()
    values = []
    for name in ("a", "b"):
        submit, _ = _local_submitter(data)
        result = run_study(
            open_study(tmp_path / f"{name}.journal", "s", "maximize", 1),
            settings.tune,
            1,
            2,
            submit,
            "roc_auc",
        )
        values.append([(t.state, t.value, t.params) for t in result.trials])
    assert values[0] == values[1]


@pytest.mark.parametrize("window", [1, 3])
def test_trial_n_is_asked_knowing_exactly_the_trials_before_the_window(
    tmp_path: Path, window: int
) -> None:
    """No barrier, yet no timing in the result: trial n is sampled (and pruned) knowing trials
    0 .. n - window, whatever has finished meanwhile; results are told in trial order."""
    settings = _tune(tmp_path, n_trials=7)
    submit, seen = _local_submitter(_cv_data())
    result = run_study(_study(tmp_path, settings), settings.tune, 1, window, submit, "roc_auc")
    known = [sum(t.state != State.FAIL for t in spec.history) for spec in submit.specs]
    assert known == [max(0, n - window + 1) for n in range(7)]
    assert seen == list(range(7)) and result.done == 7


def test_progress_counts_running_and_queued_trials() -> None:
    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    study.enqueue_trial({"x": 3.0})
    study.tell(study.ask(), 0.5)
    study.ask()  # running; one more is still queued
    assert describe_states(study.trials) == "1 complete, 0 pruned, 0 failed, 1 running, 1 queued"


def test_tuning_off_still_writes_the_declared_outputs(credit: pd.DataFrame, tmp_path: Path) -> None:
    """train.params with the boosting rounds from one CV is the selection train fits."""
    from adapters.tracking import NO_RUN
    from core.io import ArtifactPaths, read_json
    from tasks.preprocess import split_frame
    from tasks.train import refit_rounds
    from tasks.tune.stage import tune_stage
    from tests.conftest import write_stage_inputs

    settings = make_settings(
        tmp_path, tune={"enabled": False, "n_folds": 3}, train={"n_estimators": 80}
    )
    parts = split_frame(credit.sample(500, random_state=6).reset_index(drop=True), 0.2, 0.2, 42)
    write_stage_inputs(tmp_path, parts, settings)
    paths = ArtifactPaths(tmp_path)
    paths.tuning_reports.mkdir(parents=True)
    (paths.tuning_reports / "optimization_history.png").write_bytes(b"stale")
    tune_stage.fn(settings, NO_RUN)
    metrics = read_json(paths.tuning_metrics)
    assert metrics["enabled"] is False and metrics["cv_metric"] == "roc_auc"
    assert 0.6 < metrics["cv_mean"] <= 1 and 1 <= metrics["best_rounds"] <= 80
    selection = read_json(paths.selection)
    (member,) = selection["members"]
    assert member["kind"] == "lightgbm" and member["weight"] == 1.0
    assert member["rounds"] == metrics["best_rounds"] and selection["cv_folds"] == 3
    assert member["params"]["learning_rate"] == settings.train.params.learning_rate
    assert selection["winner"] == "train.params" and 0 < selection["threshold"] < 1
    assert refit_rounds(member["rounds"], selection["cv_folds"]) > member["rounds"]
    assert paths.tuning_dir.is_dir()  # the persisted output exists (DVC requires it)
    assert [p.name for p in paths.tuning_reports.iterdir()] == ["README.txt"]  # nothing stale


def test_the_study_starts_from_lightgbm_defaults_then_the_portfolio(tmp_path: Path) -> None:
    from tasks.tune.search import PORTFOLIO, portfolio_point, searched
    from tasks.tune.stage import defaults_score

    settings = _tune(tmp_path, n_trials=4)
    submit, _ = _local_submitter(_cv_data())
    result = run_study(_study(tmp_path, settings), settings.tune, 1, 2, submit, "roc_auc")
    assert [t.user_attrs.get("portfolio") for t in result.trials] == [n for n, _ in PORTFOLIO[:4]]
    space = searched(settings.tune.search_space, has_categorical=False)
    defaults = result.trials[0].params
    assert defaults == portfolio_point({}, space)
    # LightGBM's own defaults, as points of the search space (a zero penalty is its low end).
    assert (defaults["learning_rate"], defaults["num_leaves"], defaults["min_child_samples"]) == (
        0.1,
        31,
        20,
    )
    assert defaults["max_bin"] == 255 and defaults["extra_trees"] is False
    assert defaults["reg_alpha"] == space["reg_alpha"].low
    assert "categorical_native" not in defaults  # no categorical columns: not searched
    for trial, (_, config) in zip(result.trials[1:], PORTFOLIO[1:4]):
        assert trial.params == portfolio_point(config, space)
    assert defaults_score(result) == result.trials[0].value
    # The best trial is the best of them all, so the study never ends below the defaults.
    assert result.best.value >= result.trials[0].value


def test_with_categorical_columns_the_defaults_run_both_ways_and_the_winner_goes_on(
    tmp_path: Path,
) -> None:
    settings = _tune(tmp_path, n_trials=4)
    submit, _ = _local_submitter(_cv_data())
    result = run_study(
        _study(tmp_path, settings), settings.tune, 1, 2, submit, "roc_auc", has_categorical=True
    )
    trials = result.trials
    assert [t.user_attrs.get("portfolio") for t in trials] == [
        "lightgbm_defaults",
        "lightgbm_defaults_ordinal",
        "flaml_mc3",
        "flaml_mc1",
    ]
    assert trials[0].params["categorical_native"] is True
    assert trials[1].params["categorical_native"] is False
    # The rest of the portfolio waits for both defaults trials and uses the better mode.
    assert sum(t.state == State.COMPLETE for t in submit.specs[2].history) == 2
    native = trials[0].value >= trials[1].value
    assert trials[2].params["categorical_native"] is native
    assert trials[3].params["categorical_native"] is native


def test_without_the_portfolio_only_the_defaults_come_first(tmp_path: Path) -> None:
    settings = _tune(tmp_path, n_trials=3, portfolio=False)
    submit, _ = _local_submitter(_cv_data())
    result = run_study(_study(tmp_path, settings), settings.tune, 1, 2, submit, "roc_auc")
    names = [t.user_attrs.get("portfolio") for t in result.trials]
    assert names == ["lightgbm_defaults", None, None]  # then the sampler proposes
    assert result.trials[0].params["learning_rate"] == 0.1


def test_tuning_summary_reports_the_defaults_beside_the_best_trial_and_no_timings(
    tmp_path: Path,
) -> None:
    from tasks.tune.search import choose_fidelity
    from tasks.tune.stage import tuning_summary

    settings = _tune(tmp_path, n_trials=3)
    submit, _ = _local_submitter(_cv_data())
    result = run_study(_study(tmp_path, settings), settings.tune, 1, 2, submit, "roc_auc")
    selection = {
        "winner": "trial 1 (flaml_mc3)",
        "members": [{"name": "trial 1 (flaml_mc3)", "weight": 1.0}],
        "cv": {
            "chosen": 0.9,
            "best_single": {"name": "trial 1 (flaml_mc3)", "score": 0.9},
            "candidates": {"trial 1 (flaml_mc3)": 0.9},
        },
    }
    fidelity = choose_fidelity(400, settings.tune)
    summary = tuning_summary(settings, result, fidelity, "s", selection, 1)
    assert summary["lightgbm_defaults"] == round(result.trials[0].value, 6)
    assert summary["best_trial_score"] == round(result.best.value, 6)
    assert summary["best_trial_score"] >= summary["lightgbm_defaults"]
    assert summary["winner"] == "trial 1 (flaml_mc3)" and summary["cv_mean"] == 0.9
    assert "baselines" not in summary
    flat = json.dumps(summary)
    assert "second" not in flat and "elapsed" not in flat  # timings go to MLflow only


def test_a_spent_budget_still_runs_lightgbms_defaults(tmp_path: Path) -> None:
    """However little time is left, trial 0 (LightGBM's defaults) runs: the choice can never be
    below the defaults for want of a budget."""
    settings = _tune(tmp_path, n_trials=5)
    submit, seen = _local_submitter(_cv_data())
    result = run_study(
        _study(tmp_path, settings), settings.tune, 1, 2, submit, "roc_auc", budget_s=0.0
    )
    assert seen == [0]
    assert (
        result.best.number == 0 and result.best.user_attrs.get("portfolio") == "lightgbm_defaults"
    )


def test_learners_stop_after_half_the_budget(tmp_path: Path) -> None:
    from tasks.tune.candidates import learner_candidates

    settings = make_settings(tmp_path, tune={"learners": ["linear", "extra_trees"]})
    data = _cv_data()
    # No time at all: only the first setting of the first learner runs.
    only = learner_candidates(data, settings, 1, budget_s=0.0)
    assert [c.kind for c in only] == ["linear"]
    both = learner_candidates(data, settings, 1, budget_s=None)
    assert [c.kind for c in both] == ["linear", "extra_trees"]


def test_a_non_negative_regression_target_adds_log_target_candidates(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from tasks.tune.candidates import learner_candidates
    from tasks.tune.cv import CVData, make_folds

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = np.exp(1 + X["a"] + 0.1 * rng.normal(size=300)).to_numpy()
    settings = make_settings(tmp_path, tune={"learners": ["linear", "extra_trees"]})

    def names(target: np.ndarray) -> list[str]:
        folds = make_folds(target, "regression", 3, 0)
        data = CVData(X, target, folds, [], "regression", 0, "none", 0)
        return [c.name for c in learner_candidates(data, settings, 1)]

    pool = names(y)
    assert pool == ["linear", "linear (log target)", "extra_trees"]
    assert names(y - 5.0) == ["linear", "extra_trees"]  # log1p needs a non-negative target
