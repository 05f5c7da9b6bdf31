"""Tuning benchmark on the default data; prints one JSON line.

    python bench/tuning.py [--seeds 3] [--trials 24] [--parallel-trials 16] [--max-rounds 1000]

- parallel efficiency: the same fixed parameter sets (drawn at random from the stage's search
  space, enqueued, no pruning, so the work is identical) run through the tune stage's loop as
  `tune-trial` Prefect tasks on the process runner with 1 and with 2 workers; trials/minute with
  2 over trials/minute with 1 (target >= 0.85 x 2 = 1.7). Worker start-up is timed apart.
- search efficiency, median of `--seeds` seeds: scikit-learn RandomizedSearchCV (same search
  space, same budget of trials, same stratified folds, n_jobs=2, the number of trees sampled in
  [50, max_rounds] as it has no early stopping) against the tune stage's study as it runs in the
  stage: LightGBM's defaults and the portfolio first (tasks/tune/search.py PORTFOLIO, half of a
  24-trial budget), then multivariate TPE, with the stage's pruner and 2 process workers. The
  figure is the time the study needed to reach random search's best CV ROC-AUC, as a share of
  random search's wall time (target <= 0.40). Both sides are scored the same way, as the mean of
  the per-fold ROC-AUCs (what RandomizedSearchCV reports; the study itself ranks trials by the
  ROC-AUC of the pooled out-of-fold predictions, reported as `tpe_best_pooled`).
  `--no-portfolio` measures the sampler alone (LightGBM's defaults, then TPE).
- test ROC-AUC on the test split of models fitted the way `train` fits its evaluation model
  (train split only, the CV's best round count x k/(k-1), tasks/train.py fit_selection): the best
  LightGBM trial of the first seed's study, LightGBM's defaults (the study's trial 0, rounds from
  its CV), and the stage's selection from that study (the best trials, the other learners and
  the ensemble, tasks/tune/candidates.py).
`--max-rounds` caps the boosting rounds of both searches alike (params.yaml's tune.max_rounds is
5000; random search without early stopping at up to 5000 trees per fit would take most of an
hour here). Timings are wall-clock on this machine in one run; only the ratios are meant to be
compared. The load average is recorded with each timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import loguniform
from sklearn.base import BaseEstimator, TransformerMixin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(tmp: Path):  # type: ignore[no-untyped-def]
    """Default data through ingest/validate-style cleaning, split, preprocessing and features."""
    from core.config import load_settings
    from inference.model import encode_target
    from tasks.features import fit_model_input, model_input_categoricals, transform_splits
    from tasks.ingest import normalise_frame, read_source
    from tasks.preprocess import build_preprocessor, feature_frame, split_frame
    from tasks.validate import drop_duplicate_rows

    settings = load_settings(ROOT / "params.yaml")
    data = settings.data
    frame = normalise_frame(read_source(data.source, ROOT, data.csv_separator), data)
    frame, _ = drop_duplicate_rows(frame[frame[data.target].notna()])
    splits = split_frame(
        frame, settings.split.test_size, settings.split.valid_size, settings.base.seed
    )
    X = feature_frame(splits["train"], data.target)
    pre = build_preprocessor(X, settings.preprocess, data.sentinels).fit(X)
    model_input = fit_model_input(pre, splits["train"], settings)
    X_train = transform_splits(model_input, {"train": splits["train"]}, data.target)["train"]
    y, classes = encode_target(
        splits["train"][data.target], data.task, positive_label=data.positive_label
    )
    return settings, splits, model_input, X_train, y, model_input_categoricals(model_input), classes


def cv_data(settings, X, y, cats, seed: int):  # type: ignore[no-untyped-def]
    from tasks.tune.cv import CVData, make_folds

    return CVData(
        X,
        y,
        make_folds(y, "binary", settings.tune.n_folds, seed),
        cats,
        "binary",
        2,
        settings.features.imbalance,
        seed,
    )


def parallel_efficiency(settings, X, y, cats, n_trials: int, kind: str, repeat: int) -> dict:  # type: ignore[no-untyped-def]
    """The tune stage's own loop (`run_study`: ask, submit as `tune-trial` tasks, tell) over the
    same fixed parameter sets (enqueued, no pruning, no stall stop, so the work is identical)
    with 1 and with 2 workers. Worker start-up is timed apart: a warm-up study of one trial per
    worker runs first on the same runner. The 1-vs-2 pair is measured `repeat` times,
    interleaved; the median speedup is reported (single pairs vary by about +-0.1 in efficiency
    on this VM)."""
    import optuna

    from tasks.tune.search import searched, suggest_params

    tune = settings.tune.model_copy(
        update={"pruner": "none", "n_trials": n_trials, "stall_trials": 0}
    )
    space = searched(tune.search_space, bool(cats))
    sampler = optuna.samplers.RandomSampler(seed=settings.base.seed)
    draw = optuna.create_study(direction="maximize", sampler=sampler)
    params = [suggest_params(draw.ask(), space) for _ in range(n_trials)]
    data = cv_data(settings, X, y, cats, settings.base.seed)

    def fixed_study(values: list[dict]) -> optuna.Study:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
        for v in values:  # enqueued trials go before the portfolio (tasks/tune/study.py)
            study.enqueue_trial({k: x for k, x in v.items() if k != "subsample_freq"})
        return study

    runs = [_parallel_once(tune, params, data, kind, fixed_study) for _ in range(repeat)]
    ratios = [r[2]["trials_per_min"] / r[1]["trials_per_min"] for r in runs]
    ratio = statistics.median(ratios)
    middle = runs[ratios.index(ratio)] if ratio in ratios else runs[0]
    return {
        "runner": kind,
        "trials": n_trials,
        "repeat": repeat,
        "max_rounds": tune.max_rounds,
        "workers_1": middle[1],
        "workers_2": middle[2],
        "speedups": [round(r, 3) for r in ratios],
        "speedup_2_over_1": round(ratio, 3),
        "efficiency": round(ratio / 2, 3),
        "target_speedup": 1.7,
        "met": ratio >= 1.7,
    }


def _parallel_once(tune, params, data, kind, fixed_study) -> dict:  # type: ignore[no-untyped-def]
    from core.config import TuneRunnerSettings
    from tasks.tune.study import prefect_trials, run_study

    n_trials = len(params)
    has_cat = bool(data.categorical)
    out = {}
    for workers in (1, 2):
        runner = TuneRunnerSettings(kind=kind, workers=workers, threads_per_trial=1)
        seconds_in_trials: list[float] = []
        started = time.perf_counter()
        with prefect_trials(runner, data) as submit:
            run_study(
                fixed_study(params[:workers]),
                tune.model_copy(update={"n_trials": workers}),
                1,
                runner.window,
                submit,
                "roc_auc",
                has_categorical=has_cat,
            )  # starts the workers
            startup = time.perf_counter() - started
            load = os.getloadavg()[0]
            result = run_study(
                fixed_study(params),
                tune,
                1,
                runner.window,
                submit,
                "roc_auc",
                on_trial=lambda o, _p, acc=seconds_in_trials: acc.append(o.seconds),
                has_categorical=has_cat,
            )
            seconds = result.seconds
            load_end = os.getloadavg()[0]
        assert all(t.state.name == "COMPLETE" for t in result.trials), result.trials
        # Mean time a trial spent computing inside its worker: if it grows with 2 workers, the
        # second core was not there to be had (other processes), whatever the runner does.
        out[workers] = {
            "trials_per_min": round(n_trials * 60 / seconds, 2),
            "seconds": round(seconds, 2),
            "warm_up_seconds": round(startup, 2),
            "trial_compute_seconds_mean": round(statistics.mean(seconds_in_trials), 3),
            "window": runner.window,
            "load_average_1min_at_start": round(load, 2),
            "load_average_1min_at_end": round(load_end, 2),
        }
    return out


class CategoricalSwitch(TransformerMixin, BaseEstimator):
    """RandomizedSearchCV's counterpart of the study's `categorical_native` choice: the
    categorical model-input columns as pandas categories (LightGBM splits them as categories,
    like `categorical_feature`) or left as their ordinal codes (split as numbers)."""

    def __init__(self, columns: tuple[str, ...] = (), native: bool = True) -> None:
        self.columns = columns
        self.native = native

    def fit(self, X, y=None) -> CategoricalSwitch:  # type: ignore[no-untyped-def]
        self.levels_ = {c: sorted(X[c].dropna().unique()) for c in self.columns}
        return self

    def transform(self, X):  # type: ignore[no-untyped-def]
        if not self.native:
            return X
        X = X.copy()
        for c in self.columns:
            X[c] = pd.Categorical(X[c], categories=self.levels_[c])
        return X


class LogUniformInt:
    """Integers drawn log-uniformly in [low, high], as Optuna's `suggest_int(..., log=True)`."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.dist = loguniform(low, high + 1)

    def rvs(self, random_state=None, size=None) -> int:  # type: ignore[no-untyped-def]
        return min(self.high, int(np.floor(self.dist.rvs(random_state=random_state))))


