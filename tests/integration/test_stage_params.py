"""dvc.yaml declares every params key a stage reads, and each declared key is read.

Every stage runs in this process on a small project (tuning and compression on) while each read
of a settings field is recorded with its dotted key: `settings.compress.max_metric_drop` and a
`cfg = settings.compress; cfg.max_metric_drop` alike give `compress.max_metric_drop`; a section
dumped whole (`train.params.model_dump()`) counts as a read of the section.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from adapters.dvc import read_stages, stage_params
from adapters.tracking import NO_RUN
from core.config import Settings, _Section, load_settings
from flows.training import STAGES, stage_order
from tests.integration.conftest import make_project

pytestmark = pytest.mark.integration

# Reads that are metadata, not inputs of a stage output: the whole params logged to MLflow and
# hashed into the version tags, and the project folder.
DUMPS = {"model_dump", "model_dump_json"}


class ReadRecorder:
    """Which settings fields are read, as dotted params keys (per stage)."""

    def __init__(self, settings: Settings) -> None:
        self.paths: dict[int, str] = {}
        self._index(settings, "")
        self.reads: set[str] = set()
        self.lock = threading.Lock()

    def _index(self, section: _Section, prefix: str) -> None:
        self.paths[id(section)] = prefix
        for name, field in type(section).model_fields.items():
            value = object.__getattribute__(section, name)
            if isinstance(value, _Section):
                self._index(value, f"{prefix}{field.alias or name}.")

    def record(self, section: _Section, name: str) -> None:
        prefix = self.paths.get(id(section))
        if prefix is None:
            return
        fields = type(section).model_fields
        if name in fields:
            value = object.__getattribute__(section, name)
            if not isinstance(value, _Section) and name != "root":
                with self.lock:
                    self.reads.add(f"{prefix}{fields[name].alias or name}")
        elif name in DUMPS and prefix:
            with self.lock:
                self.reads.add(prefix.rstrip("."))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ReadRecorder]]:
    active: list[ReadRecorder] = []
    plain = _Section.__getattribute__

    def getattribute(self: _Section, name: str) -> Any:
        if active and not name.startswith("_"):
            active[0].record(self, name)
        return plain(self, name)

    monkeypatch.setattr(_Section, "__getattribute__", getattribute)
    yield active


def _covered(read: str, declared: list[str]) -> bool:
    return any(read == d or read.startswith(d + ".") for d in declared)


def test_stages_read_exactly_the_params_dvc_yaml_declares(
    tmp_path: Path, credit_small, recorder, prefect_server, monkeypatch
) -> None:
    # Settings that take the branches reading more params: the importance fit of features,
    # tuning and compression, labelled files for ingest and drift.
    project = make_project(
        tmp_path,
        credit_small.iloc[:800],
        tune={"enabled": True, "n_trials": 2},
        compress={"enabled": True},
        features={"importance_threshold": 1e-9},
        suggest_suites=True,  # the committed model-input suite lists the columns the fit drops
    )
    credit_small.iloc[800:].to_csv(project.root / "data/labelled/new.csv", index=False)
    monkeypatch.chdir(project.root)
    settings = load_settings(project.root / "params.yaml")
    declared = {n: stage_params(s) for n, s in read_stages(project.root).items()}
    reads: dict[str, set[str]] = {}
    # register runs again at the end: with a champion in the registry it compares the two.
    # Trials run on the session's Prefect server, not a temporary one started in this process.
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        for name in [*stage_order(project.root), "register"]:
            rec = ReadRecorder(settings)
            recorder[:] = [rec]
            STAGES[name].fn(settings, NO_RUN)
            recorder.clear()
            reads[name] = reads.get(name, set()) | rec.reads
        # tune with tuning off reads what it then fits (train.params and its round bounds)
        off = settings.model_copy(
            update={"tune": settings.tune.model_copy(update={"enabled": False})}
        )
        rec = ReadRecorder(off)
        recorder[:] = [rec]
        STAGES["tune"].fn(off, NO_RUN)
        recorder.clear()
        reads["tune"] |= rec.reads
    undeclared = {
        name: sorted(r for r in got if not _covered(r, declared[name]))
        for name, got in reads.items()
    }
    unread = {
        name: [d for d in declared[name] if not any(_covered(r, [d]) for r in got)]
        for name, got in reads.items()
    }
    assert {k: v for k, v in undeclared.items() if v} == {}, "reads dvc.yaml does not declare"
    assert {k: v for k, v in unread.items() if v} == {}, "declared params the stage never read"
