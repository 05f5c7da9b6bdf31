"""The model card: one Markdown page per candidate, written for a reviewer.

Pure rendering from facts gathered by register; the same text becomes the registered version's
description and an MLflow artifact (reports/model_card.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.config import LgbmParams
from inference.model import InferenceModel
from tasks.register.gate import Decision

DESCRIPTION_LIMIT = 5000  # MLflow's model_versions.description column is VARCHAR(5000)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _metrics_section(test: Mapping[str, Any], cv: Mapping[str, Any] | None) -> list[str]:
    metrics, ci = test["test"], test.get("ci", {})
    level = test.get("ci_level", 0.95)
    lines = [
        "",
        f"## Test metrics ({test.get('test_rows', '?')} rows, {level:.0%} bootstrap "
        f"intervals, {test.get('n_boot', '?')} resamples)",
        "",
        "| metric | value | interval |",
        "|---|---|---|",
    ]
    for k, v in metrics.items():
        iv = ci.get(k)
        lines.append(
            f"| {k} | {v:.4f} | " + (f"[{iv['low']:.4f}, {iv['high']:.4f}] |" if iv else "|")
        )
    if cv:
        lines += [
            "",
            f"CV on the training folds: {cv.get('metric', 'score')} mean "
            f"{cv['mean']:.4f}, std {cv['std']:.4f}",
        ]
    return lines


def _comparison_section(decision: Decision) -> list[str]:
    c = decision.comparison
    if c is None:
        return []
    return [
        "",
        "## Champion comparison",
        "",
        f"- champion: v{decision.champion_version}; metric {c.metric}",
        f"- candidate {c.candidate:.4f}, champion {c.reference:.4f}, improvement "
        f"{c.diff:+.4f}, {c.level:.0%} paired bootstrap interval "
        f"[{c.low:+.4f}, {c.high:+.4f}] ({c.n_boot} resamples)",
        f"- rule: {decision.rule}",
    ]


def _rows_line(rows: int, raw_rows: int | None, duplicates: int, quarantined: int) -> str:
    """The rows the model was built from (duplicates and quarantined rows set aside), and the
    rows read when they differ."""
    if raw_rows is None or raw_rows == rows:
        return f"- rows: {rows:,}"
    return (
        f"- rows: {rows:,} (of {raw_rows:,} read: {duplicates:,} duplicates dropped, "
        f"{quarantined:,} quarantined)"
    )


def _threshold_section(threshold: float | None, objective: str | None) -> list[str]:
    if threshold is None:
        return []
    return [
        "",
        "## Decision threshold",
        "",
        f"{threshold:.4f}, chosen on the out-of-fold predictions of the train split "
        f"({objective}); `predict` returns the probability and the label at this threshold.",
    ]


def render_model_card(
    *,
    model_name: str,
    version: str | None,
    task: str,
    source: str,
    target: str,
    rows: int,
    learned_from: str,
    data_md5: str,
    class_balance: Mapping[str, int] | None,
    params: Mapping[str, Any],
    test: Mapping[str, Any],
    cv: Mapping[str, Any] | None,
    threshold: float | None,
    threshold_objective: str | None,
    top_features: list[dict[str, Any]],
    decision: Decision,
    git_commit: str,
    raw_rows: int | None = None,
    duplicate_rows: int = 0,
    quarantined_rows: int = 0,
) -> str:
    title = f"{model_name} v{version}" if version else f"{model_name} (candidate, not registered)"
    lines = [
        f"# Model card: {title}",
        "",
        f"**Gate decision: {decision.action}**"
        + (f" -> @{decision.alias}" if decision.alias else " (not registered)"),
        "",
        f"{decision.reason}",
        "",
        "## Data",
        "",
        f"- source: `{source}` (target `{target}`, task {task})",
        _rows_line(rows, raw_rows, duplicate_rows, quarantined_rows)
        + f"; DVC md5 of data/raw/raw.parquet: `{data_md5}`",
        f"- learned from: {learned_from}",
        f"- git commit: `{git_commit}`",
    ]
    if class_balance:
        total = sum(class_balance.values()) or 1
        lines.append(
            "- class balance: "
            + ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in class_balance.items())
        )
    lines += _metrics_section(test, cv) + _threshold_section(threshold, threshold_objective)
    lines += ["", "## Top features (gain)", ""]
    lines += [f"{i}. {f['feature']} ({f['gain']:.1f})" for i, f in enumerate(top_features, 1)]
    lines += _comparison_section(decision)
    lines += ["", "## Params", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def as_description(card: str) -> str:
    """The card, cut to fit the registry's description column (the artifact keeps it whole)."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    note = "\n\n... (truncated; the full card is the run artifact model_card.md)\n"
    return card[: DESCRIPTION_LIMIT - len(note)] + note


def model_params(model: InferenceModel) -> dict[str, Any]:
    """What the model is: the LightGBM parameters it was fitted with (tuned or from
    params.yaml), or an ensemble's members with their weights."""
    est = model.pipeline.named_steps["model"]
    members = getattr(est, "members", None)
    if members is not None:
        return {f"member {m.name}": f"weight {m.weight:.3f}" for m in members}
    if not model.is_single_lightgbm:
        return {"estimator": type(est).__name__}
    params = est.get_params()
    out = {k: params[k] for k in LgbmParams.model_fields if k in params}
    out["n_estimators_used"] = int(getattr(est, "best_iteration_", 0) or est.n_estimators)
    out["objective"] = params.get("objective")
    return out