def random_search(settings, X, y, cats, seed: int, n_trials: int) -> tuple[float, float, dict]:  # type: ignore[no-untyped-def]
    import lightgbm as lgb
    from scipy.stats import randint, uniform
    from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    from core.config import is_int_param
    from tasks.tune.search import searched

    dists: dict = {}
    for name, rng in searched(settings.tune.search_space, bool(cats)).items():
        key = "cats__native" if name == "categorical_native" else f"lgbm__{name}"
        if rng.choices is not None:
            dists[key] = list(rng.choices)
        elif is_int_param(name):
            dists[key] = (
                LogUniformInt(int(rng.low), int(rng.high))
                if rng.log
                else randint(int(rng.low), int(rng.high) + 1)
            )
        elif rng.log:
            dists[key] = loguniform(rng.low, rng.high)
        else:
            dists[key] = uniform(rng.low, rng.high - rng.low)
    dists["lgbm__n_estimators"] = randint(50, settings.tune.max_rounds + 1)
    est = lgb.LGBMClassifier(
        subsample_freq=1,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
        deterministic=True,
        force_col_wise=True,
    )
    search = RandomizedSearchCV(
        Pipeline([("cats", CategoricalSwitch(tuple(cats))), ("lgbm", est)]),
        dists,
        n_iter=n_trials,
        scoring="roc_auc",
        n_jobs=2,
        cv=StratifiedKFold(settings.tune.n_folds, shuffle=True, random_state=seed),
        random_state=seed,
        refit=False,
    )
    t0 = time.perf_counter()
    search.fit(X, y)
    return float(search.best_score_), time.perf_counter() - t0, dict(search.best_params_)


