"""Statistics for `loopkit ab`: fixed-sample paired tests, intervals and anytime-valid sequential tests.

Pure standard library (no scipy/numpy) so the CLI stays light to install. Sign convention
everywhere: a paired difference is B minus A, so a positive estimate means variant B did better.
For success outcomes, ``b`` counts pairs where A passed and B failed, ``c`` pairs where A failed
and B passed.

- `fixed`: exact McNemar, Wilcoxon signed-rank, the McNemar sample size — one pre-planned look.
- `intervals`: Wilson, Newcombe's paired interval, normal and bootstrap intervals.
- `sequential`: the e-value and confidence sequence that alone may declare a winner.
"""

from __future__ import annotations

from .fixed import TestResult, mcnemar_exact, mcnemar_test, required_pairs_for, wilcoxon_signed_rank
from .intervals import (Resamples, mean_ci, paired_bootstrap_ci, paired_diff_ci, paired_proportion_diff_ci, quantile,
                        wilson_ci)
from .normal import norm_cdf, norm_ppf, norm_sf
from .sequential import (RewardConfidenceSequence, SequentialMonitor, SuccessEValue, confidence_sequence, cs_half_width,
                         cs_rho_for, discordant_cs, e_value, e_value_crosses)

__all__ = [
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
