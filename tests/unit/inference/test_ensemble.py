"""The weighted ensemble that ships inside a registered model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor

from inference.ensemble import Member, WeightedEnsemble


def test_probabilities_and_values_are_weighted_means() -> None:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    y = np.array([0, 1, 1, 1])
    prior = DummyClassifier(strategy="prior").fit(X, y)  # [0.25, 0.75] everywhere
    uniform = DummyClassifier(strategy="uniform", random_state=0).fit(X, y)  # [0.5, 0.5]
    ens = WeightedEnsemble(
        [Member("a", "prior", prior, 3), Member("b", "uniform", uniform, 1)], "binary", n_classes=2
    )
    np.testing.assert_allclose(ens.predict_proba(X)[0], [0.3125, 0.6875])
    assert ens.weights() == {"prior": 0.75, "uniform": 0.25}
    assert ens.predict(X).tolist() == [1, 1, 1, 1] and ens.lightgbm() is None
    reg = WeightedEnsemble(
        [
            Member("m", "mean", DummyRegressor().fit(X, [0, 0, 4, 4]), 1),
            Member("c", "two", DummyRegressor(strategy="constant", constant=4).fit(X, y), 1),
        ],
        "regression",
    )
    np.testing.assert_allclose(reg.predict(X), [3.0] * 4)
    with pytest.raises(AttributeError):
        reg.predict_proba(X)


def test_an_ensemble_needs_a_positive_weight() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        WeightedEnsemble([], "binary", 2)
