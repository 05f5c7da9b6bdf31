"""Reproduce a registered version: same code, same params, same data -> same metrics.

Registered versions carry tags (tasks/register.py): `git_commit`, `params_hash`, `data_md5` (the
DVC hash of data/raw/raw.parquet, i.e. source + labelled files after ingest). `reproduce_version`
checks the commit out into a temporary git worktree, restores that raw table from the DVC cache
(`make pull` first if it is only on the remote), checks the params hash, runs the stages after
ingest up to the one writing metrics/test.json (their order and commands read from the
worktree's dvc.yaml) against a throwaway MLflow store, and compares every recorded `test_*`
metric of the version's run with the reproduced one.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.dvc import read_stages, stage_outputs
from core.config import Settings, load_settings
from core.errors import PipelineError, TrackingError
from core.io import ArtifactPaths, read_json

log = logging.getLogger(__name__)

TOLERANCE = 1e-9
RAW_OUT = "data/raw"
TEST_METRICS = "metrics/test.json"


class ReproduceError(PipelineError):
    """The version cannot be reproduced (missing commit, data or tags)."""


@dataclass
class Reproduction:
    version: str
    git_commit: str
    stages: list[str]
    compared: dict[str, tuple[float, float]] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return bool(self.compared) and not self.mismatched

    def lines(self) -> list[str]:
        out = [
            f"version {self.version}: commit {self.git_commit[:12]}, stages "
            f"{', '.join(self.stages)}"
        ]
        for key, (rec, new) in sorted(self.compared.items()):
            mark = "MISMATCH" if key in self.mismatched else "ok"
            out.append(f"  {key:<24} recorded {rec:.12g}  reproduced {new:.12g}  {mark}")
        out.append(
            f"result: {'MATCH' if self.matches else 'MISMATCH'} ({len(self.compared)} "
            f"metrics, tolerance {TOLERANCE:g})"
        )
        return out


def stages_to_rerun(dvc_yaml: Path) -> list[tuple[str, str]]:
    """(name, cmd) of the stages after the one producing data/raw, up to the one writing
    metrics/test.json, in dvc.yaml order (which is the pipeline's order)."""
    chosen: list[tuple[str, str]] = []
    started = False
    for name, spec in read_stages(dvc_yaml.parent).items():
        outs = stage_outputs(spec)
        if not started:
            started = RAW_OUT in outs
            continue
        chosen.append((name, spec["cmd"]))
        if TEST_METRICS in outs:
            return chosen
    raise ReproduceError(f"{dvc_yaml}: no stage after {RAW_OUT} writes {TEST_METRICS}")


STAGE_CMD = ("python", "-m", "flows", "stage")


def batched_commands(stages: list[tuple[str, str]]) -> list[tuple[list[str], list[str]]]:
    """Commands running the stages in order. Consecutive `python -m flows stage NAME` commands
    share one Python process (the CLI's `stage` entry called once per name, which also keeps one
    MLflow run); any other command runs as written."""
    out: list[tuple[list[str], list[str]]] = []
    batch: list[str] = []

    def flush() -> None:
        if batch:
            code = (
                "import sys\nfrom flows.__main__ import main\n"
                f"for name in {batch!r}:\n"
                "    code = main(['stage', name])\n"
                "    if code:\n        sys.exit(code)\n"
            )
            out.append((list(batch), [sys.executable, "-c", code]))
            batch.clear()

    for name, cmd in stages:
        words = shlex.split(cmd)
        if tuple(words[:4]) == STAGE_CMD and len(words) == 5:
            batch.append(words[4])
            continue
        flush()
        out.append(([name], words))
    flush()
    return out


def cached_file(root: Path, md5: str) -> Path | None:
    for cache in (root / ".dvc" / "cache" / "files" / "md5", root / ".dvc" / "cache"):
        p = cache / md5[:2] / md5[2:]
        if p.is_file():
            return p
    return None


def recorded_metrics(client: Any, run_id: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {k: float(v) for k, v in metrics.items() if k.startswith("test_")}


def reproduced_metrics(test_json: Path) -> dict[str, float]:
    data = read_json(test_json)
    out = {f"test_{k}": float(v) for k, v in data.get("test", {}).items()}
    for k, ci in (data.get("ci") or {}).items():
        for side in ("low", "high"):
            if isinstance(ci, dict) and side in ci:
                out[f"test_{k}_ci_{side}"] = float(ci[side])
    return out


def compare_metrics(
    recorded: dict[str, float], reproduced: dict[str, float], tol: float = TOLERANCE
) -> tuple[dict[str, tuple[float, float]], list[str]]:
    shared = sorted(set(recorded) & set(reproduced))
    compared = {k: (recorded[k], reproduced[k]) for k in shared}
    bad = [
        k
        for k in shared
        if not (
            math.isclose(recorded[k], reproduced[k], rel_tol=0, abs_tol=tol)
            or (math.isnan(recorded[k]) and math.isnan(reproduced[k]))
        )
    ]
    return compared, bad


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReproduceError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def reproduce_version(settings: Settings, version: str, keep: bool = False) -> Reproduction:
    import mlflow

    from adapters.tracking import configure_mlflow

    configure_mlflow(settings.tracking_uri)
    client = mlflow.MlflowClient()
    name = settings.register_.model_name
    try:
        mv = client.get_model_version(name, version)
    except Exception as exc:
        raise TrackingError(
            f"version {version} of {name!r} not found in {settings.tracking_uri}: "
            f"{str(exc).splitlines()[0][:200]}"
        ) from None
    tags = dict(mv.tags)
    missing = [t for t in ("git_commit", "data_md5", "params_hash") if not tags.get(t)]
    if missing:
        raise ReproduceError(f"version {version} lacks the tag(s) {missing} needed to reproduce it")
    commit = tags["git_commit"]
    if commit.endswith("-dirty") or commit == "unknown":
        raise ReproduceError(
            f"version {version} was trained from uncommitted code ({commit}); "
            "its code cannot be restored from git"
        )
    raw = cached_file(settings.root, tags["data_md5"])
    if raw is None:
        raise ReproduceError(
            f"the raw data of version {version} (md5 {tags['data_md5']}) is not "
            "in the DVC cache; run `make pull` (dvc pull) first"
        )
    work = Path(tempfile.mkdtemp(prefix=f"reproduce-v{version}-"))
    tree = work / "tree"
    _git(settings.root, "worktree", "add", "--detach", str(tree), commit)
    try:
        wt_settings = load_settings(tree / "params.yaml")
        if wt_settings.section_hash() != tags["params_hash"]:
            raise ReproduceError(
                f"params.yaml at {commit[:12]} hashes to "
                f"{wt_settings.section_hash()}, version {version} recorded "
                f"{tags['params_hash']} (trained with uncommitted params?)"
            )
        raw_dest = ArtifactPaths(tree).raw
        raw_dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, raw_dest)
        stages = stages_to_rerun(tree / "dvc.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env.update(
            {
                "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                "PYTHONPATH": str(tree),
                "PREFECT_HOME": str(work / "prefect"),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        for names, argv in batched_commands(stages):
            log.info("reproduce: %s", ", ".join(names))
            proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
                raise ReproduceError(
                    f"stage(s) {', '.join(names)} failed while reproducing "
                    f"version {version}:\n{tail}"
                )
        compared, bad = compare_metrics(
            recorded_metrics(client, str(mv.run_id)), reproduced_metrics(tree / TEST_METRICS)
        )
        return Reproduction(str(version), commit, [s for s, _ in stages], compared, bad)
    finally:
        if not keep:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)],
                cwd=settings.root,
                capture_output=True,
            )
            shutil.rmtree(work, ignore_errors=True)
