"""`python -m flows compare A B`: the gate's paired comparison of two registered versions.

A plays the candidate, B the champion, both scored on the current test split: the improvement is
A over B, and the verdict says whether A would replace B under gate.rule. Like the gate, it
scores each version's evaluation model (fitted without the test split); a version registered
without one is scored as served, and the report says so (it may have learnt from those rows).
"""

from __future__ import annotations

from typing import Any

from adapters.registry import predict_evaluation_model, predict_registered_version
from adapters.tracking import configure_mlflow
from core.config import Settings
from core.errors import TrackingError
from core.io import ArtifactPaths, load_joblib, read_parquet
from inference.model import InferenceModel, encode_target
from tasks.register.gate import paired_comparison, predictions_from_output


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def compare_versions(settings: Settings, version_a: str, version_b: str) -> list[str]:
    """Report lines of the comparison of version A (candidate) with version B (champion)."""
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
    preds, served = [], []
    for v in (version_a, version_b):
        try:
            mlflow.MlflowClient().get_model_version(name, v)
            out = predict_evaluation_model(name, v, rows)
            if out is None:
                served.append(v)
                out = predict_registered_version(name, v, rows)
            preds.append(predictions_from_output(out, task_, classes))
        except Exception as exc:
            raise TrackingError(
                f"version {v} of {name!r} cannot score the current test split "
                f"({paths.split('test').relative_to(settings.root)}): {_short(exc)}"
            ) from None
    c = paired_comparison(settings, y, preds[0], preds[1])
    verdict = "clears" if c.clears else "does not clear"
    notes = [
        f"  note: v{v} has no evaluation model; scored as served, "
        "it may have learnt from these rows"
        for v in served
    ]
    return [
        f"{name}: v{version_a} vs v{version_b} on {len(y)} test rows "
        f"({paths.split('test').relative_to(settings.root)})",
        f"  {c.metric}: v{version_a} {c.candidate:.4f}, v{version_b} {c.reference:.4f}",
        f"  improvement of v{version_a} over v{version_b}: {c.diff:+.4f} "
        f"[{c.level:.0%} paired bootstrap CI {c.low:+.4f}, {c.high:+.4f}; {c.n_boot} resamples]",
        f"  rule {c.rule}{f' (margin {c.margin:g})' if c.rule == 'non_inferior' else ''}: "
        f"v{version_a} {verdict} it against v{version_b}",
        *notes,
    ]
