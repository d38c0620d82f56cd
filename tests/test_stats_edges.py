"""Paired statistics at their edges: whole result records of degenerate inputs, boundaries the docstrings name,
options passed through, and properties that pin the formulas (invariance, Spearman-Brown, symmetry).

Every result record is what the leaderboard publishes, so the degenerate ones are checked field by field: a NaN
must stay a float NaN (not None, not 0), counts must be counts, and the reason must say why.
"""

import dataclasses
import functools
import math
import re
import warnings

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

from harness.scoring.stats import (
    benjamini_hochberg,
    bland_altman,
    bootstrap_ci,
    cohen_kappa,
    complete_pairs,
    coverage,
    icc,
    mcnemar,
    paired_comparison,
    paired_difference_ci,
    wilcoxon_signed_rank,
)
from harness.scoring.stats.common import json_safe

NAN = float("nan")
NAN2 = (NAN, NAN)
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI_WRIGHT = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


class Words:
    """Expected text: contains every one of these key words (the wording around them is free)."""

    def __init__(self, *words):
        self.words = words

    def __repr__(self):
        return f"Words{self.words}"


def _same(actual, expected):
    if isinstance(expected, Words):
        return isinstance(actual, str) and all(w in actual for w in expected.words)
    if isinstance(expected, tuple):
        return isinstance(actual, tuple) and len(actual) == len(expected) and all(map(_same, actual, expected))
    if isinstance(expected, float):
        if math.isnan(expected):
            return isinstance(actual, float) and math.isnan(actual)
        return isinstance(actual, float) and actual == pytest.approx(expected, rel=1e-9, abs=1e-12)
    return type(actual) is type(expected) and actual == expected


def assert_record(result, **expected):
    """Every field of a result, none left out."""
    actual = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    assert set(actual) == set(expected)
    wrong = {k: (actual[k], v) for k, v in expected.items() if not _same(actual[k], v)}
    assert not wrong, wrong


# ---------------------------------------------------------------------------------------------- Bland-Altman
def test_bland_altman_default_is_1_96_sd_with_t_based_cis_of_bias_and_both_limits():
    r = bland_altman(MINI_WRIGHT, WRIGHT)
    d = np.subtract(WRIGHT, MINI_WRIGHT)
    n, bias, sd = d.size, d.mean(), d.std(ddof=1)
    t = sps.t.ppf(0.975, n - 1)
    se_bias, se_limit = sd / math.sqrt(n), math.sqrt(3 * sd**2 / n)
    lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    assert_record(r, n=17, bias=bias, sd=sd, loa_low=lo, loa_high=hi,
                  bias_ci=(bias - t * se_bias, bias + t * se_bias),
                  loa_low_ci=(lo - t * se_limit, lo + t * se_limit),
                  loa_high_ci=(hi - t * se_limit, hi + t * se_limit),
                  multiplier=1.96, confidence=0.95, reason=None)
    # Bland & Altman (1986): upper limit 75.5 (2 SD) with CI 40.9 to 110.1
    two = bland_altman(MINI_WRIGHT, WRIGHT, multiplier=2.0)
    assert two.loa_high_ci == (pytest.approx(40.9, abs=0.2), pytest.approx(110.1, abs=0.2))


def test_bland_altman_confidence_sets_the_t_quantile():
    r = bland_altman(MINI_WRIGHT, WRIGHT, confidence=0.9)
    t = sps.t.ppf(0.95, 16)
    assert r.confidence == 0.9
    assert r.bias_ci[1] - r.bias_ci[0] == pytest.approx(2 * t * r.sd / math.sqrt(17))


