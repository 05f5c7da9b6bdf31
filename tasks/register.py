"""register: log the whole inference pipeline to MLflow, gate it, register it, move aliases.

1. The candidate's test metrics must pass the absolute criteria (gate.criteria); if not, the model
   is logged to the run but not registered (and the run fails only if gate.fail_on_gate).
2. Otherwise it becomes a new version. Under the registry promotion lock (tasks/registry_lock.py)
   the current @champion is scored on the same test rows, the paired bootstrap interval of the
   difference is checked against gate.rule, and the version gets @champion or @challenger.
3. The decision, both scores, the interval and the rule are `gate.*` tags on the version; the model
   card is its description and a run artifact. `compare_versions` is the same comparison for any
   two registered versions (`python -m flows compare A B`).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from tasks.bootstrap import paired_differences, predicted_codes, weighted_metrics
from tasks.compress import register_compact
from tasks.config import LgbmParams, Settings
from tasks.errors import PipelineError, TrackingError
from tasks.gate import Comparison, Decision, check_absolute, compare_paired, decide
from tasks.io import ArtifactPaths, load_joblib, read_json, read_parquet, write_json, write_text
from tasks.model import InferenceModel, encode_target
from tasks.model_card import as_description, render_model_card
from tasks.registry_lock import LockTimeout, RegistryLock
from tasks.tracking import RunContext, configure_mlflow, resumed_run

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


class GateError(PipelineError):
    """The candidate failed the absolute criteria and params.yaml says to fail the run."""


def choose_alias(has_champion: bool) -> str:
    """Fallback rule without a comparison: the first version serves, later ones wait."""
    return CHALLENGER if has_champion else CHAMPION


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_md5(path: Path) -> str:
    """The same hash DVC records for a file output."""
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_tags(settings: Settings, ctx: RunContext, raw_path: Path, raw_rows: int) -> dict[str, str]:
    return {
        "git_commit": git_commit(settings.root),
        "data_md5": file_md5(raw_path),
        "params_hash": settings.section_hash(),
        "dataset": settings.data.source,
        "dataset_rows": str(raw_rows),
        "task": settings.data.task,
        "entry_point": ctx.entry,
        "prefect_flow_run_id": ctx.flow_run_id or "",
    }


def current_champion(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def input_signature(example: pd.DataFrame, output: pd.DataFrame) -> Any:
    """The signature with integer columns as `Any`: a missing value turns a pandas int column
    into float64, which MLflow refuses for a `long` column (and `double` refuses real ints).
    The model's own preprocessing coerces numbers, so both int and float rows are served."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

    inferred = infer_signature(example, output)
    cols = [ColSpec(AnyType(), c.name, required=c.required)
            if c.type in (DataType.long, DataType.integer) else c
            for c in inferred.inputs.inputs]
    return ModelSignature(inputs=Schema(cols), outputs=inferred.outputs)


def log_inference_model(model: InferenceModel, model_file: Path, example: pd.DataFrame) -> Any:
    """Log the pyfunc model (models-from-code; `tasks/` travels with it); return its ModelInfo."""
    import mlflow

    code_dir = Path(__file__).resolve().parent
    signature = input_signature(example, model.predict_frame(example))
    return mlflow.pyfunc.log_model(
        name="model", python_model=str(code_dir / "pyfunc.py"),
        artifacts={"inference_model": str(model_file)}, signature=signature,
        input_example=example, code_paths=[str(code_dir)], pip_requirements=_pip_requirements(),
    )


