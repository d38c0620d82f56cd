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

from harness.scoring.stats.agreement import (
    ICC_FORMS,
    BlandAltmanResult,
    ICCResult,
    KappaResult,
    bland_altman,
    cohen_kappa,
    icc,
)
from harness.scoring.stats.bootstrap import (
    BootstrapResult,
    bootstrap_ci,
    paired_difference_ci,
)
from harness.scoring.stats.pairs import (
    Coverage,
    PairedComparison,
    complete_pairs,
    coverage,
    paired_comparison,
)
from harness.scoring.stats.repeatability import (
    RepeatabilityResult,
    coefficient_of_repeatability,
    normalised_cr,
)
from harness.scoring.stats.significance import (
    BHResult,
    McNemarResult,
    WilcoxonResult,
    benjamini_hochberg,
    mcnemar,
    wilcoxon_signed_rank,
)

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
    "RepeatabilityResult",
    "coefficient_of_repeatability",
    "normalised_cr",
    "coverage",
    "complete_pairs",
    "PairedComparison",
    "paired_comparison",
    "ICC_FORMS",
]