def test_bland_altman_degenerate_records():
    assert_record(bland_altman([], []), n=0, bias=NAN, sd=NAN, loa_low=NAN, loa_high=NAN, bias_ci=NAN2,
                  loa_low_ci=NAN2, loa_high_ci=NAN2, multiplier=1.96, confidence=0.95, reason=Words("no pairs"))
    assert_record(bland_altman([1.0, NAN, 3.0], [1.0, 2.0, 3.0], multiplier=2.0, confidence=0.9), n=3, bias=NAN,
                  sd=NAN, loa_low=NAN, loa_high=NAN, bias_ci=NAN2, loa_low_ci=NAN2, loa_high_ci=NAN2,
                  multiplier=2.0, confidence=0.9, reason=Words("NaN", "drop failed/unparsable"))
    assert_record(bland_altman([1.0], [2.5]), n=1, bias=1.5, sd=NAN, loa_low=NAN, loa_high=NAN, bias_ci=NAN2,
                  loa_low_ci=NAN2, loa_high_ci=NAN2, multiplier=1.96, confidence=0.95,
                  reason=Words("one pair", "SD", "undefined"))
    same = (0.5, 0.5)
    assert_record(bland_altman([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]), n=3, bias=0.5, sd=0.0, loa_low=0.5,
                  loa_high=0.5, bias_ci=same, loa_low_ci=same, loa_high_ci=same, multiplier=1.96,
                  confidence=0.95, reason=Words("all differences are equal", "SD 0"))
    assert json_safe(bland_altman([], []).to_dict())["bias_ci"] == [None, None]


# ------------------------------------------------------------------------------------------------- kappa
def test_weighted_kappa_reports_weighted_agreements_computed_by_hand():
    # 3 ordered categories; pairs (0,0), (0,1), (1,2), (2,2). Linear weights 1, 1/2, 0; quadratic 1, 3/4, 0.
    a, b = [0, 0, 1, 2], [0, 1, 2, 2]
    lin = cohen_kappa(a, b, weights="linear")
    assert (lin.observed_agreement, lin.expected_agreement, lin.kappa) == (0.75, 0.5, 0.5)
    quad = cohen_kappa(a, b, weights="quadratic")
    assert quad.observed_agreement == pytest.approx(0.875)
    assert quad.expected_agreement == pytest.approx(0.59375)
    assert quad.kappa == pytest.approx(0.28125 / 0.40625)
    t = np.zeros((3, 3))
    for u, v in zip(a, b):
        t[u, v] += 1
    assert quad.kappa == pytest.approx(sm_kappa(t, wt="quadratic").kappa)
    assert (quad.weights, lin.weights, cohen_kappa(a, b).weights) == ("quadratic", "linear", None)


def test_weighted_kappa_with_two_categories_is_plain_kappa():
    a, b = [0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0]
    plain = cohen_kappa(a, b)
    for w in ("linear", "quadratic"):
        r = cohen_kappa(a, b, weights=w)
        assert (r.kappa, r.se, r.observed_agreement) == (plain.kappa, plain.se, plain.observed_agreement)


def test_kappa_label_set_is_the_union_of_both_answers():
    r = cohen_kappa(["a", "b", "a"], ["b", "c", "b"])
    assert r.labels == ["a", "b", "c"] and r.observed_agreement == 0.0
    # labels that cannot be sorted keep their order of first appearance
    mixed = cohen_kappa([1, "x"], ["x", 1])
    assert mixed.labels == [1, "x"] and mixed.kappa == pytest.approx(-1.0)


def test_kappa_one_pair_and_confidence():
    one = cohen_kappa(["a"], ["b"])
    assert one.n == 1 and one.kappa == 0.0 and "one pair" in one.reason
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b).reason is None and cohen_kappa(["a", "b"], ["a", "a"]).reason is None
    r90, r95 = cohen_kappa(a, b, confidence=0.9), cohen_kappa(a, b)
    assert r90.confidence == 0.9 and r95.confidence == 0.95
    assert r90.high - r90.low == pytest.approx(2 * sps.norm.ppf(0.95) * r90.se)
    assert r90.high - r90.low < r95.high - r95.low


def test_kappa_empty_record_and_errors():
    assert_record(cohen_kappa([], []), kappa=NAN, low=NAN, high=NAN, se=NAN, confidence=0.95,
                  observed_agreement=NAN, expected_agreement=NAN, n=0, labels=[], weights=None,
                  ci_method=Words("Fleiss, Cohen & Everitt"), reason=Words("no pairs"))
    with pytest.raises(ValueError, match="weights must be None, 'linear' or 'quadratic'"):
        cohen_kappa([1], [1], weights="cubic")
    with pytest.raises(ValueError, match="differ in length: 2 vs 1"):
        cohen_kappa([1, 2], [1])


