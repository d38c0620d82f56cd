"""Coverage of a condition, complete pairs, and the paired comparison of one metric."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.scoring.stats.bootstrap import BootstrapResult, paired_difference_ci
from harness.scoring.stats.common import NAN, Result, paired_arrays
from harness.scoring.stats.significance import WilcoxonResult, wilcoxon_signed_rank

# --------------------------------------------------------------------------------------------------- coverage

OUTCOMES = ("parsed", "unparsable", "failed")


@dataclass(frozen=True)
class Coverage(Result):
    """How many samples were answered and parsed; shown beside every number.

    ``answered`` = parsed + unparsable (the model replied); ``failed`` = no usable reply (timeout, refusal,
    error, bad input). Unparsable answers are counted here and never scored as wrong answers.
    """

    n_total: int
    n_answered: int
    n_parsed: int
    n_unparsable: int
    n_failed: int
    parsed_fraction: float
    reasons: dict[str, int] = field(default_factory=dict)


def coverage(outcomes: Iterable[str], reasons: Iterable[str | None] | None = None) -> Coverage:
    """Count per-sample outcomes (each ``"parsed"``, ``"unparsable"`` or ``"failed"``); optional ``reasons``
    (same order, None for parsed samples) are tallied so the report can say *why* samples dropped out."""
    outs = list(outcomes)
    bad = sorted({o for o in outs if o not in OUTCOMES})
    if bad:
        raise ValueError(f"unknown outcome(s) {bad}; expected one of {OUTCOMES}")
    counts = Counter(outs)
    tally: Counter[str] = Counter()
    if reasons is not None:
        rs = list(reasons)
        if len(rs) != len(outs):
            raise ValueError(f"{len(rs)} reasons for {len(outs)} outcomes")
        tally.update(r for o, r in zip(outs, rs) if o != "parsed" and r)
    n = len(outs)
    return Coverage(n, counts["parsed"] + counts["unparsable"], counts["parsed"], counts["unparsable"],
                    counts["failed"], counts["parsed"] / n if n else NAN, dict(tally))


# ------------------------------------------------------------------------------------------ paired summary


def complete_pairs(original: Sequence[Any], defaced: Sequence[Any]) -> tuple[list[Any], list[Any], int]:
    """Keep the pairs where both values are usable (not None, not NaN); returns (original, defaced, n_dropped).
    Use it to exclude failed/unparsable samples before any paired statistic, and report n_dropped as coverage."""
    if len(original) != len(defaced):
        raise ValueError(f"paired inputs differ in length: {len(original)} vs {len(defaced)}")

    def usable(v: Any) -> bool:
        return v is not None and not (isinstance(v, (float, np.floating)) and math.isnan(v))

    kept = [(a, b) for a, b in zip(original, defaced) if usable(a) and usable(b)]
    return [a for a, _ in kept], [b for _, b in kept], len(original) - len(kept)


@dataclass(frozen=True)
class PairedComparison(Result):
    """A per-sample metric under both conditions: means, the bootstrap CI of the mean difference (defaced -
    original) and the Wilcoxon signed-rank test; feed ``wilcoxon.p_value`` of several metrics to
    :func:`benjamini_hochberg`."""

    n: int
    mean_original: float
    mean_defaced: float
    difference: BootstrapResult
    wilcoxon: WilcoxonResult


def paired_comparison(
    original: Sequence[float], defaced: Sequence[float], *, n_resamples: int = 2000, confidence: float = 0.95,
    method: str = "percentile", seed: int = 0,
) -> PairedComparison:
    a, b = paired_arrays(original, defaced)
    return PairedComparison(
        a.size,
        float(a.mean()) if a.size else NAN,
        float(b.mean()) if b.size else NAN,
        paired_difference_ci(a, b, n_resamples=n_resamples, confidence=confidence, method=method, seed=seed),
        wilcoxon_signed_rank(a, b),
    )
