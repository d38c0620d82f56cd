"""Segmentation fidelity: how a label map of a defaced volume differs from the label map of its original.

Per case (two label maps on one grid):
- a sparse confusion table {(label in original, label in defaced): voxels} (`confusion`), from which every Dice
  follows, for raw labels and for merged regions alike: Dice_g = 2 |A_g & B_g| / (|A_g| + |B_g|), where A_g is the
  set of voxels whose original label lies in region g (a voxel labelled caudate in one map and putamen in the other
  still counts for a region holding both);
- volumes per region in millilitres and the relative change (defaced - original) / original x 100.
Per cohort (one value per case and region on each condition; `volume_statistics`): Wilcoxon signed-rank on each
region's volumes with Benjamini-Hochberg over the regions (Molchanova et al. 2024), Bland-Altman, the coefficient of
repeatability per region and the normalised CR over all regions (harness.scoring.stats.repeatability), and the mean
relative change with a bootstrap 95 % CI over cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from harness.scoring.stats import (
    benjamini_hochberg,
    bland_altman,
    bootstrap_ci,
    coefficient_of_repeatability,
    normalised_cr,
    wilcoxon_signed_rank,
)
from harness.scoring.stats.common import json_safe

Confusion = dict[tuple[int, int], int]


def confusion(original: np.ndarray, defaced: np.ndarray) -> Confusion:
    """{(original label, defaced label): voxel count} over the voxels labelled in either map (0 = background)."""
    if original.shape != defaced.shape:
        raise ValueError(f"label maps differ in shape: {original.shape} vs {defaced.shape}")
    a = np.asarray(original, dtype=np.int64).ravel()
    b = np.asarray(defaced, dtype=np.int64).ravel()
    keep = (a != 0) | (b != 0)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return {}
    if min(a.min(), b.min()) < 0:
        raise ValueError("label maps hold negative labels")
    base = int(max(a.max(), b.max())) + 1
    pairs, counts = np.unique(a * base + b, return_counts=True)
    return {(int(p // base), int(p % base)): int(c) for p, c in zip(pairs, counts)}


def dice_of(conf: Confusion, labels) -> float | None:
    """Dice of the region made of `labels` (None when neither map has any of it: nothing to compare)."""
    group = set(labels)
    inter = sum(c for (la, lb), c in conf.items() if la in group and lb in group)
    size_a = sum(c for (la, _), c in conf.items() if la in group)
    size_b = sum(c for (_, lb), c in conf.items() if lb in group)
    return 2.0 * inter / (size_a + size_b) if size_a + size_b else None


def label_counts(conf: Confusion) -> tuple[dict[int, int], dict[int, int]]:
    """Voxels per label in the original and in the defaced map (from the confusion table)."""
    a: dict[int, int] = {}
    b: dict[int, int] = {}
    for (la, lb), c in conf.items():
        a[la] = a.get(la, 0) + c
        b[lb] = b.get(lb, 0) + c
    a.pop(0, None)
    b.pop(0, None)
    return a, b


def region_volumes_ml(counts: Mapping[int, int], voxel_ml: float, regions: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Volume of each region (sum of its labels' voxels x voxel volume)."""
    return {name: voxel_ml * sum(counts.get(int(label), 0) for label in labels) for name, labels in regions.items()}


def relative_change(original: float | None, defaced: float | None) -> float | None:
    """(defaced - original) / original x 100; None when the original region is empty."""
    if original is None or defaced is None or original <= 0:
        return None
    return 100.0 * (defaced - original) / original


def volume_statistics(original: Mapping[str, Sequence[float]], defaced: Mapping[str, Sequence[float]], *,
                      n_resamples: int = 2000, seed: int = 0) -> dict:
    """Cohort statistics of region volumes: {"regions": {name: {...}}, "ncr": {...}, "test_family": ...}.

    original[name][i] and defaced[name][i] are region `name`'s volume in case i (the same cases in the same order for
    every region; a case missing a region on either side must be left out of all regions by the caller). Per region:
    Wilcoxon signed-rank (p, and q = Benjamini-Hochberg over the regions), Bland-Altman, CR with CI, mean relative
    change (%) with CI. nCR over the regions whose originals vary."""
    names = list(original)
    regions: dict[str, dict] = {}
    p_values: dict[str, float] = {}
    for name in names:
        o = np.asarray(original[name], float)
        d = np.asarray(defaced[name], float)
        test = wilcoxon_signed_rank(o, d)
        p_values[name] = test.p_value
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.where(o > 0, 100.0 * (d - o) / o, np.nan)
        change = change[np.isfinite(change)]
        ci = bootstrap_ci(change, np.mean, n_resamples=n_resamples, seed=seed)
        regions[name] = {"n": int(o.size), "original_mean_ml": float(o.mean()) if o.size else None,
                         "defaced_mean_ml": float(d.mean()) if d.size else None,
                         "change_pct": {"mean": ci.estimate, "low": ci.low, "high": ci.high, "n": int(change.size)},
                         "wilcoxon": {"statistic": test.statistic, "p": test.p_value, "reason": test.reason},
                         "bland_altman": bland_altman(o, d).to_dict(),
                         "cr": coefficient_of_repeatability(o, d, n_resamples=n_resamples, seed=seed).to_dict()}
    adjusted = benjamini_hochberg(p_values).by_name() if p_values else {}
    for name, q in adjusted.items():
        regions[name]["wilcoxon"]["q"] = q
    table_o = np.column_stack([np.asarray(original[n], float) for n in names]) if names else np.zeros((0, 0))
    table_d = np.column_stack([np.asarray(defaced[n], float) for n in names]) if names else np.zeros((0, 0))
    ncr = normalised_cr(table_o, table_d, n_resamples=n_resamples, seed=seed).to_dict() if names else None
    return json_safe({"regions": regions, "ncr": ncr,
                      "test_family": "Wilcoxon signed-rank per region, Benjamini-Hochberg over the regions"})
