"""Shared state with DVC: the flow asks DVC whether a stage is current and commits what it ran.

`dvc.lock` is the single record of what has been produced from which inputs. Before running a
stage the flow asks DVC for that stage's status; a current stage is skipped. After running it,
the flow commits the stage (hashes deps, params and outs into dvc.lock and the cache), exactly as
`dvc repro` would have, so `dvc status` is clean afterwards and `dvc repro` skips it too.

When a stage fails, either entry point puts back the outputs it recorded in dvc.lock that are
missing (`restore_missing_outputs`): the last good outputs stay in place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
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


# ------------------------------------------------------------------------------------------------
# Putting back a failed stage's last good outputs
# ------------------------------------------------------------------------------------------------
def locked_outputs(root: Path, stage: str, lock_text: str | None = None) -> dict[str, str]:
    """{path: md5} of the outputs dvc.lock (or the given text of one) records for a stage."""
    import yaml

    if lock_text is None:
        lock = root / "dvc.lock"
        lock_text = lock.read_text(encoding="utf-8") if lock.is_file() else ""
    entry = ((yaml.safe_load(lock_text) or {}).get("stages") or {}).get(stage) or {}
    return {o["path"]: o["md5"] for o in entry.get("outs", []) if "md5" in o}


def _cache_object(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def _restore_from_cache(cache: Path, md5: str, dest: Path) -> bool:
    """Copy an output back from the DVC cache (a file, or a folder by its `.dir` manifest)."""
    from core.io import atomic_dir, atomic_path

    obj = _cache_object(cache, md5)
    if not obj.is_file():
        return False
    if not md5.endswith(".dir"):
        with atomic_path(dest) as tmp:
            shutil.copyfile(obj, tmp)
        return True
    entries = json.loads(obj.read_text(encoding="utf-8"))
    if not all(_cache_object(cache, e["md5"]).is_file() for e in entries):
        return False
    with atomic_dir(dest) as tmp:
        for e in entries:
            target = tmp / e["relpath"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_cache_object(cache, e["md5"]), target)
    return True


def _git(root: Path, *args: str) -> bytes | None:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


def _restore_from_git(root: Path, stage: str, path: str, md5: str) -> bool:
    """Outputs DVC does not cache (`cache: false`) live in git: take the committed copy when the
    committed dvc.lock records the same hash for it."""
    from core.io import atomic_dir, atomic_path

    head_lock = _git(root, "show", "HEAD:dvc.lock")
    if head_lock is None or locked_outputs(root, stage, head_lock.decode()).get(path) != md5:
        return False
    if not md5.endswith(".dir"):
        blob = _git(root, "show", f"HEAD:{path}")
        if blob is None:
            return False
        with atomic_path(root / path) as tmp:
            tmp.write_bytes(blob)
        return True
    names = _git(root, "ls-tree", "-r", "--name-only", "HEAD", "--", path)
    if not names:
        return False
    with atomic_dir(root / path) as tmp:
        for name in names.decode().splitlines():
            blob = _git(root, "show", f"HEAD:{name}")
            if blob is None:
                return False
            target = tmp / Path(name).relative_to(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
    return True


def restore_missing_outputs(root: Path, stage: str) -> tuple[list[str], list[str]]:
    """After a stage failed: put back each output dvc.lock records that is now missing.

    `dvc repro` deletes a stage's outputs before running it, so a stage that fails would leave
    nothing; its last good outputs are in the DVC cache (cached outputs) or in git (`cache:
    false`). Outputs still present are left alone: every write is atomic, so they are whole.
    Returns (restored, not restorable) paths."""
    restored: list[str] = []
    lost: list[str] = []
    outs = locked_outputs(root, stage)
    if not outs:
        return restored, lost
    from dvc.repo import Repo

    repo = Repo(str(root))  # no lock taken: `dvc repro` releases its lock while a stage runs
    try:
        cache = Path(repo.cache.local.path)
    finally:
        repo.close()
    for path, md5 in outs.items():
        dest = root / path
        if dest.exists():
            continue
        try:
            ok = _restore_from_cache(cache, md5, dest) or _restore_from_git(root, stage, path, md5)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("could not restore %s: %s", path, exc)
            ok = False
        (restored if ok else lost).append(path)
    return restored, lost


def report_restored(stage: str, restored: list[str], lost: list[str]) -> None:
    if restored:
        log.warning(
            "%s failed: its last good outputs (dvc.lock) are back in place: %s",
            stage,
            ", ".join(restored),
        )
    if lost:
        log.warning(
            "%s failed: not in the DVC cache or git, so not restored: %s "
            "(`dvc pull %s` fetches them from the remote)",
            stage,
            ", ".join(lost),
            stage,
        )
