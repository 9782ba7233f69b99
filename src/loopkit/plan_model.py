"""The arithmetic of `loopkit plan`: what each attempt of each model does, and what a loop design is expected
to do on each recorded case.

Per model and attempt k (the k-th iteration in a row on that model) three chances are estimated from
the segments of history.py: it passes, it *stalls* (the run stopped there on a plateau or a repeated
answer, which ends a run unless the design switches models right then), or it fails and the loop goes
on. Segments cut short by an escalation, `max_iterations` or a budget say nothing past their end
(censored, as in a life table). A step's cost is the mean recorded cost of that model at that
iteration *of the run* (the conversation grows with every iteration, whichever model made them),
extrapolated in a straight line past the last iteration seen.

A design is evaluated case by case: the case's own counts where it has any for that model and attempt,
else the pooled ones, so a design that sends the cheap model's failures to the strong model is judged
on the cases the cheap model actually failed. Cases with the same counts are evaluated once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from .history import Segment
from .stats.intervals import wilson_ci

__all__ = ["SMALL_SAMPLE", "Attempt", "Design", "Figures", "HumanStage", "Model", "evaluate"]

SMALL_SAMPLE = 30  # fewer attempts than this behind an estimate: said so


@dataclass
class Attempt:
    """Counts of the segments that made attempt k of a model."""

    made: int = 0
    passed: int = 0
    stalled: int = 0

    @property
    def pass_chance(self) -> float:
        return self.passed / self.made if self.made else 0.0

    @property
    def stall_chance(self) -> float:
        return self.stalled / self.made if self.made else 0.0

    def interval(self) -> tuple[float, float]:
        """Wilson's 95% interval (it always holds the estimate, rounding aside)."""
        low, high = wilson_ci(self.passed, self.made)
        return min(low, self.pass_chance), max(high, self.pass_chance)


def _count(segments: Iterable[Segment]) -> list[Attempt]:
    found: list[Attempt] = []
    for seg in segments:
        for k, ok in enumerate(seg.passed):
            if k == len(found):
                found.append(Attempt())
            found[k].made += 1
            found[k].passed += int(ok)
            found[k].stalled += int(seg.stalled and k == len(seg.passed) - 1)
    return found


@dataclass(frozen=True)
class HumanStage:
    """Handing what is left to a person: the chance their review ends in success, minutes, USD (0 without a rate)."""

    pass_chance: float
    minutes: float
    usd: float
    reviews: int
    source: str


