"""Command line: `python -m flows run | stage NAME`, in the project folder.

Every command reads the project's params.yaml, the file dvc.yaml's stages declare, so dvc.lock
records the values a run used: to try other values, edit params.yaml (or use `dvc exp run -S`).

python -m flows run              run the training flow (skips stages DVC says are current)
python -m flows run --force      rerun every stage
python -m flows stage train      run one stage; this is what dvc.yaml's `cmd` calls
python -m flows suggest-expectations [--force] [--only raw|model_input]
                                 profile data.source and write suggested GX suites
                                 (validate.raw_suite / validate.model_input_suite) to review
python -m flows compare 3 2      paired comparison of two registered versions (3 vs 2)
                                 on the current test split, with the gate's metric and rule
python -m flows score            score the complete files waiting in scoring.incoming (batch
                                 flow; exit 1 if a file was rejected)
python -m flows serve [--interval N] [--only training|scoring]
                                 serve the training and scoring deployments (schedule.*);
                                 --start-server also starts a local Prefect server
python -m flows reproduce --version N
                                 retrain registered version N from its recorded commit,
                                 params and data; report whether the metrics match
python -m flows push | pull      dvc push / pull to the default remote (remote.url)
python -m flows ui [--port N]    MLflow UI for the tracking store (one worker, no job runner)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flows._runtime import configure_stage_logging, prepare_environment, start_child_reaper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the training flow")
    run.add_argument("--force", action="store_true", help="rerun stages even if DVC says current")
    stage = sub.add_parser("stage", help="run one stage (called by dvc repro)")
    stage.add_argument("name")
    suggest = sub.add_parser(
        "suggest-expectations", help="write suggested Great Expectations suites for data.source"
    )
    suggest.add_argument("--force", action="store_true", help="overwrite existing suite files")
    suggest.add_argument("--only", choices=["raw", "model_input"], help="write one suite only")
    compare = sub.add_parser("compare", help="compare two registered versions on the test split")
    compare.add_argument("version_a", help="the version playing the candidate")
    compare.add_argument("version_b", help="the version playing the champion")
    sub.add_parser("score", help="batch-score the files in scoring.incoming")
    serve = sub.add_parser("serve", help="serve the training and scoring deployments")
    serve.add_argument(
        "--interval",
        type=float,
        default=None,
        help="run both every N seconds instead of their cron schedules",
    )
    serve.add_argument("--only", choices=["training", "scoring"], help="serve one deployment")
    serve.add_argument(
        "--start-server",
        action="store_true",
        help="start a local Prefect server on 127.0.0.1 first (UI included)",
    )
    serve.add_argument("--port", type=int, default=4200, help="port of that server")
    reproduce = sub.add_parser("reproduce", help="retrain a registered version and compare")
    reproduce.add_argument("--version", required=True, help="registered version number")
    reproduce.add_argument("--keep", action="store_true", help="keep the temporary worktree")
    ui = sub.add_parser("ui", help="MLflow UI for the tracking store (one worker)")
    ui.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    sub.add_parser("push", help="dvc push to the default remote (remote.url)")
    sub.add_parser("pull", help="dvc pull from the default remote (remote.url)")
    args = parser.parse_args(argv)

    params = Path("params.yaml").resolve()
    prepare_environment(params.parent, in_flow=args.command in {"run", "score", "serve"})
    if args.command in {"run", "stage", "score"}:  # they start servers and worker processes
        start_child_reaper()
    from core.config import ConfigError
    from core.errors import PipelineError

    try:
        if args.command == "stage":
            return run_stage(args.name, params)
        if args.command == "suggest-expectations":
            return run_suggest(params, args.only, args.force)
        if args.command == "compare":
            return run_compare(params, args.version_a, args.version_b)
        if args.command == "score":
            return run_score(params)
        if args.command == "serve":
            return run_serve(params, args.interval, args.start_server, args.port, args.only)
        if args.command == "reproduce":
            return run_reproduce(params, args.version, args.keep)
        if args.command == "ui":
            return run_ui(params, args.port)
        if args.command in {"push", "pull"}:
            return run_transfer(params, args.command)
        return run_flow(params, args.force)
    except (ConfigError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def quiet_user_errors() -> None:
    """In a flow: no tracebacks for errors written for the user, and our loggers at INFO
    (Prefect attaches its handlers; the level is ours to set)."""
    from flows._runtime import configure_flow_logging

    configure_flow_logging()


def run_stage(name: str, params: Path) -> int:
    configure_stage_logging()
    from adapters.dvc import report_restored, restore_missing_outputs
    from adapters.tracking import finish_parent_run, join_or_start_dvc_run
    from core.config import load_settings
    from core.io import ArtifactPaths
    from flows.training import STAGES
    from ops.preflight import preflight

    if name not in STAGES:
        print(f"error: unknown stage {name!r}; stages are: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    ctx = None
    try:
        settings = load_settings(params)
        # Fail fast on an unusable tracking store, and clean up after a crashed run, as the flow
        # does.
        preflight(settings)
        ctx = join_or_start_dvc_run(
            settings.tracking_uri,
            settings.register_.experiment,
            settings.artifact_root,
            ArtifactPaths(settings.root).run_pointer,
            params=settings.flat(),
        )
        STAGES[name].fn(settings, ctx)
    except BaseException:
        if ctx is not None:
            finish_parent_run(ctx, "FAILED")
        # `dvc repro` deleted this stage's outputs before running it: put the last good back.
        report_restored(name, *restore_missing_outputs(params.parent, name))
        raise
    finish_parent_run(ctx, "FINISHED")
    return 0


def run_suggest(params: Path, only: str | None, force: bool) -> int:
    from core.config import load_settings
    from ops.suggest import SUITES, suggest_suites

    settings = load_settings(params)
    for path in suggest_suites(settings, (only,) if only else SUITES, force):
        print(
            "wrote "
            + str(path.relative_to(settings.root) if path.is_relative_to(settings.root) else path)
        )
    print("Review the suites (ranges, allowed categories, missing-value shares), then commit them.")
    return 0


def run_compare(params: Path, version_a: str, version_b: str) -> int:
    configure_stage_logging()
    from core.config import load_settings
    from ops.compare import compare_versions
    from ops.preflight import check_tracking_store

    settings = load_settings(params)
    check_tracking_store(settings.tracking_uri)  # not MLflow's minutes of retries
    print("\n".join(compare_versions(settings, version_a, version_b)))
    return 0


def run_flow(params: Path, force: bool) -> int:
    from core.config import load_settings
    from flows.summary import print_summary
    from flows.training import training_flow
    from ops.preflight import check_tracking_store

    settings = load_settings(params)  # fail on bad params before Prefect starts
    check_tracking_store(settings.tracking_uri)  # and on an unusable tracking store
    quiet_user_errors()
    try:
        state = training_flow(params_path=str(params), force=force, return_state=True)
    except RuntimeError as exc:  # Prefect itself could not start (stage errors come back as state)
        print(
            f"error: Prefect could not start the flow run: {exc}\n"
            "hint: a busy machine can slow the temporary server's start; raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or point PREFECT_API_URL at a "
            "running server (`make serve`).",
            file=sys.stderr,
        )
        return 1
    if state.is_failed():
        try:
            state.result()
        except Exception as exc:  # the task's own error, already in Prefect's log
            print(f"error: training flow failed: {exc}", file=sys.stderr)
        return 1
    print_summary(settings, state.result())
    return 0


def run_score(params: Path) -> int:
    from core.config import load_settings
    from flows.scoring import scoring_flow
    from ops.preflight import check_tracking_store

    check_tracking_store(load_settings(params).tracking_uri)
    quiet_user_errors()
    state = scoring_flow(params_path=str(params), return_state=True)
    results = state.result(raise_on_failure=False)
    if not isinstance(results, list):  # failed before reporting on the files: the error
        try:
            state.result()
        except Exception as exc:
            print(f"error: scoring flow failed: {exc}", file=sys.stderr)
        return 1
    if not results:
        print("scoring: no files waiting")
    for r in results:
        print(score_line(r, params.parent))
    return 1 if state.is_failed() else 0


def score_line(r: dict[str, Any], root: Path) -> str:
    """One file of a scoring run, as the summary shows it."""
    import os

    def rel(path: str | None) -> str | None:
        return os.path.relpath(path, root) if path else path

    if r["status"] == "scored":
        quarantined = r["quarantined_rows"]
        return (
            f"scored   {rel(r['source'])}: {r['scored_rows']} of {r['rows']} rows -> "
            f"{rel(r['output'])}" + (f"; {quarantined} row(s) quarantined" if quarantined else "")
        )
    if r["status"] == "rejected":
        rows = "rows unknown" if r["rows"] is None else f"{r['rejected_rows']} rows"
        return f"rejected {rel(r['source'])} ({rows}) -> {rel(r['moved_to'])}:\n  {r['reason']}"
    return f"{r['status']}: {rel(r['source'])} ({r['reason']})"


def run_serve(
    params: Path, interval: float | None, start_server: bool, port: int, only: str | None
) -> int:
    import os

    from adapters.prefect import start_server as start_prefect
    from adapters.prefect import stop_process_group
    from core.config import load_settings
    from flows.deploy import serve_deployments

    settings = load_settings(params)
    server = None
    if start_server:
        server, api = start_prefect(Path(os.environ["PREFECT_HOME"]), port)
        os.environ["PREFECT_API_URL"] = api
        print(
            f"Prefect server on {api.removesuffix('/api')} (PREFECT_HOME "
            f"{os.environ['PREFECT_HOME']}); Ctrl-C stops both",
            flush=True,
        )
    try:
        serve_deployments(settings, params, interval, only)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            stop_process_group(server)
    return 0


def run_reproduce(params: Path, version: str, keep: bool) -> int:
    configure_stage_logging()
    from core.config import load_settings
    from ops.preflight import check_tracking_store
    from ops.reproduce import reproduce_version

    settings = load_settings(params)
    check_tracking_store(settings.tracking_uri)  # not MLflow's minutes of retries
    result = reproduce_version(settings, version, keep)
    print("\n".join(result.lines()))
    return 0 if result.matches else 1


def run_ui(params: Path, port: int) -> int:
    """Print where the training runs and the registry are, then become `mlflow ui`."""
    import os

    from adapters.tracking import configure_mlflow, ensure_experiment, training_runs_url, ui_command
    from core.config import load_settings

    settings = load_settings(params)
    uri = settings.tracking_uri
    remote = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if remote else f"http://127.0.0.1:{port}"
    configure_mlflow(uri)
    experiment = ensure_experiment(settings.register_.experiment, settings.artifact_root)
    print(
        f"MLflow UI on {base} (tracking store {uri})\n"
        f"  training runs: {training_runs_url(base, experiment)}\n"
        f"  registry:      {base}/#/models/{settings.register_.model_name}",
        flush=True,
    )
    if remote:
        return 0  # a tracking server serves its own UI
    argv, env = ui_command(uri, port)
    os.execve(argv[0], argv, env)
    return 0  # not reached


def run_transfer(params: Path, action: str) -> int:
    from core.config import load_settings
    from ops.remote import transfer

    print(transfer(load_settings(params), action))
    return 0


if __name__ == "__main__":
    sys.exit(main())