def create_version(client: Any, name: str, info: Any, run_id: str | None,
                   tags: dict[str, str]) -> Any:
    """Register the logged model as a new version of `name` (creating the model if needed)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(exc.error_code):
            raise
    return client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                       model_id=info.model_id, await_creation_for=60)



def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    names = ["mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "cloudpickle"]
    return [f"{n}=={version(n)}" for n in names]



@dataclass(frozen=True)
class Predictions:
    """A model's test-split output in the candidate's encoding: scores and predicted codes."""

    scores: np.ndarray
    labels: np.ndarray


def candidate_predictions(model: InferenceModel, rows: pd.DataFrame) -> Predictions:
    scores = model.predict_scores(rows)
    return Predictions(scores, predicted_codes(model.task, scores, model.threshold))


def predictions_from_output(out: pd.DataFrame, task: str, classes: list[Any]) -> Predictions:
    """Read a registered model's pyfunc output in the candidate's class encoding.

    Raises ValueError when the output does not fit (other task, other classes).
    """
    if task == "regression":
        if "prediction" not in out.columns:
            raise ValueError(f"output has no 'prediction' column (columns: {list(out.columns)})")
        scores = out["prediction"].to_numpy(dtype=float)
        return Predictions(scores, np.zeros(len(out), dtype=int))
    lookup = {str(c): i for i, c in enumerate(classes)}
    codes = out["label"].astype(str).map(lookup) if "label" in out.columns else None
    if codes is None or codes.isna().any():
        raise ValueError(f"its labels do not match the current classes {list(lookup)}")
    if task == "binary":
        if "probability" not in out.columns:
            raise ValueError(f"output has no 'probability' column (columns: {list(out.columns)})")
        return Predictions(out["probability"].to_numpy(dtype=float), codes.to_numpy(dtype=int))
    cols = [f"proba_{c}" for c in classes]
    missing = [c for c in cols if c not in out.columns]
    if missing:
        raise ValueError(f"output lacks {missing}")
    return Predictions(out[cols].to_numpy(dtype=float), codes.to_numpy(dtype=int))


def score_registered_version(name: str, version: str, rows: pd.DataFrame, task: str,
                             classes: list[Any]) -> Predictions:
    """Load `models:/<name>/<version>` as pyfunc and predict the rows (raw columns).

    MLflow prepends the model's logged code folder to sys.path on load; it is put back afterwards
    so later imports in this process keep using the current code.
    """
    import mlflow

    saved = list(sys.path)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        out = loaded.predict(rows)
    finally:
        sys.path[:] = saved
    return predictions_from_output(pd.DataFrame(out), task, classes)


def point_score(task: str, metric: str, y: np.ndarray, pred: Predictions) -> float:
    ones = np.ones((1, len(y)))
    return float(weighted_metrics(task, ones, y, pred.scores, pred.labels)[metric][0])


def paired_comparison(settings: Settings, y: np.ndarray, candidate: Predictions,
                      reference: Predictions) -> Comparison:
    """The gate metric of both models on the same rows, with the paired bootstrap interval."""
    task, metric, gate = settings.data.task, settings.gate_metric, settings.gate
    diffs = paired_differences(task, metric, y, (candidate.scores, candidate.labels),
                               (reference.scores, reference.labels), settings.evaluate.n_boot,
                               settings.base.seed, settings.evaluate.max_boot_rows)
    return compare_paired(metric, point_score(task, metric, y, candidate),
                          point_score(task, metric, y, reference), diffs, gate.rule, gate.margin,
                          settings.evaluate.ci_level)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def gate_against_champion(client: Any, settings: Settings, model: InferenceModel,
                          test: pd.DataFrame, failures: list[str]) -> Decision:
    """Read @champion, score it on the candidate's test rows and decide (call under the lock)."""
    gate, name = settings.gate, settings.register_.model_name
    champion = current_champion(client, name)
    if failures or champion is None:
        return decide(failures, gate.rule, gate.margin,
                      None if champion is None else str(champion.version))
    y, _ = encode_target(test[settings.data.target], model.task, classes=model.classes or None)
    rows = test.drop(columns=[settings.data.target])
    try:
        if champion.tags.get("task", model.task) != model.task:
            raise ValueError(f"it is a {champion.tags['task']} model, the candidate {model.task}")
        reference = score_registered_version(name, str(champion.version), rows, model.task,
                                             model.classes)
    except Exception as exc:  # any failure to score is a reason for a human to look
        log.warning("register: champion v%s cannot score the current test split: %s",
                    champion.version, _short(exc))
        return decide([], gate.rule, gate.margin, str(champion.version),
                      champion_error=_short(exc))
    comparison = paired_comparison(settings, y, candidate_predictions(model, test), reference)
    return decide([], gate.rule, gate.margin, str(champion.version), comparison)


