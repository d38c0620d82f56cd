"""Paired tests and their multiple-testing adjustment: Wilcoxon signed-rank, McNemar, Benjamini-Hochberg."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from harness.scoring.stats.common import NAN, Result, nonfinite_reason, paired_arrays

# ------------------------------------------------------------------------------------------------- Wilcoxon


@dataclass(frozen=True)
class WilcoxonResult(Result):
    """Wilcoxon signed-rank test of ``defaced - original``.

    ``statistic`` is scipy's: the smaller rank sum for two-sided tests, W+ (the rank sum of positive
    differences, R's V) for one-sided ones;
    ``rank_biserial`` is the matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-), in [-1, 1].
    """

    statistic: float
    p_value: float
    n: int
    n_nonzero: int
    n_zero: int
    zero_method: str
    method: str  # "exact", "approx" or "none"
    alternative: str
    median_difference: float
    rank_biserial: float
    reason: str | None = None


def wilcoxon_signed_rank(
    original: Sequence[float],
    defaced: Sequence[float],
    *,
    zero_method: str = "wilcox",
    alternative: str = "two-sided",
) -> WilcoxonResult:
    """Wilcoxon signed-rank test on paired values.

    Zero differences (the defaced answer equals the original, common for categorical or rounded answers):
    ``zero_method="wilcox"`` drops them before ranking (Wilcoxon 1945); ``"pratt"`` ranks them and then drops
    their ranks (Pratt 1959). The exact null distribution is used for at most 50 non-zero differences without
    ties (and without zeros for ``pratt``), the normal approximation with tie correction otherwise; ``method``
    says which. If every difference is zero the result is ``p_value = 1.0`` (no evidence of a change) with a
    reason; no cases gives NaN.
    """
    if zero_method not in ("wilcox", "pratt"):
        raise ValueError(f"zero_method must be 'wilcox' or 'pratt', not {zero_method!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    a, b = paired_arrays(original, defaced)
    d = b - a
    n = d.size

    def result(stat, p, nz, method, med, rbc, reason=None) -> WilcoxonResult:
        return WilcoxonResult(float(stat), float(p), n, nz, n - nz, zero_method, method, alternative,
                              float(med), float(rbc), reason)

    if n == 0:
        return result(NAN, NAN, 0, "none", NAN, NAN, "no pairs")
    if reason := nonfinite_reason(d):
        return WilcoxonResult(NAN, NAN, n, 0, 0, zero_method, "none", alternative, NAN, NAN, reason)
    nonzero = d[d != 0]
    nz = nonzero.size
    median = float(np.median(d))
    if nz == 0:
        return result(0.0, 1.0, 0, "none", median, 0.0, "all paired differences are zero (no change)")
    ranked = d if zero_method == "pratt" else nonzero
    ranks = _sps.rankdata(np.abs(ranked))
    w_plus = float(ranks[ranked > 0].sum())
    w_minus = float(ranks[ranked < 0].sum())
    rbc = (w_plus - w_minus) / (w_plus + w_minus)
    has_ties = np.unique(np.abs(nonzero)).size < nz
    exact = nz <= 50 and not has_ties and (zero_method == "wilcox" or n == nz)
    method = "exact" if exact else "approx"
    res = _sps.wilcoxon(ranked, zero_method=zero_method, alternative=alternative,
                        method="exact" if exact else "approx", correction=False)
    return result(res.statistic, res.pvalue, nz, method, median, rbc)


# ------------------------------------------------------------------------------------------ Benjamini-Hochberg


@dataclass(frozen=True)
class BHResult(Result):
    """Benjamini-Hochberg step-up FDR adjustment. NaN p-values are not counted as tests and stay NaN."""

    names: list[str]
    p_values: list[float]
    adjusted: list[float]
    rejected: list[bool]
    alpha: float
    n_tests: int

    def by_name(self) -> dict[str, float]:
        return dict(zip(self.names, self.adjusted))


def benjamini_hochberg(p_values: Mapping[str, float] | Sequence[float], alpha: float = 0.05) -> BHResult:
    """Adjust p-values across metrics (keys are metric names; a plain sequence is named "0", "1", ...)."""
    if isinstance(p_values, Mapping):
        names = [str(k) for k in p_values]
        p = np.asarray([float(v) for v in p_values.values()], dtype=float)
    else:
        p = np.asarray([float(v) for v in p_values], dtype=float)
        names = [str(i) for i in range(p.size)]
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    adjusted = np.full(p.size, NAN)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    if m:
        order = valid[np.argsort(p[valid], kind="stable")]
        ranked = p[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        adjusted[order] = np.minimum(ranked, 1.0)
    rejected = [bool(np.isfinite(q) and q <= alpha) for q in adjusted]
    return BHResult(names, p.tolist(), adjusted.tolist(), rejected, alpha, int(m))


# --------------------------------------------------------------------------------------------------- McNemar


@dataclass(frozen=True)
class McNemarResult(Result):
    """McNemar test for paired binary outcomes (e.g. correct on original vs correct on defaced).

    ``b`` = pairs true on original and false on defaced, ``c`` = false on original and true on defaced.
    """

    n: int
    both_true: int
    b: int
    c: int
    both_false: int
    statistic: float  # chi-square (method chi2*) or min(b, c) (exact)
    p_value: float
    method: str  # "exact-binomial", "chi2" or "chi2-corrected"
    reason: str | None = None


def _as_bool_array(values: Iterable[Any], name: str) -> np.ndarray:
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or v in (0, 1):
            out.append(bool(v))
        else:
            raise ValueError(f"{name} must hold booleans or 0/1, got {v!r}")
    return np.asarray(out, dtype=bool)


def mcnemar(
    original: Sequence[bool], defaced: Sequence[bool], *, exact: bool | None = None, correction: bool = True
) -> McNemarResult:
    """McNemar's test. ``exact=None`` picks the exact binomial test when b + c < 25 (as statsmodels advises),
    otherwise the chi-square statistic with (``correction=True``) Edwards' continuity correction."""
    a = _as_bool_array(original, "original")
    b_ = _as_bool_array(defaced, "defaced")
    if a.shape != b_.shape:
        raise ValueError(f"paired inputs differ in length: {a.size} vs {b_.size}")
    n11 = int(np.sum(a & b_))
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n00 = int(np.sum(~a & ~b_))
    n = a.size
    discordant = b + c
    use_exact = discordant < 25 if exact is None else exact
    if n == 0:
        return McNemarResult(0, 0, 0, 0, 0, NAN, NAN, "none", "no pairs")
    if discordant == 0:
        return McNemarResult(n, n11, b, c, n00, 0.0, 1.0, "exact-binomial" if use_exact else "chi2",
                             "no discordant pairs (no change)")
    if use_exact:
        p = _sps.binomtest(min(b, c), discordant, 0.5).pvalue
        return McNemarResult(n, n11, b, c, n00, float(min(b, c)), float(min(p, 1.0)), "exact-binomial")
    num = (abs(b - c) - 1) ** 2 if correction else (b - c) ** 2
    stat = num / discordant
    p = float(_sps.chi2.sf(stat, 1))
    return McNemarResult(n, n11, b, c, n00, float(stat), p, "chi2-corrected" if correction else "chi2")
