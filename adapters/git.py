"""Git: which commit the working copy is at, what differs from it, and which branch it is on.

The pipeline's own outputs (DVC outs and dvc.lock) are excluded by the callers: a run from a
committed tree rewrites them, and they are what the commit reproduces, not what it is made of.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

UNKNOWN = "unknown"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def _pathspec(exclude: Sequence[str]) -> list[str]:
    return ["--", ".", *(f":(exclude){p}" for p in exclude)]


def git_commit(root: Path, exclude: Sequence[str] = ()) -> str:
    """HEAD's sha, with `-dirty` when tracked files other than `exclude` differ from it;
    `unknown` outside git."""
    try:
        out = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no", *_pathspec(exclude))
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN


def git_diff(root: Path, exclude: Sequence[str] = ()) -> str:
    """`git diff HEAD` of the tracked files other than `exclude` (empty when clean or outside
    git): what a `-dirty` version was trained with on top of its commit."""
    try:
        return _git(root, "diff", "--no-color", "--binary", "HEAD", *_pathspec(exclude))
    except (OSError, subprocess.CalledProcessError):
        return ""


def current_branch(root: Path) -> str | None:
    """The checked-out branch; None on a detached HEAD or outside git."""
    try:
        return _git(root, "symbolic-ref", "--quiet", "--short", "HEAD") or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _branch_exists(root: Path, name: str) -> bool:
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}")
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


def default_branch(root: Path) -> str | None:
    """The repository's main line: the remote's HEAD (origin/HEAD) when there is one, else
    `init.defaultBranch` or `main` / `master`, whichever exists; with a single branch, that
    one. None outside git or when it cannot be told."""
    try:
        ref = _git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
        if ref:
            return ref.split("/", 1)[1]
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        configured = _git(root, "config", "--get", "init.defaultBranch")
    except (OSError, subprocess.CalledProcessError):
        configured = ""
    for name in (configured, "main", "master"):
        if name and _branch_exists(root, name):
            return name
    try:
        branches = _git(root, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return branches[0] if len(branches) == 1 else None
