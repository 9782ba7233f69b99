"""Fixed-sample intervals: a mean, a success rate, a paired difference of success rates, and
percentile bootstrap intervals that resample pairs (so the pairing is kept).

Sign convention everywhere: a paired difference is B minus A.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .normal import z_for

__all__ = ["Resamples", "mean_ci", "paired_bootstrap_ci", "paired_diff_ci", "paired_proportion_diff_ci", "quantile",
           "wilson_ci"]


def _quantile_sorted(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy's default 'linear' method)."""
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (linear interpolation), or None for no values."""
    xs = sorted(values)
    return _quantile_sorted(xs, q) if xs else None


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
    half = z_for(level) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m - half, m + half


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a success rate; unlike Wald it behaves at 0% and 100%."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = z_for(level)
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
    half = z_for(level) * math.sqrt(var)
    return max(-1.0, d - half), min(1.0, d + half)


def paired_diff_ci(both: int, a_only: int, b_only: int, neither: int, *, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for success rate B - A from paired outcomes.

    Unlike the paired Wald interval it does not collapse to zero width when every discordant pair
    goes one way (10 of 10 gives B - A in [+0.61, +1.00], not [+1, +1]). The correlation phi
    between the two rates gets Newcombe's correction: a positive association ad - bc is reduced by
    n/2 (and to 0 when that is all of it). Without it, (5, 0, 0, 5) would give phi = 1 and the
    zero-width interval [0, 0].
    """
    n = both + a_only + b_only + neither
    if n == 0:
        return -1.0, 1.0
    pa, pb = (both + a_only) / n, (both + b_only) / n
    la, ua = wilson_ci(both + a_only, n, level)
    lb, ub = wilson_ci(both + b_only, n, level)
    margins = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    association = both * neither - a_only * b_only
    if association > 0:
        association = max(0.0, association - n / 2)
    phi = association / math.sqrt(margins) if margins else 0.0
    diff = pb - pa
    lower = math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    upper = math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return max(-1.0, diff - lower), min(1.0, diff + upper)


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


class Resamples:
    """One set of paired bootstrap resamples (indices), shared by every bootstrap statistic of a report."""

    def __init__(self, n: int, *, seed: int = 0) -> None:
        self.n = n
        self.n_boot = min(2000, max(400, 400_000 // max(1, n)))
        rng = random.Random(seed)
        indices = range(n)
        self.samples = [rng.choices(indices, k=n) for _ in range(self.n_boot)] if n else []

    def ci(self, pairs: list[Any], statistic: Callable[[list[Any]], float | None], level: float) -> tuple[float | None, float | None]:
        values = []
        for idx in self.samples:
            v = statistic([pairs[i] for i in idx])
            if v is not None and math.isfinite(v):
                values.append(v)
        if len(values) < max(1, self.n_boot // 2):
            return None, None
        tail = (1 - level) / 2
        return quantile(values, tail), quantile(values, 1 - tail)

    def p_value_mean(self, diffs: list[float]) -> float:
        """Two-sided bootstrap p-value for mean 0: resample the centred differences (the null made true)."""
        if not diffs:
            return 1.0
        m = statistics.fmean(diffs)
        centred = [d - m for d in diffs]
        extreme = sum(abs(math.fsum(centred[i] for i in idx) / self.n) >= abs(m) - 1e-15 for idx in self.samples)
        return min(1.0, (1 + extreme) / (1 + self.n_boot))