# ------------------------------------------------------------------------------------------------------- ICC
@pytest.mark.parametrize("form", ["ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)"])
def test_icc_does_not_depend_on_the_unit_or_origin_of_the_ratings(form):
    ref = icc(SHROUT_FLEISS, form)
    for table in (SHROUT_FLEISS * 10.0 + 3, SHROUT_FLEISS / 7.0 - 100):
        r = icc(table, form)
        for field in ("icc", "low", "high", "f_value", "p_value", "df1", "df2"):
            assert getattr(r, field) == pytest.approx(getattr(ref, field), rel=1e-9), field


@pytest.mark.parametrize("model", ["1", "2", "3"])
@pytest.mark.parametrize("table", [SHROUT_FLEISS, SHROUT_FLEISS[:, :2], np.array([[1, 2], [2, 2], [3, 5], [4, 4], [6, 5]])])
def test_icc_of_the_mean_of_k_raters_is_the_spearman_brown_step_up_of_the_single_rater_icc(model, table):
    k = table.shape[1]
    single, mean = icc(table, f"ICC({model},1)"), icc(table, f"ICC({model},k)")
    for field in ("icc", "low", "high"):
        s = getattr(single, field)
        assert getattr(mean, field) == pytest.approx(k * s / (1 + (k - 1) * s), rel=1e-9), field
    assert (mean.f_value, mean.df1, mean.df2, mean.p_value) == (single.f_value, single.df1, single.df2, single.p_value)


# ICC(2,1) and ICC(2,k) with their McGraw & Wong CIs, computed with pingouin 0.5.5's intraclass_corr formulas
# (Satterthwaite df in psych's parametrisation) on mean squares from a statsmodels two-way ANOVA
FIDELITY_TABLE = np.array([[0.31, 0.36], [0.27, 0.27], [0.42, 0.40], [0.25, 0.31], [0.36, 0.35], [0.30, 0.37],
                           [0.45, 0.46]])  # 7 cases x (original, defaced)


@pytest.mark.parametrize("table, expected", [
    (SHROUT_FLEISS, (0.289764, 0.018787, 0.761084, 0.071137, 0.927232)),
    (FIDELITY_TABLE, (0.830739, 0.334579, 0.968297, 0.501401, 0.983893)),
])
def test_icc_absolute_agreement_interval_matches_an_independent_implementation(table, expected):
    single, mean = icc(table, "ICC(2,1)"), icc(table, "ICC(2,k)")
    got = (single.icc, single.low, single.high, mean.low, mean.high)
    assert got == pytest.approx(expected, abs=2e-6)


def test_icc_two_way_forms_share_the_f_test_of_subjects_against_residual():
    two, three = icc(SHROUT_FLEISS, "ICC(2,1)"), icc(SHROUT_FLEISS, "ICC(3,1)")
    assert (two.f_value, two.df1, two.df2, two.p_value) == (three.f_value, 5.0, 15.0, three.p_value)
    one = icc(SHROUT_FLEISS, "ICC(1,1)")  # one-way: F = BMS / WMS with n(k-1) = 18 df (Shrout & Fleiss: 1.79)
    assert (one.f_value, one.df1, one.df2) == (pytest.approx(11.24 / 6.26, abs=0.01), 5.0, 18.0)


def test_icc_two_subjects_are_enough_and_confidence_is_reported():
    r = icc([[1.0, 2.0], [3.0, 5.0]])
    assert r.n_subjects == 2 and math.isfinite(r.icc) and r.reason is None
    r90 = icc(SHROUT_FLEISS, "ICC(3,1)", confidence=0.9)
    r95 = icc(SHROUT_FLEISS, "ICC(3,1)")
    assert r90.confidence == 0.9 and r95.low < r90.low < r90.icc < r90.high < r95.high


