from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import ConfigError, LgbmParams, ThresholdSettings, load_settings, parse_settings
from tests.conftest import ROOT


def test_repo_params_load_with_types() -> None:
    settings = load_settings(ROOT / "params.yaml")
    assert settings.data.task == "binary"
    assert isinstance(settings.train.params.num_leaves, int)
    assert settings.root == ROOT


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = parse_settings({}, tmp_path)
    with pytest.raises(ValidationError):
        settings.base.seed = 1  # type: ignore[misc]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'train\.params\.num_leafs'"):
        parse_settings({"train": {"params": {"num_leafs": 3}}}, tmp_path)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        parse_settings({"trian": {}}, tmp_path)


def test_mistyped_value_names_key_and_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'train\.n_estimators'.*integer.*'many'"):
        parse_settings({"train": {"n_estimators": "many"}}, tmp_path)


def test_bad_task_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"key 'data\.task'.*'binary', 'multiclass' or 'regression'"
    ):
        parse_settings({"data": {"task": "ranking"}}, tmp_path)


def test_binary_needs_positive_label(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="positive_label is required"):
        parse_settings({"data": {"positive_label": None}}, tmp_path)


def test_split_must_leave_training_rows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 10%"):
        parse_settings({"split": {"test_size": 0.5, "valid_size": 0.45}}, tmp_path)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_relative_sqlite_uri_is_anchored_at_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = parse_settings({}, tmp_path)
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert settings.tracking_uri == "http://127.0.0.1:5001"


def test_params_hash_changes_with_params(tmp_path: Path) -> None:
    a = parse_settings({}, tmp_path)
    b = parse_settings({"base": {"seed": 7}}, tmp_path)
    assert a.section_hash() == parse_settings({}, tmp_path).section_hash()
    assert a.section_hash() != b.section_hash()


def test_train_params_while_tuning_is_an_error_that_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.params is set while tune.enabled is true"):
        parse_settings({"train": {"params": {"learning_rate": 0.1}}}, tmp_path)
    off = parse_settings(
        {"train": {"params": {"learning_rate": 0.1}}, "tune": {"enabled": False}}, tmp_path
    )
    assert off.train.params_set and off.train.params.learning_rate == 0.1
    unset = parse_settings({"train": {"params": None}}, tmp_path)
    assert not unset.train.params_set and unset.train.params == LgbmParams()


def test_binary_only_params_may_be_null_or_absent_for_regression(tmp_path: Path) -> None:
    s = parse_settings(
        {"data": {"task": "regression", "target": "y"}, "evaluate": {"threshold": None}},
        tmp_path,
    )
    assert s.evaluate.threshold == ThresholdSettings()


def test_tracking_uri_inside_the_project_is_recorded_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import project_relative_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # params.yaml's URI, not the env's

    s = parse_settings({"register": {"tracking_uri": "sqlite:///store/mlflow.db"}}, tmp_path)
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve()}/store/mlflow.db"
    assert s.tracking_uri_in_project == "sqlite:///store/mlflow.db"
    moved = tmp_path / "copy"
    assert project_relative_uri(f"sqlite:///{moved}/mlflow.db", moved) == "sqlite:///mlflow.db"
    assert project_relative_uri("sqlite:////elsewhere/m.db", moved) == "sqlite:////elsewhere/m.db"
    assert project_relative_uri("http://127.0.0.1:5000", moved) == "http://127.0.0.1:5000"
