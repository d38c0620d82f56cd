"""Coefficient of repeatability (CR) of a measurement made twice per case, and its normalised form over many
regions (nCR), as Molchanova et al. 2024 report them for brain volumes before and after defacing.

Definitions (the two measurements of case i are x_i on the original and y_i on the defaced volume, d_i = y_i - x_i):

    within-subject SD      s_w = sqrt( sum_i d_i^2 / (2 n) )           (Bland & Altman 1996, BMJ 313:744, "Measurement
                                                                        error": s_w^2 from duplicate measurements)
    CR                     CR  = 1.96 * sqrt(2) * s_w = 1.96 * sqrt( sum_i d_i^2 / n )
                                                                       (Bland & Altman 1986, Lancet i:307; the form
                                                                        Molchanova et al. 2024 cite: 95 % of the
                                                                        differences between two measurements of one
                                                                        case are expected within +-CR)
    nCR                    each region r's volumes are min-max scaled by the ORIGINALS' range over the cases,
                           v' = (v - min_i x_ir) / (max_i x_ir - min_i x_ir), on both conditions; then
                           nCR = 1.96 * sqrt( sum_{i,r} (y'_ir - x'_ir)^2 / (n R) )   (one CR over all regions jointly)

CR is built on the mean of the squared differences, not on their SD around the mean difference: a systematic shift
introduced by defacing raises CR (the Bland-Altman limits of agreement, bias +- 1.96 SD, show the shift apart; see
harness.scoring.stats.agreement.bland_altman). nCR is unitless, comparable across regions of very different size,
and in [0, 1.96 * sqrt(2)]-ish units of each region's spread across the cohort.

Bootstrap CIs resample cases (rows), as every other statistic here; nCR's scaling is recomputed on each resample
from that resample's originals (the statistic applied to the resampled table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.scoring.stats.bootstrap import bootstrap_ci
from harness.scoring.stats.common import NAN, Result, paired_arrays

Z_95 = 1.96


@dataclass(frozen=True)
class RepeatabilityResult(Result):
    """CR (or nCR) with its bootstrap CI over cases; within_sd is s_w (for nCR: over all regions jointly)."""

    cr: float
    low: float
    high: float
    within_sd: float
    n: int  # cases
    n_regions: int
    reason: str | None = None


def cr_of(original: np.ndarray, defaced: np.ndarray) -> float:
    """1.96 * sqrt(mean of squared differences) over every entry (the definition above)."""
    d = np.asarray(defaced, float) - np.asarray(original, float)
    return Z_95 * math.sqrt(float(np.mean(d**2))) if d.size else NAN


def min_max_scaled(original: np.ndarray, defaced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both (cases x regions) tables scaled per region by the originals' min and max over the cases. A region whose
    originals are all equal has no range: ValueError (nCR is undefined for it)."""
    lo, hi = original.min(axis=0), original.max(axis=0)
    span = hi - lo
    if np.any(span <= 0):
        raise ValueError("a region's original volumes are all equal: no range to scale by")
    return (original - lo) / span, (defaced - lo) / span


def ncr_of(original: np.ndarray, defaced: np.ndarray) -> float:
    scaled_o, scaled_d = min_max_scaled(np.asarray(original, float), np.asarray(defaced, float))
    return cr_of(scaled_o, scaled_d)


def coefficient_of_repeatability(original, defaced, *, n_resamples: int = 2000, seed: int = 0) -> RepeatabilityResult:
    """CR of one measurement (one value per case on each condition), with a bootstrap 95 % CI over cases."""
    a, b = paired_arrays(original, defaced)
    if a.size == 0:
        return RepeatabilityResult(NAN, NAN, NAN, NAN, 0, 1, "no pairs")
    ci = bootstrap_ci((a, b), cr_of, paired=True, n_resamples=n_resamples, seed=seed)
    return RepeatabilityResult(ci.estimate, ci.low, ci.high, ci.estimate / (Z_95 * math.sqrt(2)), a.size, 1, ci.reason)


def normalised_cr(original, defaced, *, n_resamples: int = 2000, seed: int = 0) -> RepeatabilityResult:
    """nCR of a (cases x regions) table of volumes on the original and the defaced condition (same cases, same
    region order), with a bootstrap 95 % CI over cases. Regions whose originals do not vary are left out (their
    scaling is undefined) and the reason says which count; fewer than 2 cases give NaN."""
    o, d = np.asarray(original, float), np.asarray(defaced, float)
    if o.ndim != 2 or o.shape != d.shape:
        raise ValueError(f"nCR needs two (cases x regions) tables of one shape, got {o.shape} and {d.shape}")
    n = o.shape[0]
    if n < 2:
        return RepeatabilityResult(NAN, NAN, NAN, NAN, n, o.shape[1], "nCR needs at least 2 cases (a range of volumes)")
    varies = o.max(axis=0) > o.min(axis=0)
    dropped = int((~varies).sum())
    o, d = o[:, varies], d[:, varies]
    if o.shape[1] == 0:
        return RepeatabilityResult(NAN, NAN, NAN, NAN, n, 0, "no region's original volumes vary across the cases")
    ci = bootstrap_ci((o, d), ncr_of, paired=True, n_resamples=n_resamples, seed=seed)
    notes = [r for r in (ci.reason, f"{dropped} region(s) with constant original volumes left out" if dropped else None) if r]
    return RepeatabilityResult(ci.estimate, ci.low, ci.high, ci.estimate / (Z_95 * math.sqrt(2)), n, o.shape[1],
                               "; ".join(notes) or None)
