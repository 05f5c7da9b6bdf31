"""The deployments `python -m flows serve` registers, and the new params sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, parse_settings
from tests.conftest import make_settings


def test_deployments_have_cron_schedules_and_params(tmp_path: Path) -> None:
    from flows.deploy import SCORING_DEPLOYMENT, TRAINING_DEPLOYMENT, build_deployments

    settings = make_settings(
        tmp_path, schedule={"training_cron": "30 1 * * *", "timezone": "Europe/Paris"}
    )
    params = tmp_path / "params.yaml"
    deps = {d.name: d for d in build_deployments(settings, params)}
    assert set(deps) == {TRAINING_DEPLOYMENT, SCORING_DEPLOYMENT}
    train = deps[TRAINING_DEPLOYMENT].schedules[0].schedule
    assert train.cron == "30 1 * * *" and train.timezone == "Europe/Paris"
    assert deps[SCORING_DEPLOYMENT].schedules[0].schedule.cron == "*/15 * * * *"
    assert deps[TRAINING_DEPLOYMENT].parameters == {"params_path": str(params)}
    assert deps[TRAINING_DEPLOYMENT].entrypoint == "flows.training.training_flow"
    only = build_deployments(settings, params, interval_s=30, only="scoring")
    assert [d.name for d in only] == [SCORING_DEPLOYMENT]
    assert only[0].schedules[0].schedule.interval.total_seconds() == 30


def test_scoring_model_uri_defaults_to_champion_and_accepts_any(tmp_path: Path) -> None:
    assert make_settings(tmp_path).scoring_model_uri == "models:/credit-scoring@champion"
    compact = make_settings(
        tmp_path, scoring={"model_uri": "models:/credit-scoring-compact@champion"}
    )
    assert compact.scoring_model_uri == "models:/credit-scoring-compact@champion"
    with pytest.raises(ConfigError, match="retrain.drift_threshold"):
        parse_settings({"retrain": {"drift_threshold": -1}}, tmp_path)
    with pytest.raises(ConfigError, match="unknown key 'scoring.folder'"):
        parse_settings({"scoring": {"folder": "x"}}, tmp_path)


def test_prefect_yaml_parses_and_matches_the_served_deployments() -> None:
    import yaml
    from prefect.cli.deploy._models import PrefectYamlModel

    from core.config import Settings
    from flows.deploy import SCORING_DEPLOYMENT, TRAINING_DEPLOYMENT
    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)
    by_name = {d.name: d for d in model.deployments}
    assert set(by_name) == {TRAINING_DEPLOYMENT, SCORING_DEPLOYMENT}
    defaults = Settings().schedule
    assert by_name[TRAINING_DEPLOYMENT].schedules[0].cron == defaults.training_cron
    assert by_name[SCORING_DEPLOYMENT].schedules[0].cron == defaults.scoring_cron
    for d in model.deployments:
        path, _, func = d.entrypoint.partition(":")
        assert func in (ROOT / path).read_text() and d.work_pool.name
