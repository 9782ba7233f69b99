"""Anytime-valid interval for the mean paired cost difference per case (B - A, in USD), for `ab --margin`.

A case's cost has no bound known in advance that is close to what it costs: a spec's per-case budget
is usually many times the typical spend, and a person's minutes have no cap at all. An exact
(bounded, empirical-Bernstein) confidence sequence pays for the whole range on every case: with a
$0.05 cap on $0.001 cases it needs hundreds of cases to see even a halving of the cost. So the cost
test is the Gaussian-mixture **asymptotic confidence sequence** of Waudby-Smith, Arbour, Sinha,
Kennedy & Ramdas (2024, "Time-uniform central limit theory and asymptotic confidence sequences",
Ann. Statist. 52(6), Thm 2.2): the normal-mixture boundary of Robbins (1970) / Howard et al. (2021),
as in `cs_half_width`, with the running sample standard deviation in place of a known scale:

    mean +- sd_n * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))

It covers the true mean at every n at once with probability tending to >= 1 - alpha as the cases
accrue, for any cost distribution with a finite variance; it is not exact at small n, above all when
a rare, large cost (an escalation to a person on one case in fifty) has not shown up yet. So it
claims nothing before `MIN_CASES` cases, and the README says what it assumes. Like the reward
sequence, it is the running intersection of the per-n intervals, and its p-value is 1 / the running
max of the mixture martingale at a zero difference (with the plug-in scale).
"""

from __future__ import annotations

import math

from .fixed import TestResult
from .normal import check_alpha
from .sequential import _AnytimeTest, cs_rho_for

__all__ = ["MIN_CASES", "CostConfidenceSequence"]

MIN_CASES = 20  # no cost claim before this many cases: the plug-in scale needs some to settle


class CostConfidenceSequence(_AnytimeTest):
    """Asymptotic anytime-valid interval for the mean per-case cost difference B - A; feed one case at a time.

    ``winner`` is the cheaper variant ("B": B costs less per case) once the interval excludes zero,
    sticky like the other tests. Before `MIN_CASES` cases the interval is (-inf, inf).
    """

    def __init__(self, *, alpha: float = 0.05, target_n: int = 100, min_cases: int = MIN_CASES) -> None:
        check_alpha(alpha)
        super().__init__()
        self.alpha = alpha
        self.min_cases = max(2, min_cases)
        self._rho2 = cs_rho_for(max(1, target_n), alpha) ** 2
        self.total = 0.0
        self._mean = 0.0
        self._m2 = 0.0  # Welford's running sum of squared deviations
        self.lo = -math.inf
        self.hi = math.inf

    def update(self, diff: float) -> str | None:
        """Record one case's cost difference B - A in USD; returns the cheaper variant once declared."""
        if not math.isfinite(diff):
            raise ValueError(f"cost difference must be finite, got {diff!r}")
        self.n += 1
        self.total += diff
        delta = diff - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (diff - self._mean)
        if self.n < self.min_cases:
            return self._winner
        sd = self.sd
        k = self.n * self._rho2 + 1.0
        half = sd * math.sqrt(2.0 * k / (self.n * self.n * self._rho2) * math.log(math.sqrt(k) / self.alpha))
        lo, hi = max(self.lo, self._mean - half), min(self.hi, self._mean + half)
        if lo <= hi:
            self.lo, self.hi = lo, hi
        else:  # an empty intersection is a miscoverage (prob <= alpha in the limit): restart from the current interval
            self.lo, self.hi = self._mean - half, self._mean + half
        if sd > 0:
            log_m0 = -0.5 * math.log(k) + self.total**2 * self._rho2 / (2.0 * sd * sd * k)
        else:
            log_m0 = math.inf if self.total else 0.0
        cheaper = "B" if self.hi < 0.0 else "A" if self.lo > 0.0 else None
        return self._look(log_m0, cheaper)  # type: ignore[arg-type]

    @property
    def sd(self) -> float:
        """The sample standard deviation of the differences so far."""
        return math.sqrt(self._m2 / (self.n - 1)) if self.n > 1 else 0.0

    @property
    def mean(self) -> float:
        return self._mean if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    def result(self) -> TestResult:
        """Report form: the mean cost difference B - A per case with its interval (None while unbounded)."""
        lo = self.lo if math.isfinite(self.lo) else None
        hi = self.hi if math.isfinite(self.hi) else None
        return TestResult(name="cost_confidence_sequence", statistic=self.mean, p_value=self.p_value, estimate=self.mean,
                          ci_low=lo, ci_high=hi)