def mean_fold_auc(y, oof, folds) -> float:  # type: ignore[no-untyped-def]
    """The mean of the per-fold ROC-AUCs of out-of-fold predictions (RandomizedSearchCV's
    figure, here for the study's trials in the same folds)."""
    from sklearn.metrics import roc_auc_score

    return float(statistics.mean(roc_auc_score(y[te], oof[te]) for _, te in folds))


def tpe_study(settings, X, y, cats, seed: int, n_trials: int, tmp: Path, runner, portfolio=True):  # type: ignore[no-untyped-def]
    """The tune stage's study (its loop, portfolio then TPE, its pruner, 2 workers) on an
    already started task runner; the time each new best (mean fold ROC-AUC) was reached, and
    the out-of-fold predictions of the complete trials."""
    from tasks.tune.study import open_study, run_study, submitter

    tune = settings.tune.model_copy(update={"n_trials": n_trials, "portfolio": portfolio})
    data = cv_data(settings, X, y, cats, seed)
    study = open_study(tmp / f"study-{seed}.journal", f"bench-{seed}", "maximize", seed)
    reached: list[tuple[float, float]] = []  # (seconds since start, best so far) per trial told
    oofs: dict = {}
    t0 = time.perf_counter()
    best = float("-inf")

    def on_trial(outcome, _params):  # type: ignore[no-untyped-def]
        nonlocal best
        if outcome.oof is not None:
            oofs[outcome.number] = outcome.oof
            best = max(best, mean_fold_auc(data.y, outcome.oof, data.folds))
        reached.append((time.perf_counter() - t0, best))

    window = settings.tune.runner.model_copy(update={"workers": 2}).window
    result = run_study(
        study,
        tune,
        1,
        window,
        submitter(runner, data),
        "roc_auc",
        on_trial=on_trial,
        has_categorical=bool(cats),
    )
    return result, reached, time.perf_counter() - t0, data, oofs


