"""register: log the whole inference pipeline to MLflow, gate it, register it, move aliases.

1. The candidate's test metrics must pass the absolute criteria (gate.criteria); if not, the model
   is logged to the run but not registered (and the run fails only if gate.fail_on_gate).
2. Otherwise it becomes a new version. Under the registry promotion lock (adapters/registry.py)
   the current @champion is scored on the same test rows, the paired bootstrap interval of the
   difference is checked against gate.rule, and the version gets @champion or @challenger.
   Both sides are *evaluation models*: the candidate's twin fitted without the test split, and
   the champion's own twin logged with it, so neither has learnt from the rows it is judged on
   (the shipped models learnt from every labelled row). A champion without one is sent to
   manual review.
   A champion whose contract (task, target, positive label, classes, output columns; version
   tags written here) differs from the candidate's is not scored: the candidate waits as
   @challenger for manual review.
3. The decision, both scores, the interval and the rule are `gate.*` tags on the version; the model
   card is its description and a run artifact. Both are written before the alias moves, and the
   version is marked complete (`registration.complete`) last: a version its owner left
   unfinished is removed by the next run (ops/preflight.py). The compact model of `compress` is
   registered next to it (tasks/register/compact.py) and its aliases follow the full model's.

Registry hiccups are retried inside the stage (`with_retries`), so `dvc repro` and the Prefect
flow retry the same way; a gate verdict is never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from prefect import task

from adapters.dvc import experiment_name, pipeline_outputs
from adapters.git import current_branch, default_branch, git_commit, git_diff
from adapters.registry import (
    REGISTRATION_COMPLETE,
    LockTimeout,
    RegistryLock,
    create_version,
    current_champion,
    input_signature,
    log_pyfunc_model,
    pip_requirements,
    predict_evaluation_model,
    registered_python_model,
)
from adapters.tracking import (
    RunContext,
    configure_mlflow,
    load_record_of_run,
    log_record_to_run,
    resumed_run,
)
from core.config import Settings, project_relative_uri
from core.errors import PipelineError, TrackingError
from core.io import (
    ArtifactPaths,
    file_md5,
    load_joblib,
    read_json,
    read_parquet,
    write_json,
    write_text,
)
from inference.model import InferenceModel, encode_target
from tasks.evaluate.metrics import run_metrics
from tasks.register.card import as_description, model_params, render_model_card
from tasks.register.compact import register_compact
from tasks.register.gate import (
    CONTRACT_KEYS,
    Decision,
    candidate_predictions,
    check_absolute,
    decide,
    hold_back,
    incompatibilities,
    model_contract,
    paired_comparison,
    predictions_from_output,
    promotion_blocker,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
ATTEMPTS, RETRY_DELAY_S = 3, 2.0
# A version trained from a dirty tree: `git diff HEAD` of its code and params, in its run.
GIT_DIFF_ARTIFACT = "lineage/git_diff.patch"


class GateError(PipelineError):
    """The candidate failed the absolute criteria and params.yaml says to fail the run."""


def with_retries(
    fn: Callable[[], T], what: str, attempts: int = ATTEMPTS, delay_s: float = RETRY_DELAY_S
) -> T:
    """Call fn, retrying registry hiccups (TrackingError) a few times; other errors, such as a
    gate verdict, go straight through."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TrackingError as exc:
            if attempt == attempts:
                raise
            log.warning(
                "%s failed (attempt %d of %d), retrying in %.0f s: %s",
                what,
                attempt,
                attempts,
                delay_s,
                exc,
            )
            time.sleep(delay_s)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Lineage:
    """Where the candidate comes from: the commit (`-dirty` when code or params differ from it;
    the pipeline's own outputs do not count), the diff on top of it, branch and experiment."""

    commit: str
    diff: str
    branch: str | None
    default_branch: str | None
    experiment: str | None

    def promotion_blocker(self, settings: Settings) -> str | None:
        return promotion_blocker(
            settings.gate.allow_promotion, self.experiment, self.branch, self.default_branch
        )


def read_lineage(root: Path) -> Lineage:
    outputs = pipeline_outputs(root)
    commit = git_commit(root, exclude=outputs)
    return Lineage(
        commit,
        git_diff(root, exclude=outputs) if commit.endswith("-dirty") else "",
        current_branch(root),
        default_branch(root),
        experiment_name(),
    )


def version_tags(
    settings: Settings, ctx: RunContext, raw_path: Path, raw_rows: int, lineage: Lineage
) -> dict[str, str]:
    return {
        "git_commit": lineage.commit,
        "git_branch": lineage.branch or "",
        "dvc_experiment": lineage.experiment or "",
        "data_md5": file_md5(raw_path),
        "params_hash": settings.section_hash(),
        "dataset": settings.data.source,
        "dataset_rows": str(raw_rows),
        "task": settings.data.task,
        "entry_point": ctx.entry,
        "prefect_flow_run_id": ctx.flow_run_id or "",
        # Rows are assigned to splits by a hash of their content (tasks/preprocess.py).
        "split_scheme": "row_hash",
        "evaluation_model": "true",
    }


