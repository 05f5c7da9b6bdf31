"""Pure decisions of compression: how much worse a candidate is, and which candidate to keep."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from core.config import LOWER_IS_BETTER


def metric_drop(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` (positive = worse), whatever the direction."""
    return (value - reference) if metric in LOWER_IS_BETTER else (reference - value)


def select_candidate(rows: Sequence[dict[str, Any]], max_drop: float) -> dict[str, Any] | None:
    """The smallest serialized size among selectable candidates whose drop on the valid split
    is within max_drop with confidence: the one-sided upper bound of its paired bootstrap
    distribution (`valid_drop_bound`; the point drop `valid_drop` where there is no bound)
    is at most max_drop.

    A point estimate on one split lets a candidate through by luck as often as not; the bound
    makes the promise hold on rows nothing chose on (the test split reports it). Ties go to the
    smaller drop, then the name (so the choice is deterministic). None when none qualifies.
    """

    def bound(r: dict[str, Any]) -> float:
        value = r.get("valid_drop_bound")
        if value is None or not math.isfinite(float(value)):
            value = r.get("valid_drop")
        return math.nan if value is None else float(value)

    eligible = [
        r
        for r in rows
        if r.get("selectable", True) and math.isfinite(bound(r)) and bound(r) <= max_drop + 1e-12
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda r: (r["size_bytes"], r["valid_drop"], r["candidate"]))