def test_icc_degenerate_records():
    missing = icc([[1.0, None], [2.0, 3.0], [3.0, 4.0]])  # a missing rating is NaN, not a crash
    assert_record(missing, form="ICC(2,1)", description=Words("absolute agreement"), icc=NAN, low=NAN, high=NAN,
                  confidence=0.95, f_value=NAN, df1=NAN, df2=NAN, p_value=NAN, n_subjects=3, n_raters=2,
                  reason=Words("NaN"))
    # every subject rated the same, the raters differ: consistency ICC is 0/0
    assert_record(icc([[1, 2], [1, 2], [1, 2]], "ICC(3,1)"), form="ICC(3,1)", description=Words("consistency"),
                  icc=NAN, low=NAN, high=NAN, confidence=0.95, f_value=NAN, df1=2.0, df2=2.0, p_value=NAN,
                  n_subjects=3, n_raters=2, reason=Words("ICC undefined", "zero variance"))
    # the raters agree exactly on varying subjects
    for form, df2 in (("ICC(2,1)", 2.0), ("ICC(1,1)", 3.0)):
        assert_record(icc([[1, 1], [2, 2], [3, 3]], form), form=form, description=ICC_DESCRIPTION[form],
                      icc=1.0, low=1.0, high=1.0, confidence=0.95, f_value=math.inf, df1=2.0, df2=df2,
                      p_value=0.0, n_subjects=3, n_raters=2, reason=Words("no residual variance"))
    with pytest.raises(ValueError, match=r"2-D table \(subjects x raters\), got shape \(3,\)"):
        icc([1.0, 2.0, 3.0])


ICC_DESCRIPTION = {"ICC(1,1)": Words("one-way", "single"), "ICC(2,1)": Words("two-way random", "single")}


def test_icc_of_perfect_or_constant_ratings_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for form in ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(3,k)"):
            icc([[1, 1], [2, 2], [3, 3]], form)
            icc([[1, 2], [1, 2], [1, 2]], form)


# --------------------------------------------------------------------------------------------------- McNemar
def _pairs(n11, b, c, n00):
    return [1] * n11 + [1] * b + [0] * c + [0] * n00, [1] * n11 + [0] * b + [1] * c + [0] * n00


def test_mcnemar_records_count_all_four_cells():
    assert_record(mcnemar(*_pairs(10, 6, 1, 5)), n=22, both_true=10, b=6, c=1, both_false=5, statistic=1.0,
                  p_value=0.125, method="exact-binomial", reason=None)
    ref = sm_mcnemar([[794, 150], [86, 570]], exact=False, correction=True)
    assert_record(mcnemar(*_pairs(794, 150, 86, 570)), n=1600, both_true=794, b=150, c=86, both_false=570,
                  statistic=63**2 / 236, p_value=float(ref.pvalue), method="chi2-corrected", reason=None)


def test_mcnemar_exact_switches_at_25_discordant_pairs_unless_chosen():
    assert mcnemar(*_pairs(3, 12, 12, 3)).method == "exact-binomial"
    at25 = mcnemar(*_pairs(3, 13, 12, 3))
    assert at25.method == "chi2-corrected" and at25.statistic == pytest.approx(0.0)
    forced_chi2 = mcnemar(*_pairs(10, 6, 1, 5), exact=False)
    assert forced_chi2.method == "chi2-corrected" and forced_chi2.statistic == pytest.approx(16 / 7)
    forced_exact = mcnemar(*_pairs(794, 150, 86, 570), exact=True)
    assert forced_exact.method == "exact-binomial" and forced_exact.statistic == 86.0
    assert forced_exact.p_value == pytest.approx(sm_mcnemar([[794, 150], [86, 570]], exact=True).pvalue)


def test_mcnemar_degenerate_records():
    assert_record(mcnemar([], []), n=0, both_true=0, b=0, c=0, both_false=0, statistic=NAN, p_value=NAN,
                  method="none", reason=Words("no pairs"))
    same = ([True, False, True, True], [True, False, True, True])
    assert_record(mcnemar(*same), n=4, both_true=3, b=0, c=0, both_false=1, statistic=0.0, p_value=1.0,
                  method="exact-binomial", reason=Words("no discordant pairs"))
    assert_record(mcnemar(*same, exact=False), n=4, both_true=3, b=0, c=0, both_false=1, statistic=0.0,
                  p_value=1.0, method="chi2", reason=Words("no discordant pairs"))