def promote(client: Any, settings: Settings, version: str, model: InferenceModel,
            test: pd.DataFrame) -> Decision:
    """Decide and move the alias as one critical section under the registry lock.

    The version's gate tags are written before its alias, so whoever sees the alias sees why.
    """
    gate, name = settings.gate, settings.register_.model_name
    lock = RegistryLock(client, name, ttl_s=gate.lock_ttl_s, timeout_s=gate.lock_timeout_s)
    with lock.held():
        decision = gate_against_champion(client, settings, model, test, [])
        for key, value in decision.tags().items():
            client.set_model_version_tag(name, version, key, value)
        if not lock.still_held():  # fencing: our lock expired and may be someone else's now
            raise LockTimeout("the registry lock expired before the alias could be moved; "
                              "no alias was changed (raise gate.lock_ttl_s)")
        client.set_registered_model_alias(name, decision.alias, version)
        got = client.get_model_version_by_alias(name, decision.alias).version
        if str(got) != str(version):
            raise TrackingError(f"alias @{decision.alias} points to v{got} right after this run "
                                f"set it to v{version}: someone moved it without the lock")
    if lock.waited_s > 1:
        log.info("register: waited %.1fs for another run's promotion to finish", lock.waited_s)
    return decision


def model_params(model: InferenceModel) -> dict[str, Any]:
    """The LightGBM parameters the model was actually fitted with (tuned or from params.yaml)."""
    est = model.pipeline.named_steps["model"]
    params = est.get_params()
    out = {k: params[k] for k in LgbmParams.model_fields if k in params}
    out["n_estimators_used"] = int(getattr(est, "best_iteration_", 0) or est.n_estimators)
    out["objective"] = params.get("objective")
    return out


def build_card(settings: Settings, model: InferenceModel, version: str | None,
               decision: Decision, tags: dict[str, str], paths: ArtifactPaths) -> str:
    test = read_json(paths.test_metrics)
    report = read_json(paths.evaluation_report) if paths.evaluation_report.is_file() else {}
    validation = read_json(paths.validation_report)
    return render_model_card(
        model_name=settings.register_.model_name, version=version, task=model.task,
        source=settings.data.source, target=settings.data.target,
        rows=int(validation.get("raw_rows", 0)), data_md5=tags["data_md5"],
        class_balance=validation.get("target_levels") if model.task != "regression" else None,
        params=model_params(model), test=test, cv=test.get("cv"),
        threshold=model.threshold if model.task == "binary" else None,
        threshold_objective=report.get("threshold_objective"),
        top_features=report.get("top_features_gain", [])[:settings.evaluate.top_features],
        decision=decision, git_commit=tags["git_commit"])


def _retry_unless_gate(task: Any, task_run: Any, state: Any) -> bool:
    """Registry hiccups are worth a retry; a gate rejection is a verdict, not a hiccup."""
    return not isinstance(getattr(state, "data", None), GateError)


