"""Statistics for `loopkit ab`: fixed-sample paired tests, intervals and anytime-valid sequential tests.

Pure standard library (no scipy/numpy) so the CLI stays light to install. Sign convention
everywhere: a paired difference is B minus A, so a positive estimate means variant B did better.
For success outcomes, ``b`` counts pairs where A passed and B failed, ``c`` pairs where A failed
and B passed.

- `fixed`: exact McNemar, Wilcoxon signed-rank, the McNemar sample size — one pre-planned look.
- `intervals`: Wilson, Newcombe's paired interval, normal and bootstrap intervals.
- `sequential`: the e-value and confidence sequence that alone may declare a winner.
- `noninferiority`: the betting e-process for "B is not worse than A by more than a margin".
- `cost`: the asymptotic confidence sequence for the per-case cost difference.
- `monitor`: all of them for one A/B test, the alpha split, and the verdict's kind.
"""

from __future__ import annotations

from .fixed import TestResult, mcnemar_exact, mcnemar_test, required_pairs_for, wilcoxon_signed_rank
from .intervals import (Resamples, mean_ci, paired_bootstrap_ci, paired_diff_ci, paired_proportion_diff_ci, quantile,
                        wilson_ci)
from .cost import CostConfidenceSequence
from .monitor import VERDICT_KINDS, SequentialMonitor
from .noninferiority import NonInferiorityTest, ni_log_wealth, ni_lower_bound
from .normal import norm_cdf, norm_ppf, norm_sf
from .sequential import (RewardConfidenceSequence, SuccessEValue, confidence_sequence, cs_half_width, cs_rho_for,
                         discordant_cs, e_value, e_value_crosses)

__all__ = [
    "VERDICT_KINDS",
    "CostConfidenceSequence",
    "NonInferiorityTest",
    "Resamples",
    "RewardConfidenceSequence",
    "SequentialMonitor",
    "SuccessEValue",
    "TestResult",
    "confidence_sequence",
    "cs_half_width",
    "cs_rho_for",
    "discordant_cs",
    "e_value",
    "e_value_crosses",
    "mcnemar_exact",
    "mcnemar_test",
    "mean_ci",
    "ni_log_wealth",
    "ni_lower_bound",
    "norm_cdf",
    "norm_ppf",
    "norm_sf",
    "paired_bootstrap_ci",
    "paired_diff_ci",
    "paired_proportion_diff_ci",
    "quantile",
    "required_pairs_for",
    "wilcoxon_signed_rank",
    "wilson_ci",
]
