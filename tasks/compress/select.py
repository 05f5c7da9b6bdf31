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
    """The smallest serialized size among selectable candidates whose valid drop <= max_drop.

    Ties go to the smaller drop, then the name (so the choice is deterministic). None when no
    candidate qualifies.
    """
    eligible = [
        r
        for r in rows
        if r.get("selectable", True)
        and r["valid_drop"] is not None
        and math.isfinite(r["valid_drop"])
        and r["valid_drop"] <= max_drop + 1e-12
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda r: (r["size_bytes"], r["valid_drop"], r["candidate"]))
