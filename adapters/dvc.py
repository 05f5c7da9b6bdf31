"""Shared state with DVC: the flow asks DVC whether a stage is current and commits what it ran.

`dvc.lock` is the single record of what has been produced from which inputs. Before running a
stage the flow asks DVC for that stage's status; a current stage is skipped. After running it,
the flow commits the stage (hashes deps, params and outs into dvc.lock and the cache), exactly as
`dvc repro` would have, so `dvc status` is clean afterwards and `dvc repro` skips it too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
