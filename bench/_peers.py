"""One peer on one table, for bench/quality.py: fits on the 75% split, predicts the 25%, prints
one JSON line {"score", "fit_s", ...}. Runs in whichever venv has the tool (AutoGluon needs
pandas 2, so it has its own venv; see bench/requirements-autogluon.txt):

    python bench/_peers.py lgbm|flaml|autogluon TABLE BUDGET_S [PREDICTIONS.npy]

With PREDICTIONS.npy it also saves its held-out predictions there (for the paired intervals).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quality_tables as protocol


def as_categories(train: pd.DataFrame, test: pd.DataFrame) -> None:
    """Text columns as pandas categories with the 75%'s levels (what LightGBM's defaults need)."""
    for c in train.columns:
        if train[c].dtype == object:
            levels = pd.Index(sorted(train[c].dropna().unique()))
            train[c] = pd.Categorical(train[c], categories=levels)
            test[c] = pd.Categorical(test[c], categories=levels)


def ordered(proba: np.ndarray, model_classes: Any, classes: list[str], task: str, positive: Any):
    order = [list(map(str, model_classes)).index(c) for c in classes]
    out = np.asarray(proba)[:, order]
    return out[:, classes.index(str(positive))] if task == "binary" else out


def lgbm(train, test, target, task, positive, classes, budget_s):
    """LightGBM's defaults: `LGBMClassifier().fit(X, y)`."""
    import lightgbm as lgb

    X, Xt = train.drop(columns=[target]), test.drop(columns=[target])
    as_categories(X, Xt)
    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    model = cls(verbose=-1, random_state=protocol.SEED).fit(X, train[target])
    if task == "regression":
        return model.predict(Xt), {"version": lgb.__version__}
    return ordered(model.predict_proba(Xt), model.classes_, classes, task, positive), {
        "version": lgb.__version__
    }


def flaml(train, test, target, task, positive, classes, budget_s):
    """FLAML AutoML, `budget_s` seconds, 2 jobs, metric = the table's headline metric."""
    import flaml as flaml_pkg
    from flaml import AutoML

    X, Xt = train.drop(columns=[target]), test.drop(columns=[target])
    automl = AutoML()
    automl.fit(
        X,
        train[target],
        task="regression" if task == "regression" else "classification",
        metric=protocol.METRIC[task],
        time_budget=budget_s,
        n_jobs=2,
        seed=protocol.SEED,
        verbose=0,
    )
    extra = {"version": flaml_pkg.__version__, "best": automl.best_estimator}
    if task == "regression":
        return automl.predict(Xt), extra
    return ordered(automl.predict_proba(Xt), automl.classes_, classes, task, positive), extra


def autogluon(train, test, target, task, positive, classes, budget_s):
    """AutoGluon `medium_quality`, `time_limit=budget_s`, 2 CPUs (no torch)."""
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular import __version__ as version

    metric = {"binary": "roc_auc", "regression": "root_mean_squared_error"}.get(task, "log_loss")
    path = tempfile.mkdtemp(prefix="bench-autogluon-")
    try:
        predictor = TabularPredictor(
            label=target, eval_metric=metric, problem_type=task, path=path, verbosity=0
        ).fit(train, time_limit=budget_s, presets="medium_quality", num_cpus=2)
        Xt = test.drop(columns=[target])
        extra = {"version": version, "best": predictor.model_best}
        if task == "regression":
            return predictor.predict(Xt).to_numpy(), extra
        proba = predictor.predict_proba(Xt)
        return ordered(proba.to_numpy(), proba.columns, classes, task, positive), extra
    finally:
        shutil.rmtree(path, ignore_errors=True)


PEERS = {"lgbm": lgbm, "flaml": flaml, "autogluon": autogluon}


def main() -> None:
    tool, table, budget_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    train, test, target, task, positive = protocol.split(table)
    classes = protocol.classes_of(train, target)
    start = time.perf_counter()
    pred, extra = PEERS[tool](train, test, target, task, positive, classes, budget_s)
    fit_s = time.perf_counter() - start
    value = protocol.score(task, test[target], pred, positive, classes)
    if len(sys.argv) > 4:
        np.save(sys.argv[4], np.asarray(pred, dtype=float))
    print(json.dumps({"score": value, "seconds": round(fit_s, 1), **extra}, default=str))


if __name__ == "__main__":
    main()
