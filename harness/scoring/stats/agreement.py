"""Agreement between the original and the defaced answers: Cohen's kappa, ICC, Bland-Altman."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from harness.scoring.stats.common import NAN, Result, nonfinite_reason, paired_arrays

# ----------------------------------------------------------------------------------------------------- kappa


@dataclass(frozen=True)
class KappaResult(Result):
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
class ICCResult(Result):
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
    if reason := nonfinite_reason(y.ravel()):
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
class BlandAltmanResult(Result):
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
    a, b = paired_arrays(original, defaced)
    d = b - a
    n = d.size
    nan2 = (NAN, NAN)
    if n == 0:
        return BlandAltmanResult(0, NAN, NAN, NAN, NAN, nan2, nan2, nan2, multiplier, confidence, "no pairs")
    if reason := nonfinite_reason(d):
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
