"""The default DVC remote: a local folder outside the repository (`remote.url`), so `dvc push` /
`dvc pull` work offline. It is written to .dvc/config.local (per machine, not committed); a team
points `remote.url` (or its own `dvc remote add -d`) at object storage instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.config import Settings
from core.errors import PipelineError


class RemoteError(PipelineError):
    """dvc push / pull failed."""


def remote_path(settings: Settings) -> str:
    """The remote URL with ~ expanded and a relative folder anchored at the project root."""
    url = settings.remote.url
    if "://" in url:
        return url
    path = Path(url).expanduser()
    return str(path if path.is_absolute() else (settings.root / path).resolve())


def _dvc(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=settings.root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RemoteError(f"dvc {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def ensure_remote(settings: Settings) -> str:
    """Configure remote.name -> remote.url as the default remote of this working copy."""
    url = remote_path(settings)
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    _dvc(settings, "remote", "add", "--local", "--default", "--force", settings.remote.name, url)
    return url


def transfer(settings: Settings, action: str) -> str:
    """`dvc push` or `dvc pull` against the configured remote; returns DVC's own summary."""
    if action not in {"push", "pull"}:
        raise ValueError(action)
    url = ensure_remote(settings)
    proc = _dvc(settings, action, "--remote", settings.remote.name)
    return f"{(proc.stdout or '').strip() or 'Everything is up to date.'}\n(remote {url})"
