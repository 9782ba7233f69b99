"""Anytime-valid tests for `ab`: they stay valid however often, and whenever, the data is looked at.

`ab` looks after every case, and fixed-sample p-values checked that often inflate the false-winner
rate well past alpha. A winner is therefore declared only by `SuccessEValue` (success) or
`RewardConfidenceSequence` (reward): an e-process and a confidence sequence, whose error rate stays
<= alpha by Ville's inequality. `SequentialMonitor` (`monitor.py`) runs them, with the non-inferiority
and cost tests under `--margin`, splitting alpha between them (Bonferroni).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from .fixed import TestResult
from .normal import check_alpha

__all__ = ["RewardConfidenceSequence", "SuccessEValue", "confidence_sequence", "cs_half_width", "cs_rho_for", "discordant_cs",
           "e_value", "e_value_crosses"]

Winner = Literal["A", "B"]


class _AnytimeTest:
    """What both anytime-valid tests share: a sticky winner, and the p-value min(1, 1 / running max of
    the test's martingale), which is anytime-valid too."""

    def __init__(self) -> None:
        self.n = 0
        self._max_log = 0.0  # log of the martingale's running max; it starts at 1
        self._winner: Winner | None = None
        self.stopped_at: int | None = None  # observation count when the winner was declared

    def _look(self, log_martingale: float, winner: Winner | None) -> Winner | None:
        """Record this look; a winner, once declared, stays (a later dip cannot undo an announced decision)."""
        self._max_log = max(self._max_log, log_martingale)
        if self._winner is None and winner is not None:
            self._winner, self.stopped_at = winner, self.n
        return self._winner

    @property
    def winner(self) -> Winner | None:
        """'A' or 'B' once the test has crossed, else None."""
        return self._winner

    @property
    def crossed(self) -> bool:
        return self._winner is not None

    @property
    def p_value(self) -> float:
        return min(1.0, math.exp(-self._max_log))


# --------------------------------------------------------------------------- success


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def _log_e_value(b: float, c: float, prior: float) -> float:
    return _log_beta(c + prior, b + prior) - _log_beta(prior, prior) + (b + c) * math.log(2.0)


def e_value(b: float, c: float, prior: float = 1.0) -> float:
    """Beta-binomial mixture e-value against H0: P(B wins a discordant pair) = 1/2.

    E = [Beta(c + a, b + a) / Beta(a, a)] / 0.5^(b + c) with a = ``prior``: the
    likelihood of the discordant wins averaged over a Beta(a, a) prior on p, divided
    by the likelihood at p = 1/2. Under H0 it is a nonnegative martingale with mean
    1, so by Ville's inequality P(E ever >= 1/alpha) <= alpha. The prior is
    symmetric, so large E means either direction. Computed in log space; overflow
    gives inf.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    if prior <= 0:
        raise ValueError(f"prior must be > 0, got {prior!r}")
    log_e = _log_e_value(b, c, prior)
    return math.exp(log_e) if log_e < 709.0 else math.inf


def e_value_crosses(b: float, c: float, *, alpha: float = 0.05, prior: float = 1.0) -> bool:
    """True when the e-value reaches 1/alpha: a winner (sign of c - b) may be declared."""
    check_alpha(alpha)
    return _log_e_value(b, c, prior) >= -math.log(alpha)


def discordant_cs(b: float, c: float, alpha: float, prior: float = 1.0) -> tuple[float, float]:
    """Anytime-valid interval for P(B is the one that passes | exactly one passes).

    The inversion of the beta-binomial mixture test behind `SuccessEValue`: every p0 whose
    mixture e-value stays below 1/alpha. Its running intersection excludes 1/2 exactly when the
    e-value has crossed, so it agrees with the decision.
    """
    if b + c == 0:
        return 0.0, 1.0
    threshold = -math.log(alpha)
    log_mix = (math.lgamma(c + prior) + math.lgamma(b + prior) - math.lgamma(b + c + 2 * prior)
               - (2 * math.lgamma(prior) - math.lgamma(2 * prior)))

    def log_e(p0: float) -> float:
        return log_mix - (c * math.log(p0) if c else 0.0) - (b * math.log1p(-p0) if b else 0.0)

    centre = c / (b + c)

    def edge(inside: float, outside: float) -> float:
        if log_e(outside) < threshold:
            return outside
        for _ in range(60):
            mid = (inside + outside) / 2
            if log_e(mid) < threshold:
                inside = mid
            else:
                outside = mid
        return inside

    lo = 0.0 if c == 0 else edge(centre, 1e-12)
    hi = 1.0 if b == 0 else edge(centre, 1 - 1e-12)
    return (0.0 if lo <= 1e-12 else lo), (1.0 if hi >= 1 - 1e-12 else hi)


class SuccessEValue(_AnytimeTest):
    """Anytime-valid monitor for paired pass/fail outcomes; feed it one pair (or one case) at a time.

    Only discordant pairs move the e-value. Once it reaches 1/alpha the winner is
    fixed (sticky), so a later dip cannot undo a decision already announced. The
    p-value is min(1, 1 / running max of E): anytime-valid too.

    A case run K times is one observation: its two pass *rates*, whose difference d = rate_B - rate_A
    adds d to ``c`` (or -d to ``b``). The closed form stays valid with such fractional counts: for
    every p, (2p)^d <= 1 + (2p - 1) d on [0, 1] (a convex function under its chord), and likewise for
    d < 0, so the mixture is dominated by the betting martingale prod(1 + (2p - 1) d_i), whose
    expectation is 1 when the mean difference is 0. With K = 1 it is exactly the beta-binomial e-value.
    """

    def __init__(self, *, alpha: float = 0.05, prior: float = 1.0) -> None:
        check_alpha(alpha)
        if prior <= 0:
            raise ValueError(f"prior must be > 0, got {prior!r}")
        super().__init__()
        self.alpha = alpha
        self.prior = prior
        self.b = 0.0  # A passed, B failed
        self.c = 0.0  # A failed, B passed

    def update(self, a_passed: float, b_passed: float) -> Winner | None:
        """Record one pair (pass = True/1), or one case as pass rates in [0, 1]; return the winner once declared."""
        self.n += 1
        d = float(b_passed) - float(a_passed)
        if d < 0:
            self.b -= d
        elif d > 0:
            self.c += d
        else:
            return self._winner
        log_e = _log_e_value(self.b, self.c, self.prior)
        return self._look(log_e, ("B" if self.c > self.b else "A") if log_e >= -math.log(self.alpha) else None)

    @property
    def e(self) -> float:
        """The current e-value."""
        return e_value(self.b, self.c, self.prior)

    def result(self) -> TestResult:
        """Report form: statistic is the current E; estimate is success rate B - A."""
        return TestResult(
            name="success_e_value",
            statistic=self.e,
            p_value=self.p_value,
            estimate=(self.c - self.b) / self.n if self.n else 0.0,
        )


# --------------------------------------------------------------------------- reward


def cs_rho_for(target_n: int, alpha: float) -> float:
    """Mixture parameter rho that makes the confidence sequence tightest near n = target_n.

    From Howard et al. (2021, "Time-uniform, nonparametric, nonasymptotic confidence
    sequences", Ann. Statist.): the normal-mixture boundary at intrinsic time V is
    minimised near V = m by a mixture variance with rho^2 = (2 L + log(1 + 2 L)) / m,
    L = log(1/alpha). Validity holds for every rho; only the width depends on it.
    """
    if target_n < 1:
        raise ValueError(f"target_n must be >= 1, got {target_n}")
    check_alpha(alpha)
    big_l = math.log(1.0 / alpha)
    return math.sqrt((2.0 * big_l + math.log1p(2.0 * big_l)) / target_n)


def cs_half_width(n: int, *, alpha: float = 0.05, bound: float = 1.0, target_n: int = 100) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence after n observations.

    For sigma-sub-Gaussian steps, the Gaussian mixture of exp(lam S_n - lam^2 sigma^2 n / 2)
    over lam ~ N(0, rho^2 / sigma^2) is a martingale; Ville's inequality on it gives
    |mean - mu| < sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))
    for all n at once with probability >= 1 - alpha. A variable in [-B, B] is
    B-sub-Gaussian (Hoeffding), so sigma = bound.
    """
    if n < 1:
        return math.inf
    if bound <= 0:
        raise ValueError(f"bound must be > 0, got {bound!r}")
    rho2 = cs_rho_for(target_n, alpha) ** 2
    k = n * rho2 + 1.0
    return bound * math.sqrt(2.0 * k / (n * n * rho2) * math.log(math.sqrt(k) / alpha))


class RewardConfidenceSequence(_AnytimeTest):
    """Anytime-valid confidence sequence for the mean paired reward difference B - A.

    Feed one difference per pair. The interval is the running intersection of the
    per-n intervals (still a valid confidence sequence, and it never widens), so
    "0 is outside" can be checked after every pair without inflating the error rate.
    """

    def __init__(self, *, alpha: float = 0.05, bound: float = 1.0, target_n: int = 100) -> None:
        check_alpha(alpha)
        if bound <= 0:
            raise ValueError(f"bound must be > 0, got {bound!r}")
        super().__init__()
        self.alpha = alpha
        self.bound = bound
        self.target_n = target_n
        self._rho2 = cs_rho_for(target_n, alpha) ** 2
        self.total = 0.0
        self.lo = -bound  # the mean of [-B, B] values lies in [-B, B] anyway
        self.hi = bound

    def update(self, diff: float) -> Winner | None:
        """Record one difference (B - A) in [-bound, bound]; return the winner once declared."""
        if not -self.bound - 1e-12 <= diff <= self.bound + 1e-12:
            raise ValueError(f"difference {diff!r} is outside [-{self.bound}, {self.bound}]")
        self.n += 1
        self.total += diff
        mean = self.total / self.n
        half = cs_half_width(self.n, alpha=self.alpha, bound=self.bound, target_n=self.target_n)
        lo, hi = max(self.lo, mean - half), min(self.hi, mean + half)
        if lo <= hi:
            self.lo, self.hi = lo, hi
        else:  # empty intersection: a miscoverage event (prob <= alpha); fall back to the current interval
            self.lo, self.hi = max(-self.bound, mean - half), min(self.bound, mean + half)
        # log M_n(0) = log sqrt(1/k) + S_n^2 rho^2 / (2 sigma^2 k), k = n rho^2 + 1.
        k = self.n * self._rho2 + 1.0
        log_m0 = -0.5 * math.log(k) + (self.total**2) * self._rho2 / (2.0 * self.bound**2 * k)  # the martingale at mu = 0
        return self._look(log_m0, ("B" if self.lo > 0.0 else "A") if self.lo > 0.0 or self.hi < 0.0 else None)

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def result(self) -> TestResult:
        return TestResult(
            name="reward_confidence_sequence",
            statistic=self.mean,
            p_value=self.p_value,
            estimate=self.mean,
            ci_low=self.lo,
            ci_high=self.hi,
        )


def confidence_sequence(
    diffs: Iterable[float], *, alpha: float = 0.05, bound: float = 1.0, target_n: int = 100
) -> tuple[float, float]:
    """Anytime-valid (lo, hi) for the mean of paired differences in [-bound, bound].

    Same as feeding every diff to `RewardConfidenceSequence`; a difference is
    declared when 0 is outside (lo, hi). Before any data it is (-bound, bound).
    """
    cs = RewardConfidenceSequence(alpha=alpha, bound=bound, target_n=target_n)
    for d in diffs:
        cs.update(d)
    return cs.interval