@task(name="register", retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_gate)
def register_stage(settings: Settings, ctx: RunContext) -> Path:
    import mlflow

    paths = ArtifactPaths(settings.root)
    model: InferenceModel = load_joblib(paths.model)
    test = read_parquet(paths.split("test"))
    raw_rows = read_json(paths.validation_report)["raw_rows"]
    metrics = read_json(paths.test_metrics)["test"]
    name = settings.register_.model_name
    failures = check_absolute(metrics, settings.gate.criteria)
    configure_mlflow(settings.tracking_uri)
    client = mlflow.MlflowClient()
    tags = version_tags(settings, ctx, paths.raw, raw_rows)
    version: str | None = None
    compact: dict[str, Any] | None = None
    try:
        with resumed_run(ctx) as run:
            info = log_inference_model(model, paths.model, test[model.feature_columns].head(5))
            if failures:
                decision = gate_against_champion(client, settings, model, test, failures)
            else:
                registered = create_version(client, name, info, run.info.run_id if run else None,
                                            tags)
                version = str(registered.version)
                decision = promote(client, settings, version, model, test)
                compact = register_compact(settings, client, version,
                                           run.info.run_id if run else None, tags)
            card = build_card(settings, model, version, decision, tags, paths)
            write_text(card, paths.model_card)
            if version is not None:
                client.update_model_version(name, version, description=as_description(card))
            mlflow.log_artifact(str(paths.model_card), artifact_path="evaluation")
            mlflow.set_tags({**decision.tags(), "registered_model": name,
                             "registered_version": version or "none",
                             "registered_alias": decision.alias or "none"})
            run_id = run.info.run_id if run else None
    except (TrackingError, LockTimeout) as exc:
        raise TrackingError(str(exc)) from None
    except Exception as exc:
        raise TrackingError(f"registering {name!r} in {settings.tracking_uri} failed: {exc}") from None
    record = {"model_name": name, "version": int(version) if version else None,
              "alias": decision.alias, "model_uri": f"models:/{name}/{version}" if version else None,
              "run_id": run_id, "tracking_uri": settings.tracking_uri,
              "gate": decision.as_dict(), "compact": compact}
    write_json(record, paths.registration)
    if version is None:
        log.warning("register: %s candidate NOT registered: %s", name, decision.reason)
        if settings.gate.fail_on_gate:
            raise GateError(f"candidate rejected by the gate (gate.fail_on_gate is true): "
                            f"{decision.reason}")
    else:
        log.info("register: %s version %s is @%s (%s)", name, version, decision.alias,
                 decision.reason)
    return paths.registration


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
    if record.get("tracking_uri") != settings.tracking_uri:
        return False
    if record.get("version") is None:  # the gate kept the candidate out; nothing to find
        return True
    configure_mlflow(settings.tracking_uri)
    try:
        found = mlflow.MlflowClient().get_model_version(record["model_name"], str(record["version"]))
    except Exception:
        return False
    return found.run_id == record.get("run_id")


def compare_versions(settings: Settings, version_a: str, version_b: str) -> list[str]:
    """The gate's paired comparison of two registered versions on the current test split.

    A plays the candidate, B the champion: the improvement is A over B, and the verdict says
    whether A would replace B under gate.rule.
    """
    import mlflow

    paths = ArtifactPaths(settings.root)
    name, task_, target = settings.register_.model_name, settings.data.task, settings.data.target
    test = read_parquet(paths.split("test"))
    configure_mlflow(settings.tracking_uri)
    classes: list[Any] = []
    if task_ != "regression":
        current: InferenceModel = load_joblib(paths.model)
        classes = current.classes
    y, _ = encode_target(test[target], task_, classes=classes or None)
    rows = test.drop(columns=[target])
    preds = []
    for v in (version_a, version_b):
        try:
            mlflow.MlflowClient().get_model_version(name, v)
            preds.append(score_registered_version(name, v, rows, task_, classes))
        except Exception as exc:
            raise TrackingError(f"version {v} of {name!r} cannot score the current test split "
                                f"({paths.split('test').relative_to(settings.root)}): {_short(exc)}"
                                ) from None
    c = paired_comparison(settings, y, preds[0], preds[1])
    verdict = "clears" if c.clears else "does not clear"
    return [f"{name}: v{version_a} vs v{version_b} on {len(y)} test rows "
            f"({paths.split('test').relative_to(settings.root)})",
            f"  {c.metric}: v{version_a} {c.candidate:.4f}, v{version_b} {c.reference:.4f}",
            f"  improvement of v{version_a} over v{version_b}: {c.diff:+.4f} "
            f"[{c.level:.0%} paired bootstrap CI {c.low:+.4f}, {c.high:+.4f}; {c.n_boot} resamples]",
            f"  rule {c.rule}{f' (margin {c.margin:g})' if c.rule == 'non_inferior' else ''}: "
            f"v{version_a} {verdict} it against v{version_b}"]