def started_runners(settings, X, y, cats, kind: str, tmp: Path):  # type: ignore[no-untyped-def]
    """Both methods' worker pools started and warm before any timing: joblib's loky pool (which
    RandomizedSearchCV keeps between calls anyway) and the tune stage's task runner. Returns the
    runner's context, the runner and the seconds its start took (what a `tune` stage run pays
    once, whatever the search)."""
    from adapters.prefect import task_runner as trial_runner
    from core.config import TuneRunnerSettings

    random_search(settings, X, y, cats, settings.base.seed, 2)  # loky workers + imports
    context = trial_runner(TuneRunnerSettings(kind=kind, workers=2, threads_per_trial=1))
    t0 = time.perf_counter()
    runner = context.__enter__()
    tpe_study(settings, X, y, cats, settings.base.seed, 2, tmp / "warm", runner)
    return context, runner, time.perf_counter() - t0


def lightgbm_recipe(name: str, trial, folds: int) -> dict:  # type: ignore[no-untyped-def]
    """A one-member selection (what `train` fits) of a LightGBM trial, with its CV rounds."""
    from tasks.tune.candidates import train_params

    member = {
        "name": name,
        "kind": "lightgbm",
        "params": train_params(trial.params),
        "rounds": int(trial.user_attrs["rounds"]),
        "weight": 1.0,
    }
    return {"members": [member], "cv_folds": folds, "winner": name, "threshold": None}


def stage_selection(settings, result, oofs, data) -> dict:  # type: ignore[no-untyped-def]
    """What the tune stage would write to models/selection.json after this study: the best
    trials and the other learners in the same folds, then ensemble selection."""
    from tasks.tune.candidates import choose, learner_candidates, lightgbm_pool, recipe

    threads = os.cpu_count() or 1
    pool = lightgbm_pool(result.trials, oofs, data, settings, threads)
    pool += learner_candidates(data, settings, threads)
    return recipe(pool, choose(pool, data, settings), data, settings)


def test_metric(settings, splits, model_input, classes, selection) -> float:  # type: ignore[no-untyped-def]
    """Test ROC-AUC of the selection fitted like the evaluation model (train split only)."""
    from sklearn.metrics import roc_auc_score

    from inference.model import encode_target
    from tasks.train import fit_selection

    model = fit_selection(selection, splits["train"], model_input, settings, classes, "evaluation")
    y, _ = encode_target(splits["test"][settings.data.target], "binary", classes=model.classes)
    return float(roc_auc_score(y, model.predict_scores(splits["test"])))