def candidate_contract(model: InferenceModel, test: pd.DataFrame) -> dict[str, str]:
    """What the candidate's output means, as the version tags the gate compares."""
    columns = list(model.predict_frame(test.head(5)).columns)
    return model_contract(model.task, model.target, list(model.classes), columns)


def champion_contract(name: str, champion: Any, rows: pd.DataFrame) -> dict[str, str]:
    """The champion's contract: from its version tags, or, for a version registered before
    versions recorded it, from the model itself (a key it cannot tell stays absent)."""
    tags = dict(champion.tags)
    if all(k in tags for k in CONTRACT_KEYS):
        return {k: tags[k] for k in CONTRACT_KEYS}
    try:
        inner = registered_python_model(name, str(champion.version))
        columns = list(inner.predict_frame(rows.head(5)).columns)
        return model_contract(inner.task, inner.target, list(inner.classes), columns)
    except Exception as exc:  # unreadable: the missing keys make it incompatible, with the reason
        log.warning(
            "register: champion v%s records no contract and its model cannot be read: %s",
            champion.version,
            _short(exc),
        )
        return {k: tags[k] for k in CONTRACT_KEYS if k in tags}


def log_inference_model(model: InferenceModel, paths: ArtifactPaths, example: pd.DataFrame) -> Any:
    """Log the full model as a pyfunc (the inference package is its code), with its evaluation
    twin as a second artifact; return its ModelInfo."""
    signature = input_signature(example, model.predict_frame(example))
    return log_pyfunc_model(
        "model",
        "pyfunc.py",
        {"inference_model": str(paths.model), "evaluation_model": str(paths.evaluation_model)},
        signature,
        example,
        pip_requirements(),
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def gate_against_champion(
    client: Any, settings: Settings, model: InferenceModel, test: pd.DataFrame, failures: list[str]
) -> Decision:
    """Read @champion, score it on the candidate's test rows and decide (call under the lock)."""
    gate, name = settings.gate, settings.register_.model_name
    champion = current_champion(client, name)
    if failures or champion is None:
        return decide(
            failures, gate.rule, gate.margin, None if champion is None else str(champion.version)
        )
    rows = test.drop(columns=[settings.data.target])
    differences = incompatibilities(
        champion_contract(name, champion, rows), candidate_contract(model, test)
    )
    if differences:
        log.warning(
            "register: champion v%s is incompatible with the candidate: %s",
            champion.version,
            "; ".join(differences),
        )
        return decide([], gate.rule, gate.margin, str(champion.version), incompatible=differences)
    y, _ = encode_target(test[settings.data.target], model.task, classes=model.classes or None)
    try:
        out = predict_evaluation_model(name, str(champion.version), rows)
        if out is None:
            raise ValueError(
                "it carries no evaluation model (registered before models were refit on every "
                "labelled row), so it may have learnt from today's test rows"
            )
        reference = predictions_from_output(out, model.task, model.classes)
    except Exception as exc:  # any failure to score is a reason for a human to look
        log.warning(
            "register: champion v%s cannot score the current test split: %s",
            champion.version,
            _short(exc),
        )
        return decide([], gate.rule, gate.margin, str(champion.version), champion_error=_short(exc))
    comparison = paired_comparison(settings, y, candidate_predictions(model, test), reference)
    return decide([], gate.rule, gate.margin, str(champion.version), comparison)


def promote(
    client: Any,
    settings: Settings,
    version: str,
    model: InferenceModel,
    test: pd.DataFrame,
    describe: Callable[[Decision], str],
    blocker: str | None = None,
) -> Decision:
    """Decide and move the alias as one critical section under the registry lock; `blocker`
    (an experiment's run) holds a promote verdict back as @challenger.

    The version's gate tags and its description (`describe(decision)`, the model card) are
    written before its alias, so whoever sees the alias sees why.
    """
    gate, name = settings.gate, settings.register_.model_name
    lock = RegistryLock(client, name, ttl_s=gate.lock_ttl_s, timeout_s=gate.lock_timeout_s)
    with lock.held():
        decision = hold_back(gate_against_champion(client, settings, model, test, []), blocker)
        for key, value in decision.tags().items():
            client.set_model_version_tag(name, version, key, value)
        client.update_model_version(name, version, description=describe(decision))
        if not lock.still_held():  # fencing: our lock expired and may be someone else's now
            raise LockTimeout(
                "the registry lock expired before the alias could be moved; "
                "no alias was changed (raise gate.lock_ttl_s)"
            )
        client.set_registered_model_alias(name, decision.alias, version)
        got = client.get_model_version_by_alias(name, decision.alias).version
        if str(got) != str(version):
            raise TrackingError(
                f"alias @{decision.alias} points to v{got} right after this run "
                f"set it to v{version}: someone moved it without the lock"
            )
        client.set_model_version_tag(name, version, REGISTRATION_COMPLETE, "true")
    if lock.waited_s > 1:
        log.info("register: waited %.1fs for another run's promotion to finish", lock.waited_s)
    return decision


def learned_from(paths: ArtifactPaths) -> str:
    """Which rows the shipped model and the evaluated model learned from (train's summary)."""
    train = read_json(paths.train_metrics)
    shipped, evaluated = train.get("shipped_model_rows"), train.get("evaluation_model_rows")
    if shipped is None:
        return "the train split"
    return (
        f"the shipped model: all {shipped} labelled rows (train, valid and test splits); "
        f"the metrics and the gate: its twin fitted on the {evaluated} train-split rows only, "
        f"scored on test-split rows (assigned by a hash of each row, so they stay test rows "
        f"when new labelled files are appended); chosen by CV: {train.get('winner', '?')}"
    )


def build_card(
    settings: Settings,
    model: InferenceModel,
    version: str | None,
    decision: Decision,
    tags: dict[str, str],
    paths: ArtifactPaths,
) -> str:
    test = read_json(paths.test_metrics)
    report = read_json(paths.evaluation_report) if paths.evaluation_report.is_file() else {}
    validation = read_json(paths.validation_report)
    return render_model_card(
        model_name=settings.register_.model_name,
        version=version,
        task=model.task,
        source=settings.data.source,
        target=settings.data.target,
        rows=int(validation.get("kept_rows", validation.get("raw_rows", 0))),
        raw_rows=int(validation.get("raw_rows", 0)),
        duplicate_rows=int(validation.get("duplicate_rows", 0)),
        quarantined_rows=int(validation.get("quarantined_rows", 0)),
        learned_from=learned_from(paths),
        data_md5=tags["data_md5"],
        class_balance=validation.get("target_levels") if model.task != "regression" else None,
        params=model_params(model),
        test=test,
        cv=test.get("cv"),
        threshold=model.threshold if model.task == "binary" else None,
        threshold_objective=report.get("threshold_objective"),
        top_features=report.get("top_features_gain", [])[: settings.evaluate.top_features],
        decision=decision,
        git_commit=tags["git_commit"],
    )


@dataclass
class Registration:
    """What one register attempt produced (written to models/registration.json)."""

    decision: Decision
    version: str | None
    run_id: str | None
    compact: dict[str, Any] | None


def register_candidate(
    settings: Settings,
    ctx: RunContext,
    model: InferenceModel,
    test: pd.DataFrame,
    failures: list[str],
    tags: dict[str, str],
    lineage: Lineage,
) -> Registration:
    """Log the model into the parent run, register and gate it, register the compact model,
    write the card; one attempt (with_retries repeats it on a registry hiccup)."""
    import mlflow

    paths = ArtifactPaths(settings.root)
    name = settings.register_.model_name
    client = mlflow.MlflowClient()
    version: str | None = None
    compact: dict[str, Any] | None = None
    try:
        with resumed_run(ctx) as run:
            run_id = run.info.run_id if run else None
            example = test[model.feature_columns].head(5)
            info = log_inference_model(load_joblib(paths.model), paths, example)
            if lineage.diff:
                mlflow.log_text(lineage.diff, GIT_DIFF_ARTIFACT)
            if failures:
                decision = gate_against_champion(client, settings, model, test, failures)
            else:
                version = str(create_version(client, name, info, run_id, tags).version)
                created = version
                describe = lambda d: as_description(  # noqa: E731
                    build_card(settings, model, created, d, tags, paths)
                )
                blocker = lineage.promotion_blocker(settings)
                decision = promote(client, settings, version, model, test, describe, blocker)
                compact = register_compact(settings, client, version, run_id, tags)
            card = build_card(settings, model, version, decision, tags, paths)
            write_text(card, paths.model_card)
            mlflow.log_artifact(str(paths.model_card), artifact_path="evaluation")
            # The metrics the version was judged on, in the run that registers it, also when
            # evaluate was current and did not run in it (e.g. a fresh clone): reproduce reads them.
            mlflow.log_metrics(run_metrics(read_json(paths.test_metrics)))
            mlflow.set_tags(
                {
                    **decision.tags(),
                    "registered_model": name,
                    "registered_version": version or "none",
                    "registered_alias": decision.alias or "none",
                }
            )
    except (TrackingError, LockTimeout) as exc:
        discard_unfinished(client, name, version)
        raise TrackingError(str(exc)) from None
    except Exception as exc:
        discard_unfinished(client, name, version)
        raise TrackingError(
            f"registering {name!r} in {settings.tracking_uri} failed: {exc}"
        ) from None
    return Registration(decision, version, run_id, compact)


def discard_unfinished(client: Any, name: str, version: str | None) -> None:
    """After a failed attempt: delete the version it created unless it was completed (a retry
    registers a new one). Best effort: what remains, the next run's preflight removes."""
    if version is None:
        return
    try:
        mv = client.get_model_version(name, version)
        if mv.tags.get(REGISTRATION_COMPLETE) == "true":
            return
        if mv.aliases:  # its alias moved: tags and description were written before it
            client.set_model_version_tag(name, version, REGISTRATION_COMPLETE, "true")
            return
        client.delete_model_version(name, version)
        log.warning("register: removed v%s of %s, left unfinished by the failure", version, name)
    except Exception as exc:
        log.debug("register: could not remove unfinished v%s: %s", version, exc)


@task(name="register")
def register_stage(settings: Settings, ctx: RunContext) -> Path:
    paths = ArtifactPaths(settings.root)
    # The gate and the card judge the evaluation model (never saw the test split); the model
    # that ships (models/model.joblib) is the same recipe fitted on every labelled row.
    model: InferenceModel = load_joblib(paths.evaluation_model)
    test = read_parquet(paths.split("test"))
    raw_rows = read_json(paths.validation_report)["raw_rows"]
    failures = check_absolute(read_json(paths.test_metrics)["test"], settings.gate.criteria)
    name = settings.register_.model_name
    configure_mlflow(settings.tracking_uri)
    lineage = read_lineage(settings.root)
    tags = {
        **version_tags(settings, ctx, paths.raw, raw_rows, lineage),
        **candidate_contract(model, test),
    }
    if lineage.diff:
        tags["git_diff"] = GIT_DIFF_ARTIFACT  # the run artifact holding the uncommitted changes
    result = with_retries(
        lambda: register_candidate(settings, ctx, model, test, failures, tags, lineage),
        f"register: registering {name!r}",
    )
    version, decision = result.version, result.decision
    record = {
        "model_name": name,
        "version": int(version) if version else None,
        "alias": decision.alias,
        "model_uri": f"models:/{name}/{version}" if version else None,
        "run_id": result.run_id,
        "tracking_uri": settings.tracking_uri_in_project,
        "gate": decision.as_dict(),
        "compact": result.compact,
    }
    write_json(record, paths.registration)
    # Also in the run: another run in the same folder may overwrite the file before this run's
    # summary reads it (registration_of_run).
    with_retries(
        lambda: log_record_to_run(ctx, record, REGISTRATION_RECORD), "register: logging the record"
    )
    if version is None:
        log.warning("register: %s candidate NOT registered: %s", name, decision.reason)
        if settings.gate.fail_on_gate:
            raise GateError(
                f"candidate rejected by the gate (gate.fail_on_gate is true): {decision.reason}"
            )
    else:
        log.info(
            "register: %s version %s is @%s (%s)", name, version, decision.alias, decision.reason
        )
    return paths.registration


REGISTRATION_RECORD = "registration.json"


def registration_of_run(settings: Settings, ctx: RunContext) -> dict[str, Any] | None:
    """What this run's `register` recorded: models/registration.json if this run wrote it last,
    else the copy logged to this run (a concurrent run in the same folder overwrote the file)."""
    path = ArtifactPaths(settings.root).registration
    record = read_json(path) if path.is_file() else None
    if record is not None and record.get("run_id") == ctx.run_id:
        return dict(record)
    return load_record_of_run(ctx, REGISTRATION_RECORD) or record


def registration_in_store(settings: Settings) -> bool:
    """Whether the version models/registration.json records exists in the tracking store now.

    DVC sees only files: on a fresh clone, or after the store was deleted or switched
    (MLFLOW_TRACKING_URI), `register` looks current to DVC while the registry lacks the model.
    """
    import mlflow

    path = ArtifactPaths(settings.root).registration
    if not path.is_file():
        return False
    record = read_json(path)
    recorded = record.get("tracking_uri")
    if recorded is None or project_relative_uri(recorded, settings.root) != (
        settings.tracking_uri_in_project
    ):
        return False
    if record.get("version") is None:  # the gate kept the candidate out; nothing to find
        return True
    configure_mlflow(settings.tracking_uri)
    try:
        found = mlflow.MlflowClient().get_model_version(
            record["model_name"], str(record["version"])
        )
    except Exception:
        return False
    return found.run_id == record.get("run_id")
