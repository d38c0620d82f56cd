"""Paired statistics, checked against scipy/statsmodels and published worked examples."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.scoring.stats import (
    ICC_FORMS,
    benjamini_hochberg,
    bland_altman,
    bootstrap_ci,
    cohen_kappa,
    complete_pairs,
    coverage,
    icc,
    paired_comparison,
    mcnemar,
    paired_difference_ci,
    wilcoxon_signed_rank,
)

from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa
from statsmodels.stats.multitest import multipletests

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])

# Bland & Altman (1986, Lancet): peak expiratory flow, Wright vs mini Wright meter (first readings), 17 subjects.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI_WRIGHT = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def _is_json(result):
    text = json.dumps(result.to_dict(), allow_nan=False)
    return json.loads(text)


# ------------------------------------------------------------------------------------------------ ICC
@pytest.mark.parametrize(
    "form, value, low, high",
    [
        # point values: Shrout & Fleiss Table 4; bounds: R psych::ICC on the same data (McGraw & Wong CIs)
        ("ICC(1,1)", 0.17, -0.133, 0.723),
        ("ICC(2,1)", 0.29, 0.019, 0.761),
        ("ICC(3,1)", 0.71, 0.342, 0.946),
        ("ICC(1,k)", 0.44, -0.884, 0.912),
        ("ICC(2,k)", 0.62, 0.071, 0.927),
        ("ICC(3,k)", 0.91, 0.676, 0.986),
    ],
)
def test_icc_matches_shrout_fleiss_worked_example(form, value, low, high):
    r = icc(SHROUT_FLEISS, form)
    assert r.icc == pytest.approx(value, abs=0.006)
    assert r.low == pytest.approx(low, abs=0.002)
    assert r.high == pytest.approx(high, abs=0.002)
    assert r.form == form and "McGraw & Wong" in r.description
    assert r.n_subjects == 6 and r.n_raters == 4


def test_icc_f_test_matches_anova_values():
    r = icc(SHROUT_FLEISS, "ICC(3,1)")
    assert r.f_value == pytest.approx(11.03, abs=0.01)
    assert (r.df1, r.df2) == (5, 15)
    assert r.p_value == pytest.approx(0.000135, abs=2e-6)


def test_icc_absolute_agreement_penalises_a_systematic_offset_but_consistency_does_not():
    original = np.array([0.25, 0.28, 0.31, 0.35, 0.27, 0.40])
    table = np.column_stack([original, original + 0.05])
    assert icc(table, "ICC(3,1)").icc == pytest.approx(1.0)
    assert icc(table, "ICC(2,1)").icc < 0.8


def test_icc_degenerate_inputs_give_nan_with_reason():
    for table, words in [(np.ones((5, 2)), "identical"), (np.ones((1, 2)), "at least 2"), (np.zeros((0, 2)), "at least 2")]:
        r = icc(table)
        assert math.isnan(r.icc) and words in r.reason
        _is_json(r)
    with pytest.raises(ValueError, match="unknown ICC form"):
        icc(SHROUT_FLEISS, "ICC(4,1)")
    assert set(ICC_FORMS) >= {"ICC(2,1)", "ICC(3,1)"}


# ------------------------------------------------------------------------------------------------ kappa
def _table(a, b, k):
    t = np.zeros((k, k))
    for u, v in zip(a, b):
        t[u, v] += 1
    return t


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_and_its_standard_error_match_statsmodels(weights):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, 80)
    b = np.where(rng.random(80) < 0.7, a, rng.integers(0, 3, 80))
    ours = cohen_kappa(a, b, weights=weights)
    ref = sm_kappa(_table(a, b, 3), wt=weights)
    assert ours.kappa == pytest.approx(ref.kappa, rel=1e-12)
    assert ours.se == pytest.approx(ref.std_kappa, rel=1e-9)
    assert ours.low == pytest.approx(ref.kappa_low, rel=1e-9)
    assert ours.high == pytest.approx(ref.kappa_upp, rel=1e-9)


def test_kappa_textbook_example():
    # Two raters, yes/no, 50 items: 20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no -> kappa = 0.4 (Wikipedia example).
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    r = cohen_kappa(a, b)
    assert r.kappa == pytest.approx(0.4)
    assert r.observed_agreement == pytest.approx(0.7)
    assert r.expected_agreement == pytest.approx(0.5)
    assert r.labels == ["no", "yes"]


def test_kappa_single_category_is_undefined_but_agreement_is_reported():
    r = cohen_kappa(["no"] * 10, ["no"] * 10)
    assert math.isnan(r.kappa) and "chance agreement is 1" in r.reason
    assert r.observed_agreement == 1.0
    assert _is_json(r)["kappa"] is None
    assert "no pairs" in cohen_kappa([], []).reason
    with pytest.raises(ValueError, match="not in the label set"):
        cohen_kappa(["a"], ["b"], labels=["a"])


# ---------------------------------------------------------------------------------------------- McNemar
def _pairs(n11, b, c, n00):
    return [1] * n11 + [1] * b + [0] * c + [0] * n00, [1] * n11 + [0] * b + [1] * c + [0] * n00


def test_mcnemar_agresti_presidential_approval_example():
    # Agresti (2002) Table 10.1: 794, 150, 86, 570 -> uncorrected z^2 = 17.36.
    x, y = _pairs(794, 150, 86, 570)
    r = mcnemar(x, y, correction=False)
    assert r.statistic == pytest.approx(17.356, abs=1e-3)
    assert r.method == "chi2" and r.p_value < 0.001
    corrected = mcnemar(x, y)
    ref = sm_mcnemar([[794, 150], [86, 570]], exact=False, correction=True)
    assert corrected.method == "chi2-corrected"
    assert corrected.statistic == pytest.approx(ref.statistic) and corrected.p_value == pytest.approx(ref.pvalue)


def test_mcnemar_uses_exact_binomial_for_few_discordant_pairs():
    x, y = _pairs(10, 6, 1, 5)
    r = mcnemar(x, y)
    ref = sm_mcnemar([[10, 6], [1, 5]], exact=True)
    assert r.method == "exact-binomial" and (r.b, r.c) == (6, 1)
    assert r.p_value == pytest.approx(ref.pvalue) == pytest.approx(0.125)


def test_mcnemar_degenerate():
    r = mcnemar([True, False], [True, False])
    assert r.p_value == 1.0 and "no discordant" in r.reason
    assert math.isnan(mcnemar([], []).p_value)
    with pytest.raises(ValueError, match="booleans"):
        mcnemar(["yes"], ["no"])


# --------------------------------------------------------------------------------------------- Wilcoxon
def test_wilcoxon_hollander_wolfe_depression_example():
    # Hollander & Wolfe (1973) p. 29, as in R's ?wilcox.test: V = 40, one-sided p = 0.01953.
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    # our difference is defaced - original, so x plays "defaced"
    one = wilcoxon_signed_rank(y, x, alternative="greater")
    assert one.statistic == 40 and one.p_value == pytest.approx(0.01953, abs=1e-5) and one.method == "exact"
    two = wilcoxon_signed_rank(y, x)
    assert two.p_value == pytest.approx(0.0390625)
    assert two.rank_biserial == pytest.approx((40 - 5) / 45)


def test_wilcoxon_zero_differences_are_handled_explicitly():
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    b = a + np.r_[np.zeros(20), rng.normal(0.3, 1, 40)]
    r = wilcoxon_signed_rank(a, b)
    assert (r.n, r.n_zero, r.n_nonzero) == (60, 20, 40)
    ref = sps.wilcoxon((b - a)[20:], method="exact")
    assert r.p_value == pytest.approx(ref.pvalue) and r.method == "exact"
    pratt = wilcoxon_signed_rank(a, b, zero_method="pratt")
    assert pratt.method == "approx"
    assert pratt.p_value == pytest.approx(sps.wilcoxon(b - a, zero_method="pratt", method="approx").pvalue)


def test_wilcoxon_ties_use_the_normal_approximation_like_scipy():
    a = np.zeros(30)
    b = np.array([1, 1, 2, -1, 2, 3, 1, -2] * 3 + [1] * 6, dtype=float)
    r = wilcoxon_signed_rank(a, b)
    assert r.method == "approx"
    assert r.p_value == pytest.approx(sps.wilcoxon(b, method="approx").pvalue)


def test_wilcoxon_all_zero_and_empty():
    r = wilcoxon_signed_rank([1, 2, 3], [1, 2, 3])
    assert r.p_value == 1.0 and r.n_zero == 3 and "all paired differences are zero" in r.reason
    e = wilcoxon_signed_rank([], [])
    assert math.isnan(e.p_value) and e.reason == "no pairs"
    n = wilcoxon_signed_rank([1.0, float("nan")], [1.0, 2.0])
    assert math.isnan(n.p_value) and "NaN" in n.reason
    with pytest.raises(ValueError, match="differ in length"):
        wilcoxon_signed_rank([1, 2], [1])


# ------------------------------------------------------------------------------------------------- BH
def test_benjamini_hochberg_matches_statsmodels_and_ignores_nan():
    p = {"rougeL": 0.01, "bertscore": 0.04, "f1_intra": 0.03, "f1_extra": 0.2, "er": 0.5, "dx": 0.001}
    r = benjamini_hochberg(p)
    ref_rej, ref_adj, _, _ = multipletests(list(p.values()), method="fdr_bh")
    assert np.allclose(r.adjusted, ref_adj) and r.rejected == list(ref_rej)
    assert r.by_name()["dx"] == pytest.approx(0.006)
    with_nan = benjamini_hochberg([0.01, float("nan"), 0.04])
    assert with_nan.n_tests == 2 and math.isnan(with_nan.adjusted[1])
    assert np.allclose([with_nan.adjusted[0], with_nan.adjusted[2]], multipletests([0.01, 0.04], method="fdr_bh")[1])
    assert benjamini_hochberg([]).n_tests == 0
    _is_json(with_nan)


# ------------------------------------------------------------------------------------------ Bland-Altman
def test_bland_altman_1986_pefr_example():
    r = bland_altman(MINI_WRIGHT, WRIGHT, multiplier=2)  # the 1986 paper used 2 SD
    assert r.bias == pytest.approx(-2.1, abs=0.05)
    assert r.sd == pytest.approx(38.8, abs=0.05)
    assert (r.loa_low, r.loa_high) == (pytest.approx(-79.7, abs=0.1), pytest.approx(75.5, abs=0.1))
    assert r.bias_ci == (pytest.approx(-22.0, abs=0.1), pytest.approx(17.8, abs=0.1))
    # SE of a limit = sqrt(3 s^2 / n) = 16.3; t(16) = 2.12
    assert r.loa_low_ci[1] - r.loa_low_ci[0] == pytest.approx(2 * 2.12 * 16.3, abs=0.3)


def test_bland_altman_degenerate():
    one = bland_altman([1.0], [2.0])
    assert one.bias == 1.0 and math.isnan(one.sd) and "one pair" in one.reason
    same = bland_altman([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert same.sd == 0 and same.loa_low == same.loa_high == 0.5
    assert math.isnan(bland_altman([], []).bias)
    assert _is_json(one)["loa_low"] is None


# -------------------------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_agrees_with_scipy(method):
    d = np.random.default_rng(7).normal(0.1, 1, 60)
    ours = bootstrap_ci(d, np.mean, method=method, n_resamples=20000, seed=3)
    ref = sps.bootstrap((d,), np.mean, method="BCa" if method == "bca" else "percentile", n_resamples=20000,
                        rng=np.random.default_rng(11)).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=0.02)
    assert ours.high == pytest.approx(ref.high, abs=0.02)
    assert ours.estimate == pytest.approx(d.mean()) and ours.method == method


def test_bootstrap_is_seeded_and_generic_statistics_resample_pairs_together():
    a = np.random.default_rng(0).integers(0, 2, 40)
    b = a.copy()
    b[:6] = 1 - b[:6]
    agree = lambda x, y: float(np.mean(x == y))  # noqa: E731
    r1 = bootstrap_ci((a, b), agree, paired=True, n_resamples=500, seed=5)
    r2 = bootstrap_ci((a, b), agree, paired=True, n_resamples=500, seed=5)
    assert r1 == r2 and r1.estimate == pytest.approx(34 / 40)
    assert r1.low < 0.85 < r1.high <= 1.0
    # generic path (a lambda) and vectorised path (np.mean) give the same interval for the same seed
    d = np.random.default_rng(2).normal(size=30)
    fast = bootstrap_ci(d, np.mean, n_resamples=300, seed=9)
    slow = bootstrap_ci((d,), lambda x: float(np.mean(x)), paired=True, n_resamples=300, seed=9)
    assert fast.low == pytest.approx(slow.low) and fast.high == pytest.approx(slow.high)


def test_paired_difference_ci_covers_the_true_shift():
    rng = np.random.default_rng(4)
    orig = rng.normal(0.3, 0.05, 200)
    defaced = orig + 0.02 + rng.normal(0, 0.01, 200)
    r = paired_difference_ci(orig, defaced)
    assert r.low < 0.02 < r.high and r.high - r.low < 0.01


def test_bootstrap_degenerate_inputs():
    assert bootstrap_ci([], np.mean).reason == "no cases"
    one = bootstrap_ci([0.5], np.mean)
    assert one.estimate == 0.5 and math.isnan(one.low) and "one case" in one.reason
    const = bootstrap_ci([1.0] * 10, np.mean, method="bca")
    assert const.low == const.high == 1.0
    nan = bootstrap_ci([1.0, float("nan")], np.mean)
    assert math.isnan(nan.estimate) and "NaN" in nan.reason
    assert _is_json(one)["low"] is None
    with pytest.raises(ValueError, match="percentile"):
        bootstrap_ci([1.0, 2.0], method="basic")


# --------------------------------------------------------------------------------------------- coverage
def test_coverage_counts_unparsable_separately_from_failed():
    c = coverage(["parsed", "parsed", "unparsable", "failed", "parsed"],
                 [None, None, "no JSON object found", "timeout after 60 s", None])
    assert (c.n_total, c.n_answered, c.n_parsed, c.n_unparsable, c.n_failed) == (5, 4, 3, 1, 1)
    assert c.parsed_fraction == pytest.approx(0.6)
    assert c.reasons == {"no JSON object found": 1, "timeout after 60 s": 1}
    assert _is_json(coverage([]))["parsed_fraction"] is None
    with pytest.raises(ValueError, match="unknown outcome"):
        coverage(["wrong"])


def test_complete_pairs_and_paired_comparison():
    a, b, dropped = complete_pairs([0.3, None, 0.31, float("nan"), 0.28], [0.32, 0.3, None, 0.29, 0.27])
    assert (a, b, dropped) == ([0.3, 0.28], [0.32, 0.27], 3)
    rng = np.random.default_rng(8)
    orig = rng.normal(0.5, 0.1, 80)
    r = paired_comparison(orig, orig - 0.03 + rng.normal(0, 0.01, 80))
    assert r.n == 80 and r.mean_defaced < r.mean_original
    assert r.difference.high < 0 and r.wilcoxon.p_value < 1e-6
    d = _is_json(r)
    assert d["difference"]["method"] == "percentile" and d["wilcoxon"]["zero_method"] == "wilcox"
    empty = paired_comparison([], [])
    assert empty.n == 0 and _is_json(empty)["mean_original"] is None
