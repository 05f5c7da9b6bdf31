"""Orchestration overhead on the default data: the same stages as plain calls, as the Prefect
flow, and as `dvc repro`.

In one throwaway project copy (git + DVC, its own MLflow store and PREFECT_HOME), each variant is a
fresh `python` process timed from start to exit, all stages forced, in the order of
flows/training.py
STAGES (so stages added later are included), best of `--repeat`:
  plain      one process: load params, open the MLflow parent run, call each stage's function
             (`STAGES[name].fn(settings, ctx)`), close the run. No Prefect, no DVC.
  flow       `python -m flows run --force` with Prefect's ephemeral API server (the default:
             Prefect starts a temporary server in-process when no PREFECT_API_URL is set).
  flow_api   the same against an already running `prefect server start` on 127.0.0.1
             (PREFECT_API_URL), the set-up for anyone running flows often.
  dvc        `dvc repro --force`: one `python -m flows stage NAME` process per stage.
Then the no-change paths: `python -m flows run` (must skip every stage) and `dvc repro`.
Also measured: the ephemeral server's start-up (`prefect_server_start_s`, a bare `@flow` that does
nothing, minus a Python process importing prefect).

    python bench/overhead.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _project import machine, make_project, stage_names

from core import CODE_PACKAGES

PLAIN = """
import sys, time
from pathlib import Path
from flows._runtime import configure_stage_logging, prepare_environment
prepare_environment(Path.cwd(), in_flow=False)
configure_stage_logging()
from flows.training import STAGES
from core.config import load_settings
from adapters.tracking import RunContext, finish_parent_run, start_parent_run
settings = load_settings("params.yaml")
run_id = start_parent_run(settings.tracking_uri, settings.register_.experiment,
                          settings.artifact_root, entry="plain", params=settings.flat())
ctx = RunContext(settings.tracking_uri, run_id, entry="plain")
for name in sys.argv[1].split(","):
    STAGES[name].fn(settings, ctx)
finish_parent_run(ctx, "FINISHED")
"""

BARE_FLOW = """
from prefect import flow
@flow
def nothing():
    return 1
nothing()
"""


def timed(project, *args: str, env: dict[str, str] | None = None) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    print(f"[overhead] {' '.join(args)[-60:]}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(
        list(args),
        cwd=project.root,
        env=env or project.env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(project, port: int) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        cwd=project.root,
        env={
            **project.env,
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise RuntimeError("prefect server did not become healthy within 120 s")


def skipped_all(output: str, names: list[str]) -> bool:
    """The run summary says no stage ran and lists every stage as skipped."""
    ran = [ln for ln in output.splitlines() if ln.strip().startswith("stages run:")]
    skipped = [ln for ln in output.splitlines() if ln.strip().startswith("stages skipped:")]
    return (
        bool(ran)
        and ran[-1].split(":", 1)[1].strip() == "none"
        and bool(skipped)
        and all(n in skipped[-1] for n in names)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    load_before = machine()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        # as flows/_runtime.py does for the flow: the bare flows below start the temporary server
        # too, and its 20 s default start-up timeout is not enough on a busy machine
        project.env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
        names = stage_names(project.root)
        times: dict[str, list[float]] = {k: [] for k in ("plain", "flow", "flow_api", "dvc")}
        port = free_port()
        api_env = {**project.env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
        t0 = time.perf_counter()
        server = start_server(project, port)
        server_start_s = time.perf_counter() - t0
        try:
            # Untimed warm-up, so the first variant does not pay alone for what every later one
            # reuses: byte-compiling the project copy's code and the first start of a temporary
            # Prefect server in this PREFECT_HOME (plain calls start one too, for the tune stage's
            # trial tasks).
            project.python("-m", "compileall", "-q", *CODE_PACKAGES)
            timed(project, py, "-c", BARE_FLOW)
            for _ in range(args.repeat):
                times["plain"].append(timed(project, py, "-c", PLAIN, ",".join(names))[0])
                times["flow"].append(timed(project, py, "-m", "flows", "run", "--force")[0])
                times["flow_api"].append(
                    timed(project, py, "-m", "flows", "run", "--force", env=api_env)[0]
                )
                times["dvc"].append(timed(project, py, "-m", "dvc", "repro", "--force")[0])
            noop_flow_s, out = timed(project, py, "-m", "flows", "run")
            noop_flow_api_s, out_api = timed(project, py, "-m", "flows", "run", env=api_env)
            noop_dvc_s, dvc_out = timed(project, py, "-m", "dvc", "repro")
            import_prefect_s = timed(project, py, "-c", "import prefect")[0]
            bare_flow_s = timed(project, py, "-c", BARE_FLOW)[0]
            bare_flow_api_s = timed(project, py, "-c", BARE_FLOW, env=api_env)[0]
        finally:
            server.terminate()
            server.wait(timeout=30)
    best = {k: min(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "bench": "overhead",
                "data": "default params.yaml data",
                "stages": names,
                "machine": load_before,
                "load_avg_1m_after": machine()["load_avg_1m"],
                "repeat": args.repeat,
                **{f"{k}_s": round(v, 2) for k, v in best.items()},
                "flow_over_plain": round(best["flow"] / best["plain"], 3),
                "flow_api_over_plain": round(best["flow_api"] / best["plain"], 3),
                "dvc_over_plain": round(best["dvc"] / best["plain"], 3),
                "no_change_flow_s": round(noop_flow_s, 2),
                "no_change_flow_api_s": round(noop_flow_api_s, 2),
                "no_change_flow_skipped_all": skipped_all(out, names)
                and skipped_all(out_api, names),
                "no_change_dvc_repro_s": round(noop_dvc_s, 2),
                "no_change_dvc_ran_nothing": "Running stage" not in dvc_out,
                "import_prefect_s": round(import_prefect_s, 2),
                "bare_flow_ephemeral_s": round(bare_flow_s, 2),
                "bare_flow_api_s": round(bare_flow_api_s, 2),
                "ephemeral_server_cost_s": round(bare_flow_s - bare_flow_api_s, 2),
                "prefect_server_start_s": round(server_start_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
