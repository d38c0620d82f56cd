"""Paired statistics over the cases of one model: original answer vs defaced answer of the same case.

Every function takes plain sequences (one value per case, in the same case order for both conditions), never
raises on degenerate input (no cases, one case, all values equal) and instead returns NaN estimates with a
``reason`` saying why. Results are small frozen dataclasses; ``.to_dict()`` gives a JSON-safe dict in which NaN
and infinities become ``None`` (strict JSON has no NaN).

Conventions:
- A paired difference is always ``defaced - original`` (``b - a``): a positive bias means the defaced condition
  gives larger values.
- Bootstrap confidence intervals resample *cases* (all arrays with the same indices, so pairs stay pairs) with a
  seeded ``numpy.random.default_rng``; ``method`` is ``"percentile"`` (default) or ``"bca"`` (bias-corrected and
  accelerated, Efron 1987, acceleration from the jackknife).
- Failed or unparsable samples must be removed *before* calling these functions (a pair is usable only when both
  of its samples were parsed); report what was removed with :func:`coverage`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as _sps

__all__ = [
    "BootstrapResult",
    "WilcoxonResult",
    "BHResult",
    "McNemarResult",
    "KappaResult",
    "ICCResult",
    "BlandAltmanResult",
    "Coverage",
    "bootstrap_ci",
    "paired_difference_ci",
    "wilcoxon_signed_rank",
    "benjamini_hochberg",
    "mcnemar",
    "cohen_kappa",
    "icc",
    "bland_altman",
    "coverage",
    "complete_pairs",
    "PairedComparison",
    "paired_comparison",
    "ICC_FORMS",
]

NAN = float("nan")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return _json_safe(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


class _Result:
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: NaN/inf -> None, tuples -> lists, numpy scalars -> Python numbers."""
        return _json_safe(asdict(self))  # type: ignore[arg-type]


def _as_float_array(values: Iterable[float], name: str) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one value per case (1-D), got shape {arr.shape}")
    return arr


