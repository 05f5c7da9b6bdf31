"""The promotion gate: pure decisions over metrics and bootstrap samples.

1. `check_absolute`: the candidate's test metrics against the floors/ceilings in params.yaml.
2. `compare_paired`: the paired bootstrap interval of (candidate - champion) against the rule.
3. `decide`: one Decision (promote / keep / manual_review / reject) with a reason a person can read.
4. `model_contract` / `incompatibilities`: what a model's output means (task, target, positive
   label, classes, output columns). A champion whose contract differs from the candidate's is
   never scored against it: its numbers would mean something else (P(bad) against P(good)).
5. `promotion_blocker` / `hold_back`: a run that is an experiment (`dvc exp run`, a branch other
   than the default one) turns a promote verdict into `hold` (@challenger), unless
   gate.allow_promotion says otherwise.

No I/O here: the register stage gathers the inputs (metrics, the champion's output on the test
rows) and applies the Decision to the registry; `predictions_from_output` and
`paired_comparison` turn two models' outputs on the same rows into a Comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.config import LOWER_IS_BETTER, Settings
from inference.model import InferenceModel
from tasks.evaluate.bootstrap import (
    paired_differences,
    percentile_interval,
    predicted_codes,
    weighted_metrics,
)

Action = Literal["promote", "keep", "hold", "manual_review", "reject"]
ALIAS_FOR: dict[str, str | None] = {
    "promote": "champion",
    "keep": "challenger",
    "hold": "challenger",
    "manual_review": "challenger",
    "reject": None,
}


@dataclass(frozen=True)
class Comparison:
    """Candidate vs reference on the same test rows; `diff` > 0 means the candidate is better."""

    metric: str
    candidate: float
    reference: float
    diff: float
    low: float
    high: float
    level: float
    n_boot: int
    rule: str
    margin: float
    clears: bool

    def describe(self) -> str:
        return (
            f"{self.metric}: candidate {self.candidate:.4f} vs champion {self.reference:.4f}, "
            f"improvement {self.diff:+.4f} [{self.level:.0%} CI {self.low:+.4f}, {self.high:+.4f}]"
        )


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    rule: str
    champion_version: str | None = None
    comparison: Comparison | None = None

    @property
    def alias(self) -> str | None:
        return ALIAS_FOR[self.action]

    def tags(self) -> dict[str, str]:
        """What is written on the registered version (and the run) as `gate.*` tags."""
        tags = {
            "gate.decision": self.action,
            "gate.reason": self.reason,
            "gate.rule": self.rule,
            "gate.champion_version": self.champion_version or "none",
        }
        if self.comparison is not None:
            c = self.comparison
            tags.update(
                {
                    "gate.metric": c.metric,
                    "gate.candidate_score": f"{c.candidate:.6f}",
                    "gate.champion_score": f"{c.reference:.6f}",
                    "gate.diff": f"{c.diff:.6f}",
                    "gate.ci_low": f"{c.low:.6f}",
                    "gate.ci_high": f"{c.high:.6f}",
                    "gate.ci_level": f"{c.level}",
                    "gate.n_boot": str(c.n_boot),
                }
            )
        return tags

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "alias": self.alias,
            "reason": self.reason,
            "rule": self.rule,
            "champion_version": self.champion_version,
            "comparison": asdict(self.comparison) if self.comparison else None,
        }


def rule_text(rule: str, margin: float) -> str:
    if rule == "superior":
        return "superior: CI lower bound > 0"
    return f"non_inferior: CI lower bound > -{margin:g}"


def check_absolute(metrics: Mapping[str, float], criteria: Mapping[str, float]) -> list[str]:
    """Every criterion the metrics fail, as readable lines (empty: all pass)."""
    failures = []
    for key, bound in sorted(criteria.items()):
        kind, metric = key[:3], key[4:]
        value = metrics.get(metric)
        if value is None or not math.isfinite(value):
            failures.append(f"{metric} is not available (needed by {key})")
        elif kind == "min" and value < bound:
            failures.append(f"{metric}={value:.4f} is below {key}={bound:g}")
        elif kind == "max" and value > bound:
            failures.append(f"{metric}={value:.4f} is above {key}={bound:g}")
    return failures


def clears_rule(low: float, rule: str, margin: float) -> bool:
    """superior: the whole interval is above 0; non_inferior: above -margin."""
    if not math.isfinite(low):
        return False
    return low > 0 if rule == "superior" else low > -margin


def compare_paired(
    metric: str,
    candidate: float,
    reference: float,
    diff_samples: np.ndarray,
    rule: str,
    margin: float,
    level: float,
) -> Comparison:
    """Summarise the paired bootstrap differences (oriented: > 0 is better) against the rule."""
    low, high = percentile_interval(diff_samples, level)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return Comparison(
        metric=metric,
        candidate=float(candidate),
        reference=float(reference),
        diff=sign * (float(candidate) - float(reference)),
        low=low,
        high=high,
        level=level,
        n_boot=int(np.size(diff_samples)),
        rule=rule,
        margin=margin,
        clears=clears_rule(low, rule, margin),
    )


def decide(
    failures: list[str],
    rule: str,
    margin: float,
    champion_version: str | None,
    comparison: Comparison | None = None,
    champion_error: str | None = None,
    incompatible: list[str] | None = None,
) -> Decision:
    """The gate's verdict. Order matters: absolute criteria, then champion, then whether the
    champion is comparable at all, then the rule."""
    rule_s = rule_text(rule, margin)
    if failures:
        return Decision(
            "reject", "fails absolute criteria: " + "; ".join(failures), rule_s, champion_version
        )
    if champion_version is None:
        return Decision("promote", "no current champion", rule_s)
    if incompatible:
        return Decision(
            "manual_review",
            f"manual review: champion v{champion_version} is incompatible with the candidate "
            f"({'; '.join(incompatible)}); not scored against it, not promoted automatically",
            rule_s,
            champion_version,
        )
    if champion_error is not None:
        return Decision(
            "manual_review",
            f"manual review: champion v{champion_version} cannot score the new test "
            f"data ({champion_error}); not promoted automatically",
            rule_s,
            champion_version,
        )
    if comparison is None:
        raise ValueError("a champion exists but no comparison was given")
    verdict = "clears" if comparison.clears else "does not clear"
    reason = f"{comparison.describe()} {verdict} rule {rule_s}"
    return Decision(
        "promote" if comparison.clears else "keep", reason, rule_s, champion_version, comparison
    )


def promotion_blocker(
    allow: bool | str, experiment: str | None, branch: str | None, default_branch: str | None
) -> str | None:
    """Why this run may not move @champion (None: it may). `allow` is gate.allow_promotion;
    `branch` is None on a detached HEAD, `default_branch` None when it cannot be told (outside
    git), and then only a DVC experiment is held back."""
    if allow is True:
        return None
    if allow is False:
        return "gate.allow_promotion is false"
    if experiment is not None:
        return f"the run is the DVC experiment {experiment!r}"
    if default_branch is not None and branch != default_branch:
        where = f"branch {branch!r}" if branch else "a detached HEAD"
        return f"the run is on {where}, not the default branch {default_branch!r}"
    return None


def hold_back(decision: Decision, blocker: str | None) -> Decision:
    """A promote verdict held back by `blocker`: the candidate becomes @challenger, the champion
    stays; any other verdict as it is."""
    if blocker is None or decision.action != "promote":
        return decision
    return Decision(
        "hold",
        f"{decision.reason}; held back as @challenger: {blocker} "
        "(set gate.allow_promotion: true to promote it)",
        decision.rule,
        decision.champion_version,
        decision.comparison,
    )


# ------------------------------------------------------------------------------------------------
# What a model's output means
# ------------------------------------------------------------------------------------------------
# Version tags that record a model's contract (written at registration, read from @champion).
CONTRACT_KEYS = ("task", "target", "positive_label", "classes", "output_columns")


def model_contract(
    task: str, target: str, classes: list[Any], output_columns: list[str]
) -> dict[str, str]:
    """The contract of a model as version tags: strings, comparable across versions."""
    return {
        "task": task,
        "target": str(target),
        "positive_label": str(classes[-1]) if task == "binary" and classes else "",
        "classes": json.dumps([str(c) for c in classes]),
        "output_columns": ",".join(map(str, output_columns)),
    }


def incompatibilities(champion: Mapping[str, str], candidate: Mapping[str, str]) -> list[str]:
    """Each way the champion's contract differs from the candidate's, as readable lines.

    A key the champion does not record is a difference too: unknown is not the same."""
    lines = []
    for key in CONTRACT_KEYS:
        mine, theirs = candidate.get(key), champion.get(key)
        if mine is None or mine == theirs:
            continue
        if theirs is None:
            lines.append(f"champion records no {key} (candidate: {mine!r})")
        else:
            lines.append(f"{key} {theirs!r} (champion) vs {mine!r} (candidate)")
    return lines


# ------------------------------------------------------------------------------------------------
# Two models on the same rows
# ------------------------------------------------------------------------------------------------
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


def point_score(task: str, metric: str, y: np.ndarray, pred: Predictions) -> float:
    ones = np.ones((1, len(y)))
    return float(weighted_metrics(task, ones, y, pred.scores, pred.labels)[metric][0])


def paired_comparison(
    settings: Settings, y: np.ndarray, candidate: Predictions, reference: Predictions
) -> Comparison:
    """The gate metric of both models on the same rows, with the paired bootstrap interval."""
    task, metric, gate = settings.data.task, settings.gate_metric, settings.gate
    diffs = paired_differences(
        task,
        metric,
        y,
        (candidate.scores, candidate.labels),
        (reference.scores, reference.labels),
        settings.evaluate.n_boot,
        settings.base.seed,
        settings.evaluate.max_boot_rows,
    )
    return compare_paired(
        metric,
        point_score(task, metric, y, candidate),
        point_score(task, metric, y, reference),
        diffs,
        gate.rule,
        gate.margin,
        settings.evaluate.ci_level,
    )