def test_mcnemar_errors_name_the_bad_input():
    with pytest.raises(ValueError, match="original must hold booleans or 0/1, got 'yes'"):
        mcnemar(["yes"], [True])
    with pytest.raises(ValueError, match="defaced must hold booleans or 0/1, got 2"):
        mcnemar([True], [2])
    with pytest.raises(ValueError, match="differ in length: 1 vs 2"):
        mcnemar([True], [True, False])


# -------------------------------------------------------------------------------------------------- Wilcoxon
def test_wilcoxon_rank_biserial_and_median_with_zero_differences():
    original = [0.0] * 5
    defaced = [0.0, 1.0, -2.0, 3.0, 4.0]
    # wilcox: the zero is dropped, ranks of 1, 2, 3, 4 -> W+ = 1 + 3 + 4 = 8, W- = 2
    w = wilcoxon_signed_rank(original, defaced)
    assert (w.statistic, w.rank_biserial, w.median_difference) == (2.0, pytest.approx(0.6), 1.0)
    assert (w.n, w.n_nonzero, w.n_zero) == (5, 4, 1)
    # pratt: the zero takes rank 1 and its rank is dropped -> W+ = 2 + 4 + 5 = 11, W- = 3
    p = wilcoxon_signed_rank(original, defaced, zero_method="pratt")
    assert p.rank_biserial == pytest.approx(8 / 14) and p.zero_method == "pratt"
    assert p.p_value == pytest.approx(sps.wilcoxon(defaced, zero_method="pratt", method="approx").pvalue)


def test_wilcoxon_less_is_greater_with_the_conditions_swapped():
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    less = wilcoxon_signed_rank(x, y, alternative="less")
    assert less.alternative == "less" and less.p_value == pytest.approx(0.01953, abs=1e-5)
    assert wilcoxon_signed_rank(y, x, alternative="greater").alternative == "greater"


@pytest.mark.parametrize("nz, method", [(50, "exact"), (51, "approx")])
def test_wilcoxon_exact_for_at_most_50_untied_differences(nz, method):
    d = np.arange(1, nz + 1) * np.where(np.arange(nz) % 3 == 0, -1.0, 1.0)
    r = wilcoxon_signed_rank(np.zeros(nz), d)
    assert r.method == method
    assert r.p_value == pytest.approx(sps.wilcoxon(d, method=method).pvalue, rel=1e-12)


def test_wilcoxon_degenerate_records():
    assert_record(wilcoxon_signed_rank([], []), statistic=NAN, p_value=NAN, n=0, n_nonzero=0, n_zero=0,
                  zero_method="wilcox", method="none", alternative="two-sided", median_difference=NAN,
                  rank_biserial=NAN, reason=Words("no pairs"))
    assert_record(wilcoxon_signed_rank([1.0, NAN, 2.0], [1.0, 2.0, 3.0], zero_method="pratt", alternative="less"),
                  statistic=NAN, p_value=NAN, n=3, n_nonzero=0, n_zero=0, zero_method="pratt", method="none",
                  alternative="less", median_difference=NAN, rank_biserial=NAN, reason=Words("NaN"))
    assert_record(wilcoxon_signed_rank([1, 2, 3], [1, 2, 3], alternative="greater"), statistic=0.0, p_value=1.0,
                  n=3, n_nonzero=0, n_zero=3, zero_method="wilcox", method="none", alternative="greater",
                  median_difference=0.0, rank_biserial=0.0, reason=Words("all paired differences are zero"))


def test_wilcoxon_rejects_unknown_options():
    with pytest.raises(ValueError, match="zero_method must be 'wilcox' or 'pratt', not 'zsplit'"):
        wilcoxon_signed_rank([1], [2], zero_method="zsplit")
    with pytest.raises(ValueError, match="alternative must be two-sided, greater or less, not 'both'"):
        wilcoxon_signed_rank([1], [2], alternative="both")


# ------------------------------------------------------------------------------------------------------- BH
def test_benjamini_hochberg_record_of_a_plain_sequence():
    r = benjamini_hochberg([0.04, 0.01, 0.03], alpha=0.1)
    assert r.names == ["0", "1", "2"] and r.p_values == [0.04, 0.01, 0.03] and r.alpha == 0.1
    assert r.adjusted == pytest.approx([0.04, 0.03, 0.04]) and r.n_tests == 3


