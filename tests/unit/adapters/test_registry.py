import time

import pytest

from adapters.registry import LockTimeout, RegistryLock, lock_name


@pytest.fixture(scope="module")
def client(tmp_path_factory):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    return MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")


def _exists(client, name: str) -> bool:  # type: ignore[no-untyped-def]
    return any(m.name == name for m in client.search_registered_models())


def test_second_holder_waits_then_gets_it_after_release(client) -> None:  # type: ignore[no-untyped-def]
    a = RegistryLock(client, "m1", timeout_s=0.5, poll_s=0.05)
    b = RegistryLock(client, "m1", timeout_s=0.5, poll_s=0.05)
    with a.held():
        assert a.still_held() and _exists(client, lock_name("m1"))
        with pytest.raises(LockTimeout, match="m1.promotion-lock"):
            b.acquire()
    assert not _exists(client, lock_name("m1"))
    with b.held():
        assert b.still_held() and not a.still_held()


def test_expired_lock_of_a_crashed_run_is_broken(client) -> None:  # type: ignore[no-untyped-def]
    crashed = RegistryLock(client, "m2", ttl_s=0.3)
    crashed.acquire()  # never released: the process "died"
    time.sleep(0.4)
    assert not crashed.still_held()  # expired: fencing refuses its late write
    successor = RegistryLock(client, "m2", timeout_s=5, poll_s=0.05)
    with successor.held():
        assert successor.still_held()
    crashed.release()  # a late release does not delete others' locks
    assert not _exists(client, lock_name("m2"))


def test_release_leaves_a_successors_lock_alone(client) -> None:  # type: ignore[no-untyped-def]
    old = RegistryLock(client, "m3", ttl_s=0.2)
    old.acquire()
    time.sleep(0.3)
    new = RegistryLock(client, "m3", timeout_s=5, poll_s=0.05)
    new.acquire()
    old.release()
    assert new.still_held()
    new.release()


def test_models_pickled_under_the_old_module_paths_still_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Versions registered before the inference package existed pickled `tasks.model` objects;
    in a process that has imported the current `tasks` (which no longer holds them), loading
    them must still work while a registered model is being loaded."""
    import importlib
    import sys

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    import inference.model as current
    import tasks  # noqa: F401  # the current package, which has no `model` module
    from adapters.registry import loading_registered_code

    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    model = current.InferenceModel(
        Pipeline([("model", DummyClassifier().fit(X, [0, 1, 0, 1]))]),
        "binary",
        "y",
        ["a"],
        {"a": "float64"},
        ["no", "yes"],
    )
    cls = current.InferenceModel
    sys.modules["tasks.model"] = current  # as the old code was laid out when it was pickled
    cls.__module__ = "tasks.model"
    try:
        joblib.dump(model, tmp_path / "old.joblib")
    finally:
        cls.__module__ = "inference.model"
        del sys.modules["tasks.model"]
    assert b"tasks.model" in (tmp_path / "old.joblib").read_bytes()

    with pytest.raises(ModuleNotFoundError):
        joblib.load(tmp_path / "old.joblib")
    with loading_registered_code():
        loaded = joblib.load(tmp_path / "old.joblib")
    assert "tasks.model" not in sys.modules  # the alias lasts only while loading
    assert type(loaded) is importlib.import_module("inference.model").InferenceModel
    np.testing.assert_allclose(loaded.predict_scores(X), model.predict_scores(X))


def test_every_input_column_is_required_even_where_the_example_misses_values() -> None:
    """A request without a column is refused by MLflow naming it, not inside the model."""
    import numpy as np
    import pandas as pd

    from adapters.registry import input_signature

    example = pd.DataFrame(
        {"Income": [1.0, np.nan], "Job": ["fixed", None], "Age": np.array([30, 41], dtype="int64")}
    )
    output = pd.DataFrame({"probability": [0.2, 0.7], "label": ["good", "bad"]})
    inputs = input_signature(example, output).inputs
    assert [(c.name, c.required) for c in inputs.inputs] == [
        ("Income", True),
        ("Job", True),
        ("Age", True),
    ]
    assert [c.type.name for c in inputs.inputs] == ["double", "string", "long"]  # as inferred
