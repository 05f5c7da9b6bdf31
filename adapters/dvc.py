"""Shared state with DVC: the flow asks DVC whether a stage is current and commits what it ran.

`dvc.lock` is the single record of what has been produced from which inputs. Before running a
stage the flow asks DVC for that stage's status; a current stage is skipped. After running it,
the flow commits the stage (hashes deps, params and outs into dvc.lock and the cache), exactly as
`dvc repro` would have, so `dvc status` is clean afterwards and `dvc repro` skips it too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

# Set by `dvc exp run` (DVC 3) in the environment of the stages it runs; plain `dvc repro` sets
# neither.
EXPERIMENT_ENV = ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")


def read_stages(root: Path) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages in file order (the pipeline's order); empty without dvc.yaml."""
    path = root / "dvc.yaml"
    if not path.is_file():
        return {}
    return dict((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages") or {})


def _names(entries: list[Any]) -> Iterator[str]:
    for entry in entries or []:
        yield next(iter(entry)) if isinstance(entry, dict) else str(entry)


def stage_outputs(spec: Mapping[str, Any]) -> list[str]:
    """The paths a stage writes (outs, metrics and plots), as dvc.yaml spells them."""
    return [p for key in ("outs", "metrics", "plots") for p in _names(spec.get(key, []))]


def stage_params(spec: Mapping[str, Any]) -> list[str]:
    """The params.yaml keys a stage declares (dotted)."""
    return [p for p in _names(spec.get("params", [])) if not p.endswith((".yaml", ".json"))]


def pipeline_outputs(root: Path) -> list[str]:
    """Every path the pipeline writes, and dvc.lock: what a run from a committed tree rewrites."""
    outs = [p for spec in read_stages(root).values() for p in stage_outputs(spec)]
    return [*outs, "dvc.lock"] if outs else []


def missing_params(root: Path, raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """Declared params keys absent from the params mapping -> the stages declaring them. DVC
    stops a run at the first such stage (MissingParamsError); found here, before any runs."""
    missing: dict[str, list[str]] = {}
    for name, spec in read_stages(root).items():
        for key in stage_params(spec):
            node: Any = raw
            for part in key.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    missing.setdefault(key, []).append(name)
                    break
                node = node[part]
    return missing


def experiment_name(env: Mapping[str, str] | None = None) -> str | None:
    """The name of the `dvc exp run` experiment this process belongs to, or None."""
    env = os.environ if env is None else env
    if not any(env.get(k) for k in EXPERIMENT_ENV):
        return None
    return env.get("DVC_EXP_NAME") or "unnamed"


class DvcState:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.enabled = (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()
        self._repo = None

    @property
    def repo(self) -> Any:
        if self._repo is None:
            from dvc.repo import Repo

            self._repo = Repo(str(self.root))
            logging.getLogger("dvc").setLevel(logging.WARNING)  # lock-file chatter
        return self._repo

    def is_current(self, stage: str) -> bool:
        """True when DVC would skip this stage (deps, params and outs unchanged)."""
        if not self.enabled:
            return False
        return not self.repo.status(targets=[stage])

    def commit(self, stage: str) -> None:
        if self.enabled:
            self.repo.commit(stage, force=True)

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None
