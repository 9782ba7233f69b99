"""Statistics for `loopkit ab`: paired tests, intervals and anytime-valid sequential tests.

Pure standard library (no scipy/numpy) so the CLI stays light to install. Sign
convention everywhere: a paired difference is B minus A, so a positive estimate
means variant B did better. For success outcomes, ``b`` counts pairs where A
passed and B failed, ``c`` pairs where A failed and B passed.

`ab` stops early, so it looks at the data after every pair. Fixed-sample
p-values (McNemar, Wilcoxon) are only valid at one pre-planned look; repeated
looks inflate the false-winner rate well past alpha. The winner is therefore
declared by `SuccessEValue` (success) or `RewardConfidenceSequence` (reward):
both are e-processes / confidence sequences, whose error rate stays <= alpha by
Ville's inequality however often, and whenever, we look.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "RewardConfidenceSequence",
    "SuccessEValue",
    "TestResult",
    "confidence_sequence",
    "cs_half_width",
    "cs_rho_for",
    "e_value",
    "e_value_crosses",
    "mcnemar_exact",
    "mcnemar_test",
    "mean_ci",
    "norm_cdf",
    "norm_ppf",
    "norm_sf",
    "paired_bootstrap_ci",
    "paired_proportion_diff_ci",
    "required_pairs_for",
    "wilcoxon_signed_rank",
    "wilson_ci",
]

Winner = Literal["A", "B"]

_SQRT2 = math.sqrt(2.0)


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


# --------------------------------------------------------------------------- normal


def norm_cdf(x: float) -> float:
    """Standard normal CDF; erfc keeps precision in the lower tail where 1 + erf cancels."""
    return 0.5 * math.erfc(-x / _SQRT2)


def norm_sf(x: float) -> float:
    """Standard normal upper tail 1 - cdf(x), accurate for large x (small p-values)."""
    return 0.5 * math.erfc(x / _SQRT2)


# Acklam's rational approximations (relative error < 1.15e-9 before refinement).
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425


def norm_ppf(p: float) -> float:
    """Standard normal quantile: Acklam's approximation plus one Halley step (~1e-15 relative).

    Needed for z critical values and sample sizes without scipy.
    """
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"norm_ppf needs 0 <= p <= 1, got {p!r}")
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    elif p <= 1.0 - _P_LOW:
        q = p - 0.5
        r = q * q
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    else:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    # One Halley step against the erfc-based CDF; work in the smaller tail for precision.
    if p < 0.5:
        e = norm_cdf(x) - p
    else:
        e = (1.0 - p) - norm_sf(x)
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


def _z_for(level: float) -> float:
    """Two-sided critical value z_{(1+level)/2}, e.g. 1.96 for level 0.95."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return norm_ppf(0.5 + level / 2.0)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


# --------------------------------------------------------------------------- fixed-n tests


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


# --------------------------------------------------------------------------- intervals


