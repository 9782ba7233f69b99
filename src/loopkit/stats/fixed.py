"""Fixed-sample paired tests (exact McNemar, Wilcoxon signed-rank) and the McNemar sample size.

Each is valid at one pre-planned look only: `ab` looks after every case, so these give the
per-metric p-values for information and the winner comes from `loopkit.stats.sequential`.
Convention: ``b`` counts pairs where A passed and B failed, ``c`` pairs where A failed and B passed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .intervals import mean_ci, paired_proportion_diff_ci
from .normal import check_alpha, norm_ppf, norm_sf

__all__ = ["TestResult", "mcnemar_exact", "mcnemar_test", "required_pairs_for", "wilcoxon_signed_rank"]


@dataclass(frozen=True)
class TestResult:
    """One test's outcome, flat so an A/B report can `dataclasses.asdict` it into JSON.

    ``estimate`` is the point difference B - A; ``ci_low``/``ci_high`` are None
    when the test has no natural interval.
    """

    __test__ = False  # not a pytest test class, despite the name

    name: str
    statistic: float
    p_value: float
    estimate: float
    ci_low: float | None = None
    ci_high: float | None = None


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: Binomial(b + c, 1/2) test on the discordant pairs.

    Exact integer arithmetic, because the normal approximation is poor at the small
    discordant counts typical of A/B runs. Only valid at one pre-planned look.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    m = min(b, c)
    term = 1  # C(n, 0)
    total = 1
    for k in range(m):
        term = term * (n - k) // (k + 1)
        total += term
    # The Binomial(n, 1/2) pmf is symmetric, so two-sided = 2 * lower tail.
    return min(1.0, 2 * total / (1 << n))


def mcnemar_test(b: int, c: int, n: int, *, level: float = 0.95) -> TestResult:
    """McNemar exact test bundled with the success-rate difference (B - A) and its paired CI."""
    lo, hi = paired_proportion_diff_ci(b, c, n, level=level)
    return TestResult(
        name="mcnemar_exact",
        statistic=float(min(b, c)),
        p_value=mcnemar_exact(b, c),
        estimate=(c - b) / n if n else 0.0,
        ci_low=lo,
        ci_high=hi,
    )


def wilcoxon_signed_rank(diffs: Sequence[float], *, level: float = 0.95) -> TestResult:
    """Wilcoxon signed-rank test on paired differences (B - A), normal approximation.

    Matches ``scipy.stats.wilcoxon(d, zero_method='wilcox', correction=False,
    method='approx')``: zeros dropped, tied |d| get average ranks, tie-corrected
    variance, two-sided. ``statistic`` is min(W+, W-) like scipy. ``estimate`` is
    the mean of all diffs (zeros included) with a normal CI, for reporting.
    Only valid at one pre-planned look.
    """
    values = [float(d) for d in diffs]
    estimate = statistics.fmean(values) if values else 0.0
    ci_low, ci_high = mean_ci(values, level=level) if values else (None, None)
    nonzero = [d for d in values if d != 0.0]
    n = len(nonzero)
    if n == 0:
        return TestResult("wilcoxon_signed_rank", 0.0, 1.0, estimate, ci_low, ci_high)

    order = sorted(range(n), key=lambda i: abs(nonzero[i]))
    ranks = [0.0] * n
    tie_term = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(nonzero[order[j + 1]]) == abs(nonzero[order[i]]):
            j += 1
        avg_rank = (i + j) / 2.0 + 1.0  # ranks are 1-based
        for k in range(i, j + 1):
            ranks[order[k]] = avg_rank
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1

    w_plus = math.fsum(r for r, d in zip(ranks, nonzero) if d > 0)
    w_minus = math.fsum(r for r, d in zip(ranks, nonzero) if d < 0)
    statistic = min(w_plus, w_minus)
    mean_w = n * (n + 1) / 4.0
    var_w = n * (n + 1) * (2 * n + 1) / 24.0 - tie_term / 48.0
    z = (statistic - mean_w) / math.sqrt(var_w)
    p_value = min(1.0, 2.0 * norm_sf(abs(z)))
    return TestResult("wilcoxon_signed_rank", statistic, p_value, estimate, ci_low, ci_high)


def required_pairs_for(
    delta_pts: float,
    discordant_rate: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    already: int = 0,
) -> int:
    """Rough pairs needed to detect a success-rate change ``delta_pts`` (a fraction, 0.05 = 5 points).

    Standard McNemar sample size (Connor 1987), normal approximation:
    n = (z_{1-alpha/2} sqrt(psi) + z_power sqrt(psi - delta^2))^2 / delta^2, psi the
    discordant rate. psi is raised to |delta| when smaller, since a change of delta
    needs at least that many discordant pairs. A fixed-sample figure: the sequential
    test needs somewhat more. Returns the total, minus ``already`` pairs seen (>= 0),
    for the "would need about M more cases" message.
    """
    delta = abs(delta_pts)
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"delta_pts must be a nonzero fraction in [-1, 1], got {delta_pts!r}")
    if not 0.0 <= discordant_rate <= 1.0:
        raise ValueError(f"discordant_rate must be in [0, 1], got {discordant_rate!r}")
    check_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    psi = max(discordant_rate, delta)
    z_a = norm_ppf(1.0 - alpha / 2.0)
    z_b = norm_ppf(power)
    n = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - delta * delta))) ** 2 / delta**2
    return max(0, math.ceil(n - 1e-9) - already)