@dataclass
class Model:
    """Everything history says about a spec's models: pooled attempts and step costs, and each case's attempts."""

    attempts: dict[str, list[Attempt]] = field(default_factory=dict)  # model -> attempt k-1 -> counts
    costs: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # model -> run iteration n -> known step costs
    cases: dict[str, dict[str, list[Attempt]]] = field(default_factory=dict)  # case -> model -> attempts
    prompt: dict[int, list[int]] = field(default_factory=dict)  # run iteration n -> prompt tokens (any model)
    input_price: dict[str, float] = field(default_factory=dict)  # model -> USD per prompt token, where known

    @classmethod
    def of(cls, segments: list[Segment], input_price: dict[str, float] | None = None) -> Model:
        found = cls(input_price=dict(input_price or {}))
        for seg in segments:
            for k, tokens in enumerate(seg.prompt_tokens):
                if tokens is not None:
                    found.prompt.setdefault(seg.start + k, []).append(tokens)
        by_model: dict[str, list[Segment]] = {}
        by_case: dict[tuple[str, str], list[Segment]] = {}
        for seg in segments:
            by_model.setdefault(seg.model, []).append(seg)
            by_case.setdefault((seg.case_id, seg.model), []).append(seg)
            for k, usd in enumerate(seg.costs):
                if usd is not None:
                    found.costs.setdefault(seg.model, {}).setdefault(seg.start + k, []).append(usd)
        found.attempts = {m: _count(segs) for m, segs in by_model.items()}
        for (case, m), segs in by_case.items():
            found.cases.setdefault(case, {})[m] = _count(segs)
        return found

    def depth(self, model: str, *, min_made: int = 3) -> int:
        """How many attempts of a model the data covers (at least `min_made` segments made each)."""
        return sum(1 for a in self.attempts.get(model, []) if a.made >= min_made)

    def step_usd(self, model: str, n: int) -> float | None:
        """Mean cost of the model's step at run iteration n. Where the model was not seen at n: its cost at the
        nearest iteration seen, plus the prompt's growth in between (any model's runs show how a conversation
        grows) at the model's input price; without a price, a straight line through its last two."""
        seen = _means(self.costs.get(model, {}))
        if not seen:
            return None
        if n in seen:
            return seen[n]
        below = [k for k in sorted(seen) if k < n]
        base = below[-1] if below else min(seen)
        price = self.input_price.get(model)
        if price is not None and self.prompt:
            grown = _line(_means(self.prompt), n) - _line(_means(self.prompt), base)
            return max(0.0, seen[base] + price * grown)
        return max(0.0, _line(seen, n))

    def cost_interval(self, model: str, n: int) -> tuple[float, float, int] | None:
        """(low, high, attempts) of the mean cost of the model's step at run iteration n, when seen there."""
        from .stats.intervals import mean_ci

        values = self.costs.get(model, {}).get(n)
        if not values:
            return None
        low, high = mean_ci(values)
        return max(0.0, low), high, len(values)


def _means(values: dict[int, list[float]] | dict[int, list[int]]) -> dict[int, float]:
    return {k: sum(v) / len(v) for k, v in values.items() if v}


def _line(seen: dict[int, float], n: int) -> float:
    """seen[n], else a straight line through the two nearest points below n (the nearest point when only one)."""
    if n in seen:
        return seen[n]
    known = sorted(seen)
    below = [k for k in known if k < n]
    if not below:
        return seen[known[0]]
    if len(below) < 2:
        return seen[below[-1]]
    a, b = below[-2], below[-1]
    return seen[b] + (seen[b] - seen[a]) / (b - a) * (n - b)


@dataclass(frozen=True)
class Design:
    """A loop: models in order, each for some iterations, then (optionally) a person."""

    stages: tuple[tuple[str, int], ...]
    human: bool = False

    @property
    def iterations(self) -> int:
        return sum(n for _, n in self.stages)

    @property
    def label(self) -> str:
        parts = [f"{m} ×{n}" for m, n in self.stages] + (["person"] if self.human else [])
        return " → ".join(parts)


@dataclass(frozen=True)
class Figures:
    """What a design is expected to do per case, over the recorded cases."""

    design: Design
    accuracy: float
    accuracy_interval: tuple[float, float]
    usd_per_case: float  # model spend and a person's time, when priced
    usd_interval: tuple[float, float]
    model_usd: float
    human_usd: float
    human_minutes: float
    cases: int
    small_sample: bool  # an attempt it uses (or the person's reviews) rests on fewer than SMALL_SAMPLE cases
    beyond_data: bool  # it asks for more attempts of a model than the data covers
    cost_unknown: bool  # a model's steps have no recorded cost (all cached)

    @property
    def usd_per_success(self) -> float:
        return self.usd_per_case / self.accuracy if self.accuracy > 0 else math.inf


def _chances(own: list[Attempt] | None, pooled: list[Attempt], k: int) -> tuple[float, float]:
    """(pass, stall) chance of attempt k (0-based): the case's own when it made that attempt, else pooled, else the last pooled."""
    if own is not None and k < len(own) and own[k].made:
        return own[k].pass_chance, own[k].stall_chance
    known = [a for a in pooled[: k + 1] if a.made]
    if not known:
        return 0.0, 0.0
    return known[-1].pass_chance, known[-1].stall_chance


