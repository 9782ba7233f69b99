"""Anytime-valid non-inferiority on paired success: is B's success rate no lower than A's minus a margin?

`ab --margin M` asks whether B may replace A: H0 says B is worse by at least M (mu <= -M, mu the
mean paired difference d = B's pass rate - A's on a case). Rejecting H0 says B is not worse by more
than M. The superiority e-value (`SuccessEValue`) conditions on the discordant cases, which is exact
for "mu = 0" but not for "mu = -M": how often the variants disagree matters for the margin. So this
test bets on every case's difference, concordant ones included (they are what shows B is *as good*).

Method: testing by betting (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables
by betting", J. R. Stat. Soc. B 86(1)): for d in [-1, 1] and a null mean mu0, each factor
``1 + lam (d - mu0)`` with ``0 <= lam < 1 / (1 + mu0)`` has mean <= 1 whenever E[d | past] <= mu0, so
the product is a nonnegative supermartingale under H0 and, by Ville's inequality, reaches 1/alpha
with probability <= alpha however often it is looked at. We bet a fraction f of the most we may,
``lam = f / (1 + mu0)``, and average the wealth of a fixed grid of fractions (a mixture of
supermartingales is one): no tuning, and the wealth is a function of the counts of each d, so the
suite can compute the rule's exact false-claim rate by dynamic programming. A case run K times gives
d = rate_B - rate_A, a multiple of 1/K: the same bound holds.

The lower confidence bound for mu is the inversion: every mu0 the wealth has not rejected. The wealth
decreases in mu0, so it is found by bisection; it is computed when asked for, not on every update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .fixed import TestResult
from .normal import check_alpha
from .sequential import _AnytimeTest

__all__ = ["BET_FRACTIONS", "NonInferiorityTest", "ni_log_wealth", "ni_lower_bound"]

# The fractions of the largest admissible bet the mixture averages: 0.9 down to ~0.005, halving every
# two steps. Large bets win fast when the variants rarely disagree; small ones when they often do.
BET_FRACTIONS: tuple[float, ...] = tuple(0.9 * 2.0 ** (-k / 2) for k in range(16))
_LOG_K = math.log(len(BET_FRACTIONS))


def _log_mean_exp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values)) - _LOG_K


def _log_factors(d: float, mu0: float) -> list[float]:
    """log of each bet's factor (1 - f) + f (1 + d) / (1 + mu0) on one difference d."""
    scale = (1.0 + d) / (1.0 + mu0)
    return [math.log((1.0 - f) + f * scale) for f in BET_FRACTIONS]


def ni_log_wealth(counts: Mapping[float, float], mu0: float) -> float:
    """log of the mixture wealth against H0: mean difference <= mu0, from how often each difference d occurred.

    The same number `NonInferiorityTest` tracks (at mu0 = -margin), as a function of the counts alone.
    """
    if not -1.0 < mu0 < 1.0:
        raise ValueError(f"mu0 must be in (-1, 1), got {mu0!r}")
    logs = [0.0] * len(BET_FRACTIONS)
    for d, n in counts.items():
        if n:
            logs = [w + n * f for w, f in zip(logs, _log_factors(d, mu0))]
    return _log_mean_exp(logs)


def ni_lower_bound(counts: Mapping[float, float], alpha: float) -> float:
    """Anytime-valid lower confidence bound for the mean difference: the smallest mu0 not rejected at alpha.

    -1 when nothing can be rejected yet. The wealth decreases as mu0 grows, so bisection finds the edge.
    """
    check_alpha(alpha)
    threshold = math.log(1.0 / alpha)
    lo, hi = -1.0 + 1e-9, 1.0 - 1e-9
    if ni_log_wealth(counts, lo) < threshold:
        return -1.0
    if ni_log_wealth(counts, hi) >= threshold:
        return 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if ni_log_wealth(counts, mid) >= threshold:
            lo = mid  # mid is rejected: the bound lies above
        else:
            hi = mid
    return hi


class NonInferiorityTest(_AnytimeTest):
    """Sequential non-inferiority of B to A on paired success, with a margin; feed one case at a time.

    Crosses (sticky) once the wealth against "B is worse by >= margin" reaches 1/alpha; the p-value
    is min(1, 1 / running max of the wealth), anytime-valid too. ``winner`` is "B" once crossed:
    B is non-inferior (not necessarily better).
    """

    def __init__(self, margin: float, *, alpha: float = 0.05) -> None:
        check_alpha(alpha)
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        super().__init__()
        self.margin = margin
        self.alpha = alpha
        self.counts: dict[float, float] = {}
        self.total = 0.0
        self._log_wealth = [0.0] * len(BET_FRACTIONS)
        self._lower_at_stop: float | None = None

    def update(self, a_passed: float, b_passed: float) -> str | None:
        """Record one case: each variant's pass (or pass rate over its repeats); returns "B" once non-inferior."""
        self.n += 1
        d = round(float(b_passed) - float(a_passed), 12)  # rates of K repeats: keep equal differences one key
        if not -1.0 <= d <= 1.0:
            raise ValueError(f"pass rates must lie in [0, 1], got A {a_passed!r}, B {b_passed!r}")
        self.counts[d] = self.counts.get(d, 0) + 1
        self.total += d
        self._log_wealth = [w + f for w, f in zip(self._log_wealth, _log_factors(d, -self.margin))]
        log_m = self.log_wealth
        crossed_now = self._winner is None and log_m >= math.log(1.0 / self.alpha)
        winner = self._look(log_m, "B" if log_m >= math.log(1.0 / self.alpha) else None)
        if crossed_now:
            self._lower_at_stop = ni_lower_bound(self.counts, self.alpha)
        return winner

    @property
    def log_wealth(self) -> float:
        return _log_mean_exp(self._log_wealth)

    @property
    def e(self) -> float:
        """The current e-value against H0: B worse by at least the margin."""
        log_m = self.log_wealth
        return math.exp(log_m) if log_m < 709.0 else math.inf

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def lower(self) -> float:
        """Anytime-valid lower bound for success rate B - A: now, or when the test crossed if that was higher."""
        now = ni_lower_bound(self.counts, self.alpha) if self.n else -1.0
        return max(now, self._lower_at_stop) if self._lower_at_stop is not None else now

    def result(self) -> TestResult:
        """Report form: statistic is the e-value; the interval is one-sided, [lower bound, 1]."""
        return TestResult(name="success_noninferiority", statistic=self.e, p_value=self.p_value, estimate=self.mean,
                          ci_low=self.lower, ci_high=1.0)
