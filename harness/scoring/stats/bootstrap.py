"""Bootstrap confidence intervals over cases (percentile or BCa), and of a paired difference."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from harness.scoring.stats.common import NAN, Result, nonfinite_reason, paired_arrays

# --------------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult(Result):
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
    if numeric and (reason := nonfinite_reason(*[a.astype(float) for a in arrays])):
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
    a, b = paired_arrays(original, defaced)
    return bootstrap_ci(b - a, np.mean, n_resamples=n_resamples, confidence=confidence, method=method, seed=seed)