def finite(value: float) -> float | None:
    """None for a seed (or a median) where the study never reached random search's best."""
    return None if value == float("inf") else value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--parallel-trials", type=int, default=16)
    parser.add_argument("--parallel-repeat", type=int, default=3)
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=1000,
        help="boosting rounds cap of both searches (params.yaml: tune.max_rounds)",
    )
    parser.add_argument("--only-parallel", action="store_true", help="skip the search part")
    parser.add_argument(
        "--no-portfolio", action="store_true", help="the study without the portfolio"
    )
    parser.add_argument(
        "--runner",
        default=None,
        choices=["process", "thread"],
        help="task runner (default: tune.runner.kind in params.yaml)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    from flows._runtime import prepare_environment

    prepare_environment(tmp, in_flow=False)
    import logging

    logging.basicConfig(level=logging.WARNING)
    from adapters.prefect import shared_prefect_api

    settings, splits, model_input, X, y, cats, classes = prepare(tmp)
    if args.max_rounds:
        settings = settings.model_copy(
            update={"tune": settings.tune.model_copy(update={"max_rounds": args.max_rounds})}
        )
    cores = os.cpu_count()
    load_start = os.getloadavg()
    started = time.perf_counter()
    with shared_prefect_api():  # started once, outside every timing
        kind = args.runner or settings.tune.runner.kind
        parallel = parallel_efficiency(
            settings, X, y, cats, args.parallel_trials, kind, args.parallel_repeat
        )
        if args.only_parallel:
            print(
                json.dumps(
                    {
                        "cores": cores,
                        "train_rows": len(y),
                        "load_average_at_start": [round(v, 2) for v in load_start],
                        "parallel": parallel,
                    }
                )
            )
            return
        seeds = []
        first = None
        (tmp / "warm").mkdir()
        context, runner, pool_start = started_runners(settings, X, y, cats, kind, tmp)
        try:
            for k in range(args.seeds):
                seed = settings.base.seed + k
                load = os.getloadavg()[0]
                rs_best, rs_seconds, _ = random_search(settings, X, y, cats, seed, args.trials)
                result, reached, tpe_seconds, data, oofs = tpe_study(
                    settings,
                    X,
                    y,
                    cats,
                    seed,
                    args.trials,
                    tmp,
                    runner,
                    portfolio=not args.no_portfolio,
                )
                hit = next((t for t, b in reached if b >= rs_best), None)
                seeds.append(
                    {
                        "seed": seed,
                        "random_best": round(rs_best, 5),
                        "random_seconds": round(rs_seconds, 2),
                        "tpe_best": round(max(b for _, b in reached), 5),
                        "tpe_best_pooled": round(float(result.best.value), 5),
                        "tpe_seconds": round(tpe_seconds, 2),
                        "tpe_seconds_to_random_best": None if hit is None else round(hit, 2),
                        "share_of_random_time": None if hit is None else round(hit / rs_seconds, 3),
                        "share_with_pool_start": None
                        if hit is None
                        else round((hit + pool_start) / rs_seconds, 3),
                        "pruned": sum(t.state.name == "PRUNED" for t in result.trials),
                        "load_average_1min_at_start": round(load, 2),
                    }
                )
                if k == 0:
                    first = (result, data, oofs)
        finally:
            context.__exit__(None, None, None)
    shares = [
        s["share_of_random_time"] if s["share_of_random_time"] is not None else float("inf")
        for s in seeds
    ]
    median_share = statistics.median(shares)
    assert first is not None
    result, data, oofs = first
    folds = len(data.folds)
    defaults_trial = next(t for t in result.trials if t.number == 0)
    selection = stage_selection(settings, result, oofs, data)
    test = {
        "tuned_lightgbm": test_metric(
            settings, splits, model_input, classes, lightgbm_recipe("best", result.best, folds)
        ),
        "lightgbm_defaults": test_metric(
            settings,
            splits,
            model_input,
            classes,
            lightgbm_recipe("defaults", defaults_trial, folds),
        ),
        "selection": test_metric(settings, splits, model_input, classes, selection),
    }
    print(
        json.dumps(
            {
                "cores": cores,
                "train_rows": len(y),
                "trials": args.trials,
                "max_rounds": settings.tune.max_rounds,
                "portfolio": not args.no_portfolio,
                "load_average_at_start": [round(v, 2) for v in load_start],
                "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                "seconds": round(time.perf_counter() - started, 1),
                "parallel": parallel,
                "search": {
                    "seeds": seeds,
                    "median_share_of_random_time": finite(median_share),
                    "median_share_with_pool_start": finite(
                        statistics.median(
                            s["share_with_pool_start"]
                            if s["share_with_pool_start"] is not None
                            else float("inf")
                            for s in seeds
                        )
                    ),
                    "pool_start_seconds": round(pool_start, 2),
                    "target_share": 0.4,
                    "met": median_share <= 0.4,
                },
                "test_roc_auc": {
                    **{k: round(v, 5) for k, v in test.items()},
                    "selection_winner": selection["winner"],
                    "best_trial": result.best.number,
                    "best_trial_rounds": result.best.user_attrs.get("rounds"),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