def test_benjamini_hochberg_rejects_at_exactly_alpha_and_accepts_p_0_and_1():
    assert benjamini_hochberg([0.05]).rejected == [True]
    r = benjamini_hochberg([0.0, 1.0])
    assert r.adjusted == [0.0, 1.0] and r.rejected == [True, False]
    for bad in (-0.01, 1.5):
        with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
            benjamini_hochberg([0.2, bad])


# -------------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_record_defaults_and_statistic_names():
    d = np.random.default_rng(3).normal(size=25)
    r = bootstrap_ci(d)
    assert (r.n, r.n_resamples, r.seed, r.confidence, r.method, r.statistic, r.reason) == (
        25, 2000, 0, 0.95, "percentile", "mean", None)
    assert r == bootstrap_ci(d, np.mean, n_resamples=2000, seed=0)
    assert bootstrap_ci(d, np.median).statistic == "median"
    # a callable without a __name__ is named after its type
    assert bootstrap_ci(d, functools.partial(np.quantile, q=0.5)).statistic == "partial"


@pytest.mark.parametrize("statistic", [np.mean, np.average, np.median, np.std])
def test_bootstrap_of_common_statistics_matches_the_generic_per_resample_path(statistic):
    d = np.random.default_rng(12).exponential(size=31)
    r = bootstrap_ci(d, statistic, n_resamples=400, seed=2, method="bca")
    generic = bootstrap_ci((d,), lambda x: float(statistic(x)), paired=True, n_resamples=400, seed=2, method="bca")
    assert (r.estimate, r.low, r.high) == (pytest.approx(generic.estimate), pytest.approx(generic.low),
                                           pytest.approx(generic.high))
    assert r.low < float(statistic(d)) < r.high