def _case_outcome(design: Design, model: Model, own: dict[str, list[Attempt]], human: HumanStage | None,
                  step_usd: dict[tuple[str, int], float]) -> tuple[float, float, float, float]:
    """(chance of success, model USD, human USD, human minutes) of one case under a design."""
    alive, success, usd, n = 1.0, 0.0, 0.0, 0
    for s, (m, count) in enumerate(design.stages):
        last_stage = s == len(design.stages) - 1 and not design.human
        for k in range(count):
            n += 1
            p, stall = _chances(own.get(m), model.attempts.get(m, []), k)
            usd += alive * step_usd[(m, n)]
            success += alive * p
            # a stall ends the run, unless the design switches models (or hands over) right after this iteration
            ends = stall if (k < count - 1 or last_stage) else 0.0
            alive *= max(0.0, 1.0 - p - ends)
    if design.human and human is not None:
        success += alive * human.pass_chance
        return success, usd, alive * human.usd, alive * human.minutes
    return success, usd, 0.0, 0.0


def evaluate(designs: Iterable[Design], model: Model, human: HumanStage | None) -> list[Figures]:
    """Each design's figures over every recorded case (cases with the same counts evaluated once)."""
    profiles: dict[tuple, tuple[dict[str, list[Attempt]], int]] = {}
    for own in model.cases.values():
        key = tuple(sorted((m, tuple((a.made, a.passed, a.stalled) for a in attempts)) for m, attempts in own.items()))
        found = profiles.get(key)
        profiles[key] = (own, found[1] + 1 if found else 1)
    cases = sum(w for _, w in profiles.values())
    results = []
    for design in designs:
        step_usd: dict[tuple[str, int], float] = {}
        n, unknown = 0, False
        for m, count in design.stages:
            for _ in range(count):
                n += 1
                usd = model.step_usd(m, n)
                unknown |= usd is None
                step_usd[(m, n)] = usd or 0.0
        rows = [(_case_outcome(design, model, own, human, step_usd), w) for own, w in profiles.values()]
        acc = _accuracy_interval([(r[0], w) for r, w in rows], cases)
        usd = _mean_interval([(r[1] + r[2], w) for r, w in rows], cases)
        small = any(a.made < SMALL_SAMPLE for m, count in design.stages for a in (model.attempts.get(m) or [Attempt()])[:count]) or (
            design.human and human is not None and human.reviews < SMALL_SAMPLE)
        beyond = any(count > model.depth(m) for m, count in design.stages)
        results.append(Figures(design, acc[0], acc[1], usd[0], usd[1], sum(r[1] * w for r, w in rows) / cases if cases else 0.0,
                               sum(r[2] * w for r, w in rows) / cases if cases else 0.0,
                               sum(r[3] * w for r, w in rows) / cases if cases else 0.0, cases, small, beyond, unknown))
    return results


def _mean_interval(values: list[tuple[float, int]], n: int) -> tuple[float, tuple[float, float]]:
    """The weighted mean over cases and its normal 95% interval (across cases)."""
    if n == 0:
        return 0.0, (0.0, 0.0)
    mean = sum(v * w for v, w in values) / n
    if n < 2:
        return mean, (mean, mean)
    var = sum(w * (v - mean) ** 2 for v, w in values) / (n - 1)
    half = 1.96 * math.sqrt(var / n)
    return mean, (mean - half, mean + half)


def _accuracy_interval(values: list[tuple[float, int]], n: int) -> tuple[float, tuple[float, float]]:
    """The expected accuracy over cases, with the wider of the interval across cases and Wilson's at n cases, within
    [0, 1]: cases that all look certain (0 or 1) still say little when they are few."""
    mean, (low, high) = _mean_interval(values, n)
    if n:
        w_low, w_high = wilson_ci(round(mean * n), n)
        low, high = min(low, w_low), max(high, w_high)
    return mean, (max(0.0, min(low, mean)), min(1.0, max(high, mean)))