def _quantile_sorted(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy's default 'linear' method)."""
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def paired_bootstrap_ci(
    diffs: Sequence[float], *, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI for the mean of paired differences.

    Makes no normality assumption (rewards and costs are skewed); resampling pairs
    keeps the pairing. Seeded, so the same data always gives the same interval.
    """
    if not diffs:
        raise ValueError("paired_bootstrap_ci needs at least one difference")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    values = [float(d) for d in diffs]
    n = len(values)
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(n_boot))
    tail = (1.0 - level) / 2.0
    return _quantile_sorted(means, tail), _quantile_sorted(means, 1.0 - tail)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation CI for a mean: mean +- z * sd / sqrt(n).

    z rather than t keeps it scipy-free; the difference is negligible for the
    case counts A/B runs use. A single value gives a zero-width interval (no spread known).
    """
    if not values:
        raise ValueError("mean_ci needs at least one value")
    xs = [float(v) for v in values]
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, m
    half = _z_for(level) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m - half, m + half


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a success rate; unlike Wald it behaves at 0% and 100%."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = _z_for(level)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_proportion_diff_ci(b: int, c: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wald CI for success rate B minus A, (c - b) / n, with the paired variance.

    Paired variance ((b + c) - (c - b)^2 / n) / n^2 uses only discordant pairs, so it
    is much tighter than treating the two rates as independent. Clamped to [-1, 1].
    """
    if b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need b, c >= 0 and b + c <= n, got b={b}, c={c}, n={n}")
    if n == 0:
        return -1.0, 1.0
    d = (c - b) / n
    var = max(0.0, ((b + c) - (c - b) ** 2 / n) / n**2)
    half = _z_for(level) * math.sqrt(var)
    return max(-1.0, d - half), min(1.0, d + half)


# --------------------------------------------------------------------------- sequential: success


def _log_beta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def _log_e_value(b: int, c: int, prior: float) -> float:
    return _log_beta(c + prior, b + prior) - _log_beta(prior, prior) + (b + c) * math.log(2.0)


def e_value(b: int, c: int, prior: float = 1.0) -> float:
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


def e_value_crosses(b: int, c: int, *, alpha: float = 0.05, prior: float = 1.0) -> bool:
    """True when the e-value reaches 1/alpha: a winner (sign of c - b) may be declared."""
    _check_alpha(alpha)
    return _log_e_value(b, c, prior) >= -math.log(alpha)


class SuccessEValue:
    """Anytime-valid monitor for paired pass/fail outcomes; feed it every pair as it lands.

    Only discordant pairs move the e-value. Once it reaches 1/alpha the winner is
    fixed (sticky), so a later dip cannot undo a decision already announced. The
    p-value is min(1, 1 / running max of E): anytime-valid too.
    """

    def __init__(self, *, alpha: float = 0.05, prior: float = 1.0) -> None:
        _check_alpha(alpha)
        if prior <= 0:
            raise ValueError(f"prior must be > 0, got {prior!r}")
        self.alpha = alpha
        self.prior = prior
        self.n = 0  # all pairs seen
        self.b = 0  # A passed, B failed
        self.c = 0  # A failed, B passed
        self._max_log_e = 0.0  # log E_0 = log 1
        self._winner: Winner | None = None
        self.stopped_at: int | None = None  # pair count when the winner was declared

    def update(self, a_passed: bool, b_passed: bool) -> Winner | None:
        """Record one pair; return the winner once one is declared (else None)."""
        self.n += 1
        if a_passed and not b_passed:
            self.b += 1
        elif b_passed and not a_passed:
            self.c += 1
        else:
            return self._winner
        log_e = _log_e_value(self.b, self.c, self.prior)
        self._max_log_e = max(self._max_log_e, log_e)
        if self._winner is None and log_e >= -math.log(self.alpha):
            self._winner = "B" if self.c > self.b else "A"
            self.stopped_at = self.n
        return self._winner

    @property
    def e(self) -> float:
        """The current e-value."""
        return e_value(self.b, self.c, self.prior)

    @property
    def winner(self) -> Winner | None:
        """'A' or 'B' once the e-value has crossed 1/alpha, else None."""
        return self._winner

    @property
    def crossed(self) -> bool:
        return self._winner is not None

    @property
    def p_value(self) -> float:
        """Anytime-valid p-value: min(1, 1 / max E so far)."""
        return min(1.0, math.exp(-self._max_log_e))

    def result(self) -> TestResult:
        """Report form: statistic is the current E; estimate is success rate B - A."""
        return TestResult(
            name="success_e_value",
            statistic=self.e,
            p_value=self.p_value,
            estimate=(self.c - self.b) / self.n if self.n else 0.0,
        )


# --------------------------------------------------------------------------- sequential: reward


def cs_rho_for(target_n: int, alpha: float) -> float:
    """Mixture parameter rho that makes the confidence sequence tightest near n = target_n.

    From Howard et al. (2021, "Time-uniform, nonparametric, nonasymptotic confidence
    sequences", Ann. Statist.): the normal-mixture boundary at intrinsic time V is
    minimised near V = m by a mixture variance with rho^2 = (2 L + log(1 + 2 L)) / m,
    L = log(1/alpha). Validity holds for every rho; only the width depends on it.
    """
    if target_n < 1:
        raise ValueError(f"target_n must be >= 1, got {target_n}")
    _check_alpha(alpha)
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


class RewardConfidenceSequence:
    """Anytime-valid confidence sequence for the mean paired reward difference B - A.

    Feed one difference per pair. The interval is the running intersection of the
    per-n intervals (still a valid confidence sequence, and it never widens), so
    "0 is outside" can be checked after every pair without inflating the error rate.
    """

    def __init__(self, *, alpha: float = 0.05, bound: float = 1.0, target_n: int = 100) -> None:
        _check_alpha(alpha)
        if bound <= 0:
            raise ValueError(f"bound must be > 0, got {bound!r}")
        self.alpha = alpha
        self.bound = bound
        self.target_n = target_n
        self._rho2 = cs_rho_for(target_n, alpha) ** 2
        self.n = 0
        self.total = 0.0
        self.lo = -bound  # the mean of [-B, B] values lies in [-B, B] anyway
        self.hi = bound
        self._max_log_m0 = 0.0  # log of the running max of the mixture martingale at mu = 0
        self._winner: Winner | None = None
        self.stopped_at: int | None = None

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
        log_m0 = -0.5 * math.log(k) + (self.total**2) * self._rho2 / (2.0 * self.bound**2 * k)
        self._max_log_m0 = max(self._max_log_m0, log_m0)
        if self._winner is None and (self.lo > 0.0 or self.hi < 0.0):
            self._winner = "B" if self.lo > 0.0 else "A"
            self.stopped_at = self.n
        return self._winner

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def winner(self) -> Winner | None:
        return self._winner

    @property
    def crossed(self) -> bool:
        return self._winner is not None

    @property
    def p_value(self) -> float:
        """Anytime-valid p-value for mean 0: min(1, 1 / running max of the mixture martingale)."""
        return min(1.0, math.exp(-self._max_log_m0))

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


# --------------------------------------------------------------------------- planning


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
    _check_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    psi = max(discordant_rate, delta)
    z_a = norm_ppf(1.0 - alpha / 2.0)
    z_b = norm_ppf(power)
    n = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - delta * delta))) ** 2 / delta**2
    return max(0, math.ceil(n - 1e-9) - already)
