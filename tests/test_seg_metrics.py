"""Segmentation-fidelity metrics against hand-computed values on small tables: Dice of raw labels and merged regions
from the confusion table, CR and nCR (Molchanova et al. 2024, after Bland & Altman 1986), and the cohort statistics
(Wilcoxon + Benjamini-Hochberg per region, Bland-Altman, relative change)."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.scoring.segmentation import (
    confusion,
    dice_of,
    label_counts,
    region_volumes_ml,
    relative_change,
    volume_statistics,
)
from harness.scoring.stats import coefficient_of_repeatability, normalised_cr

# three cases x two regions: A (ml) and B (ml)
ORIG = np.array([[10.0, 100.0], [12.0, 200.0], [14.0, 300.0]])
DEF = np.array([[11.0, 100.0], [12.0, 220.0], [12.0, 310.0]])  # 310: outside the originals' range


def test_cr_is_196_times_root_mean_square_difference():
    # d = [1, 0, -2]: sum d^2 = 5, n = 3 -> CR = 1.96 sqrt(5/3); s_w = sqrt(5 / 6)
    r = coefficient_of_repeatability(ORIG[:, 0], DEF[:, 0], n_resamples=200)
    assert r.cr == pytest.approx(2.530349, abs=1e-6)
    assert r.within_sd == pytest.approx(math.sqrt(5 / 6))
    assert r.cr == pytest.approx(1.96 * math.sqrt(2) * r.within_sd)
    assert r.low <= r.cr <= r.high and r.n == 3


def test_cr_counts_a_systematic_shift():
    # every case 2 ml larger: SD of the differences is 0, CR is not
    r = coefficient_of_repeatability([10, 20, 30, 40], [12, 22, 32, 42], n_resamples=100)
    assert r.cr == pytest.approx(1.96 * 2)


def _ncr_by_definition(orig, dfc):
    """Loop form of the definition: scale each region by the originals' min/max, one CR over every entry."""
    total, count = 0.0, 0
    for r in range(orig.shape[1]):
        lo, hi = min(orig[:, r]), max(orig[:, r])
        for i in range(orig.shape[0]):
            x = (orig[i, r] - lo) / (hi - lo)
            y = (dfc[i, r] - lo) / (hi - lo)
            total += (y - x) ** 2
            count += 1
    return 1.96 * math.sqrt(total / count)


def test_ncr_scales_by_the_originals_range_and_pools_regions():
    # A: x' = [0, .5, 1], y' = [.25, .5, .5]; B: x' = [0, .5, 1], y' = [0, .6, 1.05]
    # squared differences .0625 + 0 + .25 + 0 + .01 + .0025 = .325 over 6 entries
    r = normalised_cr(ORIG, DEF, n_resamples=200)
    assert r.cr == pytest.approx(1.96 * math.sqrt(0.325 / 6))
    assert r.cr == pytest.approx(_ncr_by_definition(ORIG, DEF))
    assert r.n == 3 and r.n_regions == 2 and "left out" not in (r.reason or "")  # resamples of one case have no range
    assert r.low <= r.cr <= r.high


def test_ncr_leaves_out_a_region_without_range_and_says_so():
    orig = np.column_stack([ORIG, [5.0, 5.0, 5.0]])
    dfc = np.column_stack([DEF, [6.0, 4.0, 5.0]])
    r = normalised_cr(orig, dfc, n_resamples=50)
    assert r.cr == pytest.approx(_ncr_by_definition(ORIG, DEF))
    assert r.n_regions == 2 and "1 region" in r.reason
    assert math.isnan(normalised_cr(ORIG[:1], DEF[:1]).cr)


def test_dice_of_raw_labels_and_merged_regions_from_the_confusion_table():
    a = np.array([0, 1, 1, 2, 2, 3]).reshape(1, 1, 6)
    b = np.array([0, 1, 2, 2, 2, 0]).reshape(1, 1, 6)
    conf = confusion(a, b)
    assert conf == {(1, 1): 1, (1, 2): 1, (2, 2): 2, (3, 0): 1}
    assert dice_of(conf, [1]) == pytest.approx(2 / 3)  # |A| 2, |B| 1, both 1
    assert dice_of(conf, [2]) == pytest.approx(4 / 5)  # |A| 2, |B| 3, both 2
    assert dice_of(conf, [3]) == 0.0
    assert dice_of(conf, [1, 2]) == 1.0  # a 1 -> 2 swap stays inside the merged region
    assert dice_of(conf, [7]) is None
    counts_a, counts_b = label_counts(conf)
    assert counts_a == {1: 2, 2: 2, 3: 1} and counts_b == {1: 1, 2: 3}
    assert region_volumes_ml(counts_b, 0.5, {"r": [1, 2], "s": [3]}) == {"r": 2.0, "s": 0.0}
    assert relative_change(4.0, 5.0) == pytest.approx(25.0) and relative_change(0.0, 1.0) is None


def test_volume_statistics_per_region_and_cohort():
    rng = np.random.default_rng(3)
    orig = {"caudate": list(rng.uniform(3, 5, 8)), "ventricles": list(rng.uniform(20, 60, 8))}
    dfc = {"caudate": [v * 1.02 + 0.01 * i for i, v in enumerate(orig["caudate"])],
           "ventricles": [v + rng.normal(0, 0.5) for v in orig["ventricles"]]}
    out = volume_statistics(orig, dfc, n_resamples=200)
    p = {k: stats.wilcoxon(np.subtract(dfc[k], orig[k])).pvalue for k in orig}
    ranked = sorted(p, key=p.get)
    q_low = min(p[ranked[0]] * 2, p[ranked[1]])  # BH over two tests
    assert out["regions"][ranked[0]]["wilcoxon"]["p"] == pytest.approx(p[ranked[0]])
    assert out["regions"][ranked[0]]["wilcoxon"]["q"] == pytest.approx(q_low)
    assert out["regions"][ranked[1]]["wilcoxon"]["q"] == pytest.approx(p[ranked[1]])
    change = 100 * (np.array(dfc["caudate"]) - orig["caudate"]) / orig["caudate"]
    assert out["regions"]["caudate"]["change_pct"]["mean"] == pytest.approx(change.mean())
    d = np.subtract(dfc["ventricles"], orig["ventricles"])
    assert out["regions"]["ventricles"]["bland_altman"]["bias"] == pytest.approx(d.mean())
    assert out["regions"]["ventricles"]["cr"]["cr"] == pytest.approx(1.96 * math.sqrt(np.mean(d**2)))
    table_o = np.column_stack([orig["caudate"], orig["ventricles"]])
    table_d = np.column_stack([dfc["caudate"], dfc["ventricles"]])
    assert out["ncr"]["cr"] == pytest.approx(_ncr_by_definition(table_o, table_d))