def test_bootstrap_rejects_bad_options_with_a_message():
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 0"):
        bootstrap_ci([1.0, 2.0], confidence=0)
    for c in (1, 1.5):
        with pytest.raises(ValueError, match="confidence must be in"):
            bootstrap_ci([1.0, 2.0], confidence=c)
    with pytest.raises(ValueError, match="n_resamples must be >= 1"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    with pytest.raises(ValueError, match="paired bootstrap needs at least one array"):
        bootstrap_ci((), paired=True)
    with pytest.raises(ValueError, match=r"paired arrays differ in length: \[3, 2\]"):
        bootstrap_ci(([1, 2, 3], [1, 2]), paired=True)


def test_bootstrap_with_one_or_two_resamples():
    d = [1.0, 2.0, 3.0, 4.0]
    one = bootstrap_ci(d, n_resamples=1)
    assert_record(one, estimate=2.5, low=NAN, high=NAN, confidence=0.95, method="percentile", n=4, n_resamples=1,
                  seed=0, statistic="mean", reason=Words("undefined in almost all resamples"))
    two = bootstrap_ci(d, n_resamples=2, seed=1)
    assert math.isfinite(two.low) and two.low < two.high and two.reason is None


def test_bootstrap_statistic_failing_or_undefined_on_the_full_data():
    def fails(x):
        raise ValueError("needs two classes")

    assert_record(bootstrap_ci([1.0, 2.0, 3.0], fails, confidence=0.9, seed=4, n_resamples=50), estimate=NAN,
                  low=NAN, high=NAN, confidence=0.9, method="percentile", n=3, n_resamples=50, seed=4,
                  statistic="fails", reason=Words("statistic failed on the full data", "needs two classes"))

    def undefined(x):
        return NAN

    assert_record(bootstrap_ci([1.0, 2.0, 3.0], undefined, method="bca"), estimate=NAN, low=NAN, high=NAN,
                  confidence=0.95, method="bca", n=3, n_resamples=2000, seed=0, statistic="undefined",
                  reason=Words("undefined on the full data"))


def _spread_or_undefined(x):
    """Standard deviation, undefined (NaN) when every value is the same."""
    return float(np.std(x)) if np.ptp(x) > 0 else NAN


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_drops_undefined_resamples_and_says_how_many(method):
    d = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    r = bootstrap_ci(d, _spread_or_undefined, n_resamples=500, method=method, seed=1)
    m = re.fullmatch(r"statistic undefined in (\d+) of 500 resamples \(dropped\)", r.reason)
    assert m, r.reason
    # a resample has a single value with probability (3/5)^5 + (2/5)^5 = 0.088
    assert 0.04 * 500 < int(m.group(1)) < 0.14 * 500
    assert r.estimate == pytest.approx(math.sqrt(0.24))
    assert 0 < r.low < r.high <= 0.5 and r.low <= r.estimate <= r.high


def test_constant_statistic_gives_a_zero_width_interval_with_a_reason():
    for method in ("percentile", "bca"):
        r = bootstrap_ci([2.0] * 8, np.mean, method=method)
        assert (r.low, r.high) == (2.0, 2.0) and "constant across resamples" in r.reason
    # constant where defined, undefined elsewhere: the interval is the constant, the reason counts the dropped ones
    r = bootstrap_ci([0.0, 0.0, 0.0, 1.0], lambda x: 1.0 if x.max() > 0 else NAN, n_resamples=300)
    assert (r.low, r.high) == (1.0, 1.0) and re.match(r"statistic undefined in \d+ of 300 resamples", r.reason)


@pytest.mark.parametrize("confidence", [0.95, 0.8])
@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_equals_scipy_given_the_same_seed(method, confidence):
    # scipy draws its resamples as we do (cases x resamples from default_rng(seed)), so with the same seed the
    # two intervals agree to rounding: percentiles, bias correction and jackknife acceleration alike
    for d in (np.random.default_rng(21).lognormal(0, 2, 12), np.random.default_rng(7).normal(0.1, 1, 60)):
        ours = bootstrap_ci(d, np.mean, method=method, n_resamples=5000, confidence=confidence, seed=3)
        ref = sps.bootstrap((d,), np.mean, method="BCa" if method == "bca" else "percentile", n_resamples=5000,
                            confidence_level=confidence, rng=np.random.default_rng(3)).confidence_interval
        assert (ours.low, ours.high) == (pytest.approx(ref.low, rel=1e-12), pytest.approx(ref.high, rel=1e-12))


def test_bca_shifts_the_percentile_interval_towards_the_skew():
    d = np.random.default_rng(21).lognormal(0, 1, 25)
    pct = bootstrap_ci(d, n_resamples=20000)
    bca = bootstrap_ci(d, n_resamples=20000, method="bca")
    assert bca.low > pct.low and bca.high > pct.high


def test_bca_counts_resamples_equal_to_the_estimate_as_half_below():
    # symmetric 0/1 data: the resampled mean equals the estimate 0.5 in ~18 % of resamples; counted half below and
    # half above, the bias correction is ~0 and, with no skew (acceleration 0), BCa equals the percentile interval
    d = np.array([0.0, 1.0] * 10)
    pct = bootstrap_ci(d, n_resamples=4000, seed=2)
    bca = bootstrap_ci(d, n_resamples=4000, seed=2, method="bca")
    assert (bca.low, bca.high) == (pct.low, pct.high)
    assert bca.low == pytest.approx(1 - bca.high)


def test_bca_with_a_constant_jackknife_has_no_acceleration():
    # the median of this symmetric sample is 5 whichever case is left out: acceleration 0, BCa = percentile
    d = np.array([0.0, 0.0, 0.0, 5, 5, 5, 5, 5, 10, 10, 10])
    pct = bootstrap_ci(d, np.median, n_resamples=3000, seed=4)
    bca = bootstrap_ci(d, np.median, n_resamples=3000, seed=4, method="bca")
    assert (bca.low, bca.high) == (pct.low, pct.high) == (0.0, 10.0)


def test_bca_undefined_when_the_estimate_lies_outside_all_resamples():
    d = np.arange(15.0)
    for statistic in (lambda x: float(np.unique(x).size), lambda x: -float(np.unique(x).size)):
        r = bootstrap_ci(d, statistic, method="bca", n_resamples=300, seed=1)
        assert_record(r, estimate=statistic(d), low=NAN, high=NAN, confidence=0.95, method="bca", n=15,
                      n_resamples=300, seed=1, statistic="<lambda>",
                      reason=Words("BCa undefined", "outside all resamples"))


def test_bca_undefined_when_a_leave_one_out_sample_is():
    d = np.arange(12.0)

    def full_size_mean(x):
        return float(np.mean(x)) if x.size == 12 else NAN

    assert_record(bootstrap_ci(d, full_size_mean, method="bca", n_resamples=200), estimate=5.5, low=NAN, high=NAN,
                  confidence=0.95, method="bca", n=12, n_resamples=200, seed=0, statistic="full_size_mean",
                  reason=Words("BCa undefined", "leave-one-out"))


def test_paired_difference_ci_passes_its_options_on():
    rng = np.random.default_rng(6)
    a = rng.normal(size=30)
    b = a + rng.normal(0.2, 0.5, 30)
    r = paired_difference_ci(a, b, n_resamples=300, confidence=0.9, method="bca", seed=4)
    assert r == bootstrap_ci(b - a, np.mean, n_resamples=300, confidence=0.9, method="bca", seed=4)
    assert (r.n_resamples, r.confidence, r.method, r.seed, r.statistic) == (300, 0.9, "bca", 4, "mean")
    default = paired_difference_ci(a, b)
    assert (default.n_resamples, default.seed, default.method) == (2000, 0, "percentile")
    assert default == bootstrap_ci(b - a)


# ------------------------------------------------------------------------------------ pairs, coverage, common
def test_paired_comparison_passes_its_options_on():
    rng = np.random.default_rng(9)
    a = rng.normal(size=25)
    b = a + rng.normal(0.1, 0.3, 25)
    r = paired_comparison(a, b, n_resamples=300, confidence=0.9, method="bca", seed=4)
    assert r.difference == paired_difference_ci(a, b, n_resamples=300, confidence=0.9, method="bca", seed=4)
    assert r.wilcoxon == wilcoxon_signed_rank(a, b)
    d = paired_comparison(a, b).difference
    assert (d.n_resamples, d.seed, d.confidence, d.method) == (2000, 0, 0.95, "percentile")


def test_paired_statistics_accept_booleans_and_generators():
    # per-case correctness (True/False) is a common paired metric: the difference is the change in accuracy
    original = [True, True, False, True, False, True]
    defaced = [True, False, False, True, False, False]
    r = paired_difference_ci(original, defaced, n_resamples=200)
    assert r.estimate == pytest.approx(-2 / 6)
    ba = bland_altman((v for v in [1, 2, 3]), (v + 0.5 for v in [1, 2, 4]))
    assert ba.n == 3 and ba.bias == pytest.approx(0.5 + 1 / 3)
    assert paired_comparison(iter([1.0, 2.0]), iter([1.5, 2.5])).mean_defaced == 2.0


def test_paired_inputs_must_be_one_value_per_case_and_the_error_says_which():
    with pytest.raises(ValueError, match=r"original must be one value per case \(1-D\), got shape \(2, 2\)"):
        paired_difference_ci([[1, 2], [3, 4]], [1, 2])
    with pytest.raises(ValueError, match=r"defaced must be one value per case \(1-D\)"):
        bland_altman([1, 2], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="paired inputs differ in length: 3 vs 2"):
        complete_pairs([1, 2, 3], [1, 2])


def test_coverage_tallies_reasons_of_dropped_samples_only():
    c = coverage(["parsed", "failed", "parsed"], ["scored fine", "timeout", None])
    assert c.reasons == {"timeout": 1}
    with pytest.raises(ValueError, match="2 reasons for 3 outcomes"):
        coverage(["parsed", "failed", "parsed"], ["a", "b"])


def test_degenerate_inputs_warn_nothing():
    # no cases / one case are answered with NaN and a reason, not with numpy's "mean of empty slice" warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a, b in (([], []), ([1.0], [2.0])):
            paired_comparison(a, b, n_resamples=50)
            bland_altman(a, b)
            cohen_kappa(a, b)
            mcnemar([bool(v) for v in a], [v > 1.5 for v in b])


def test_json_safe_converts_numpy_scalars_and_non_finite_values():
    out = json_safe({"a": np.float32(0.5), "b": np.float32("nan"), "c": np.int64(3), 4: (1.5, math.inf, None)})
    assert out == {"a": 0.5, "b": None, "c": 3, "4": [1.5, None, None]}
    assert type(out["c"]) is int and type(out["a"]) is float