def _paired(a: Iterable[float], b: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_float_array(a, "original"), _as_float_array(b, "defaced")
    if x.shape != y.shape:
        raise ValueError(f"paired inputs differ in length: {x.size} original vs {y.size} defaced cases")
    return x, y


def _nonfinite_reason(*arrays: np.ndarray) -> str | None:
    for arr in arrays:
        if arr.size and not np.all(np.isfinite(arr)):
            return "input contains NaN or infinite values; drop failed/unparsable cases before pairing"
    return None


# --------------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult(_Result):
    """Point estimate of a statistic and its bootstrap confidence interval (cases resampled)."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str  # "percentile" or "bca"
    n: int  # cases
    n_resamples: int
    seed: int
    statistic: str
    reason: str | None = None


def _statistic_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _vectorised(statistic: Callable[..., Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    # Common statistics of one array are computed for all resamples at once (1,000 cases x 2,000 resamples in
    # milliseconds); anything else is called once per resample.
    if statistic in (np.mean, np.average):
        return lambda m: m.mean(axis=-1)
    if statistic is np.median:
        return lambda m: np.median(m, axis=-1)
    return None


def bootstrap_ci(
    data: Sequence[float] | Sequence[Sequence[Any]],
    statistic: Callable[..., float] = np.mean,
    *,
    paired: bool = False,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap CI of ``statistic`` over cases.

    ``data`` is one array of per-case values (``statistic(values)``), or with ``paired=True`` a tuple of equally
    long arrays that are resampled with the same case indices (``statistic(*arrays)``, e.g. a kappa between the
    original and defaced labels). Returns NaN bounds with a reason for fewer than 2 cases or when the statistic
    is undefined on the full data; a constant statistic gives a zero-width interval.
    """
    if method not in ("percentile", "bca"):
        raise ValueError(f"bootstrap method must be 'percentile' or 'bca', not {method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    arrays = [np.asarray(a) for a in data] if paired else [np.asarray(data)]
    if paired and not arrays:
        raise ValueError("paired bootstrap needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"paired arrays differ in length: {[len(a) for a in arrays]}")
    name = _statistic_name(statistic)

    def result(est: float, lo: float, hi: float, reason: str | None = None) -> BootstrapResult:
        return BootstrapResult(float(est), float(lo), float(hi), confidence, method, n, n_resamples, seed, name, reason)

    if n == 0:
        return result(NAN, NAN, NAN, "no cases")
    numeric = all(a.dtype.kind in "fiub" for a in arrays)
    if numeric and (reason := _nonfinite_reason(*[a.astype(float) for a in arrays])):
        return result(NAN, NAN, NAN, reason)
    try:
        estimate = float(statistic(*arrays))
    except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
        return result(NAN, NAN, NAN, f"statistic failed on the full data: {exc}")
    if not math.isfinite(estimate):
        return result(estimate, NAN, NAN, "statistic is undefined on the full data")
    if n == 1:
        return result(estimate, NAN, NAN, "one case: no sampling variability can be estimated")

    rng = np.random.default_rng(seed)
    fast = _vectorised(statistic) if not paired else None
    if fast is not None:
        idx = rng.integers(0, n, size=(n_resamples, n))
        boot = fast(arrays[0][idx])
    else:
        boot = np.empty(n_resamples)
        for i in range(n_resamples):
            idx = rng.integers(0, n, size=n)
            try:
                boot[i] = statistic(*[a[idx] for a in arrays])
            except (ValueError, ZeroDivisionError, FloatingPointError):
                boot[i] = NAN
    finite = boot[np.isfinite(boot)]
    undefined = boot.size - finite.size
    note = f"statistic undefined in {undefined} of {boot.size} resamples (dropped)" if undefined else None
    if finite.size < 2:
        return result(estimate, NAN, NAN, "statistic undefined in almost all resamples")
    alpha = 1 - confidence
    if np.all(finite == finite[0]):
        return result(estimate, finite[0], finite[0], note or "statistic is constant across resamples")
    if method == "percentile":
        lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
        return result(estimate, lo, hi, note)

    # BCa: z0 from the share of resamples below the estimate, acceleration from the jackknife.
    prop = (np.sum(finite < estimate) + 0.5 * np.sum(finite == estimate)) / finite.size
    if prop <= 0 or prop >= 1:
        return result(estimate, NAN, NAN, "BCa undefined: the estimate lies outside all resamples")
    z0 = _sps.norm.ppf(prop)
    jack = np.empty(n)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        keep[i] = False
        try:
            jack[i] = statistic(*[a[keep] for a in arrays])
        except (ValueError, ZeroDivisionError, FloatingPointError):
            jack[i] = NAN
        keep[i] = True
    if not np.all(np.isfinite(jack)):
        return result(estimate, NAN, NAN, "BCa undefined: statistic undefined on a leave-one-out sample")
    d = jack.mean() - jack
    denom = 6.0 * (np.sum(d**2) ** 1.5)
    accel = float(np.sum(d**3) / denom) if denom > 0 else 0.0
    z = _sps.norm.ppf([alpha / 2, 1 - alpha / 2])
    adj = _sps.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    lo, hi = np.quantile(finite, adj)
    return result(estimate, lo, hi, note)


def paired_difference_ci(
    original: Sequence[float],
    defaced: Sequence[float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap CI of the mean paired difference ``mean(defaced - original)`` over cases."""
    a, b = _paired(original, defaced)
    return bootstrap_ci(b - a, np.mean, n_resamples=n_resamples, confidence=confidence, method=method, seed=seed)


# ------------------------------------------------------------------------------------------------- Wilcoxon


@dataclass(frozen=True)
class WilcoxonResult(_Result):
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
    a, b = _paired(original, defaced)
    d = b - a
    n = d.size

    def result(stat, p, nz, method, med, rbc, reason=None) -> WilcoxonResult:
        return WilcoxonResult(float(stat), float(p), n, nz, n - nz, zero_method, method, alternative,
                              float(med), float(rbc), reason)

    if n == 0:
        return result(NAN, NAN, 0, "none", NAN, NAN, "no pairs")
    if reason := _nonfinite_reason(d):
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
class BHResult(_Result):
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
class McNemarResult(_Result):
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


# ----------------------------------------------------------------------------------------------------- kappa


@dataclass(frozen=True)
class KappaResult(_Result):
    """Cohen's kappa between two label sequences with an asymptotic CI (Fleiss, Cohen & Everitt 1969 SE)."""

    kappa: float
    low: float
    high: float
    se: float
    confidence: float
    observed_agreement: float
    expected_agreement: float
    n: int
    labels: list[Any]
    weights: str | None
    ci_method: str = "asymptotic (Fleiss, Cohen & Everitt 1969)"
    reason: str | None = None


def cohen_kappa(
    original: Sequence[Any],
    defaced: Sequence[Any],
    *,
    labels: Sequence[Any] | None = None,
    weights: str | None = None,
    confidence: float = 0.95,
) -> KappaResult:
    """Cohen's kappa; ``weights`` None (nominal), ``"linear"`` or ``"quadratic"`` (ordinal, in ``labels`` order).

    When both sequences use a single identical category, chance agreement is 1 and kappa is undefined: the
    result is NaN with a reason, and ``observed_agreement`` (1.0) still says the answers agreed.
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    x, y = list(original), list(defaced)
    if len(x) != len(y):
        raise ValueError(f"paired inputs differ in length: {len(x)} vs {len(y)}")
    n = len(x)
    if labels is None:
        try:
            labels = sorted(set(x) | set(y))
        except TypeError:
            labels = list(dict.fromkeys(x + y))
    labels = list(labels)
    unknown = (set(x) | set(y)) - set(labels)
    if unknown:
        raise ValueError(f"labels not in the label set: {sorted(map(str, unknown))}")

    def result(k, lo, hi, se, po, pe, reason=None):
        return KappaResult(float(k), float(lo), float(hi), float(se), confidence, float(po), float(pe), n,
                           labels, weights, reason=reason)

    if n == 0:
        return result(NAN, NAN, NAN, NAN, NAN, NAN, "no pairs")
    pos = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    table = np.zeros((k, k))
    for u, v in zip(x, y):
        table[pos[u], pos[v]] += 1
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    if weights is None or k < 2:
        w = np.eye(k)
    else:
        dist = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]) / (k - 1)
        w = 1 - (dist if weights == "linear" else dist**2)
    po = float(np.sum(w * p))
    pe = float(np.sum(w * np.outer(row, col)))
    if pe >= 1 - 1e-12:
        return result(NAN, NAN, NAN, NAN, po, pe,
                      "kappa undefined: chance agreement is 1 (both use one single, identical category)")
    kappa = (po - pe) / (1 - pe)
    wi = w @ col  # weighted mean over columns for each row category
    wj = row @ w
    term = np.sum(p * (w - (wi[:, None] + wj[None, :]) * (1 - kappa)) ** 2)
    var = (term - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    se = math.sqrt(max(var, 0.0))
    z = _sps.norm.ppf(0.5 + confidence / 2)
    reason = "one pair: the interval is not informative" if n == 1 else None
    return result(kappa, kappa - z * se, kappa + z * se, se, po, pe, reason)


# ------------------------------------------------------------------------------------------------------- ICC

ICC_FORMS: dict[str, str] = {
    "ICC(1,1)": "one-way random effects, absolute agreement, single measurement (McGraw & Wong ICC(1))",
    "ICC(2,1)": "two-way random effects, absolute agreement, single measurement (McGraw & Wong ICC(A,1))",
    "ICC(3,1)": "two-way mixed effects, consistency, single measurement (McGraw & Wong ICC(C,1))",
    "ICC(1,k)": "one-way random effects, absolute agreement, mean of k measurements (McGraw & Wong ICC(k))",
    "ICC(2,k)": "two-way random effects, absolute agreement, mean of k measurements (McGraw & Wong ICC(A,k))",
    "ICC(3,k)": "two-way mixed effects, consistency, mean of k measurements (McGraw & Wong ICC(C,k))",
}


@dataclass(frozen=True)
class ICCResult(_Result):
    """Intraclass correlation, Shrout & Fleiss (1979) form names, with the F-test and the exact/approximate
    F-based confidence interval of McGraw & Wong (1996)."""

    form: str
    description: str
    icc: float
    low: float
    high: float
    confidence: float
    f_value: float
    df1: float
    df2: float
    p_value: float
    n_subjects: int
    n_raters: int
    reason: str | None = None


def icc(ratings: Sequence[Sequence[float]] | np.ndarray, form: str = "ICC(2,1)", confidence: float = 0.95) -> ICCResult:
    """ICC of an (n_subjects x k_raters) table; for fidelity, the columns are original and defaced.

    The default ICC(2,1) (absolute agreement) penalises a systematic offset introduced by defacing, which
    consistency forms (ICC(3,1)) ignore.
    """
    if form not in ICC_FORMS:
        raise ValueError(f"unknown ICC form {form!r}; choose one of {sorted(ICC_FORMS)}")
    y = np.asarray(ratings, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"ratings must be a 2-D table (subjects x raters), got shape {y.shape}")
    n, k = y.shape

    def result(value, lo, hi, f, df1, df2, p, reason=None) -> ICCResult:
        return ICCResult(form, ICC_FORMS[form], float(value), float(lo), float(hi), confidence, float(f),
                         float(df1), float(df2), float(p), n, k, reason)

    if n < 2 or k < 2:
        return result(NAN, NAN, NAN, NAN, NAN, NAN, NAN, f"need at least 2 subjects and 2 raters, got {n} x {k}")
    if reason := _nonfinite_reason(y.ravel()):
        return result(NAN, NAN, NAN, NAN, NAN, NAN, NAN, reason)
    grand = y.mean()
    ss_total = np.sum((y - grand) ** 2)
    ss_rows = k * np.sum((y.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((y.mean(axis=0) - grand) ** 2)
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msw = (ss_total - ss_rows) / (n * (k - 1))
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    alpha = 1 - confidence
    one_way, model = form[4], form[6]
    single = model == "1"
    with np.errstate(divide="ignore", invalid="ignore"):
        if one_way == "1":
            value = (msr - msw) / (msr + (k - 1) * msw) if single else (msr - msw) / msr
            f, df1, df2 = msr / msw, n - 1, n * (k - 1)
        elif one_way == "3":
            value = (msr - mse) / (msr + (k - 1) * mse) if single else (msr - mse) / msr
            f, df1, df2 = msr / mse, n - 1, (n - 1) * (k - 1)
        else:
            denom = msr + (k - 1) * mse + k * (msc - mse) / n
            value = (msr - mse) / denom if single else (msr - mse) / (msr + (msc - mse) / n)
            f, df1, df2 = msr / mse, n - 1, (n - 1) * (k - 1)
    if ss_total == 0:
        return result(NAN, NAN, NAN, NAN, df1, df2, NAN, "all ratings are identical: ICC is undefined (0/0)")
    if not np.isfinite(value):
        return result(NAN, NAN, NAN, f, df1, df2, NAN, "ICC undefined for these ratings (zero variance term)")
    if not np.isfinite(f):
        # No residual/within variance: raters agree perfectly on varying subjects.
        return result(value, value, value, f, df1, df2, 0.0, "no residual variance: raters agree exactly")
    p_value = float(_sps.f.sf(f, df1, df2))
    if one_way in ("1", "3"):
        fl = f / _sps.f.ppf(1 - alpha / 2, df1, df2)
        fu = f * _sps.f.ppf(1 - alpha / 2, df2, df1)
        if single:
            lo, hi = (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)
        else:
            lo, hi = 1 - 1 / fl, 1 - 1 / fu
    else:
        # McGraw & Wong (1996) Table 7 / Shrout & Fleiss eq. for ICC(2,1): Satterthwaite df for the denominator.
        icc1 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        a = k * icc1 / (n * (1 - icc1))
        b = 1 + k * icc1 * (n - 1) / (n * (1 - icc1))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        fs = _sps.f.ppf(1 - alpha / 2, n - 1, v)
        fi = _sps.f.ppf(1 - alpha / 2, v, n - 1)
        lo1 = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi1 = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
        if single:
            lo, hi = lo1, hi1
        else:  # Spearman-Brown step-up of the single-measure bounds
            lo, hi = k * lo1 / (1 + (k - 1) * lo1), k * hi1 / (1 + (k - 1) * hi1)
    return result(value, lo, hi, f, df1, df2, p_value)


# ----------------------------------------------------------------------------------------------- Bland-Altman


@dataclass(frozen=True)
class BlandAltmanResult(_Result):
    """Bland & Altman (1986, 1999) agreement of a measurement: bias = mean(defaced - original), limits of
    agreement bias +/- z*SD, with t-based CIs (SE of bias = SD/sqrt(n), SE of a limit ~ sqrt(3 SD^2 / n))."""

    n: int
    bias: float
    sd: float
    loa_low: float
    loa_high: float
    bias_ci: tuple[float, float]
    loa_low_ci: tuple[float, float]
    loa_high_ci: tuple[float, float]
    multiplier: float
    confidence: float
    reason: str | None = None


def bland_altman(
    original: Sequence[float], defaced: Sequence[float], *, multiplier: float = 1.96, confidence: float = 0.95
) -> BlandAltmanResult:
    """Bias and 95 % limits of agreement of ``defaced - original``; ``multiplier`` 1.96 (or 2 as in the 1986
    paper). One pair gives a bias with NaN SD; all-equal differences give SD 0 and zero-width limits."""
    a, b = _paired(original, defaced)
    d = b - a
    n = d.size
    nan2 = (NAN, NAN)
    if n == 0:
        return BlandAltmanResult(0, NAN, NAN, NAN, NAN, nan2, nan2, nan2, multiplier, confidence, "no pairs")
    if reason := _nonfinite_reason(d):
        return BlandAltmanResult(n, NAN, NAN, NAN, NAN, nan2, nan2, nan2, multiplier, confidence, reason)
    bias = float(d.mean())
    if n == 1:
        return BlandAltmanResult(1, bias, NAN, NAN, NAN, nan2, nan2, nan2, multiplier, confidence,
                                 "one pair: SD and limits of agreement are undefined")
    sd = float(d.std(ddof=1))
    lo, hi = bias - multiplier * sd, bias + multiplier * sd
    t = float(_sps.t.ppf(0.5 + confidence / 2, n - 1))
    se_bias = sd / math.sqrt(n)
    se_loa = math.sqrt(3 * sd**2 / n)
    return BlandAltmanResult(
        n, bias, sd, lo, hi,
        (bias - t * se_bias, bias + t * se_bias),
        (lo - t * se_loa, lo + t * se_loa),
        (hi - t * se_loa, hi + t * se_loa),
        multiplier, confidence,
        "all differences are equal (SD 0)" if sd == 0 else None,
    )


# --------------------------------------------------------------------------------------------------- coverage

OUTCOMES = ("parsed", "unparsable", "failed")


@dataclass(frozen=True)
class Coverage(_Result):
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
class PairedComparison(_Result):
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
    a, b = _paired(original, defaced)
    return PairedComparison(
        a.size,
        float(a.mean()) if a.size else NAN,
        float(b.mean()) if b.size else NAN,
        paired_difference_ci(a, b, n_resamples=n_resamples, confidence=confidence, method=method, seed=seed),
        wilcoxon_signed_rank(a, b),
    )
