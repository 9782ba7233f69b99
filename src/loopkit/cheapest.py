"""What an escalation does, and `cheapest:`: the option with the lowest expected cost per success.

The engine calls `escalation_action` when an `escalate:` entry fires. For a `cheapest:` entry the
choice rests on `Estimates` the batch layer read from the ledger before the batch started
(`history.cheapest_estimates`, carried on `spec.estimates`); this module does arithmetic only, so the
engine stays free of SQL. Without history an option gets the stated prior (`PRIOR_PASS`, a step's
cost from its price). The event records the choice and every option's numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .spec.schema import HUMAN, Escalation, ModelRef

if TYPE_CHECKING:
    from .spec import LoopSpec

__all__ = ["PRIOR_HUMAN_PASS", "PRIOR_PASS", "Estimates", "Expected", "OptionEstimate", "escalation_action"]

PRIOR_PASS = 0.5  # a model with no history: its chance to pass each iteration after an escalation
PRIOR_HUMAN_PASS = 0.9  # a person with no history: the chance a review ends in success (approved)
PRIOR_TOKENS = (1000, 300)  # a model with no history and a spec with none: prompt and completion tokens of one iteration


@dataclass(frozen=True)
class OptionEstimate:
    """One `cheapest:` option as history (or the prior) sees it: per attempt k (1, 2, …) after the hand-off, the
    chance it passes given the earlier ones failed (`pass_chance[k-1]`) and its cost (`step_usd[k-1]`); a
    person is one attempt whose cost is their minutes at the rate."""

    option: str  # a model's label, or "human"
    pass_chance: list[float]
    step_usd: list[float]
    runs: int = 0  # hand-offs the figures rest on (0: the prior)
    source: str = "prior"
    minutes: float | None = None  # a person's expected minutes


@dataclass(frozen=True)
class Expected:
    """What handing a run to an option is expected to bring with `remaining` iterations left."""

    option: str
    pass_chance: float
    usd: float
    usd_per_success: float
    runs: int
    source: str
    minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if math.isinf(self.usd_per_success):
            d["usd_per_success"] = None  # JSON has no infinity: it cannot succeed
        return d


def _at(values: list[float], k: int, default: float) -> float:
    """values[k], or the last one past the end (history seen up to some attempt says that much of later ones)."""
    return values[k] if k < len(values) else (values[-1] if values else default)


@dataclass
class Estimates:
    """Every `cheapest:` option's estimate, by option name (model label or "human")."""

    options: dict[str, OptionEstimate] = field(default_factory=dict)

    def expected(self, option: str, remaining: int) -> Expected:
        est = self.options.get(option) or OptionEstimate(option, [PRIOR_HUMAN_PASS if option == HUMAN else PRIOR_PASS], [0.0])
        if option == HUMAN:  # one review, whatever the iterations left
            p, usd = est.pass_chance[0], est.step_usd[0]
        else:
            p, usd, still = 0.0, 0.0, 1.0
            for k in range(max(0, remaining)):
                usd += still * _at(est.step_usd, k, 0.0)
                chance = _at(est.pass_chance, k, PRIOR_PASS)
                p += still * chance
                still *= 1 - chance
        per = usd / p if p > 0 else math.inf
        return Expected(option, p, usd, per, est.runs, est.source, est.minutes)


def _option_name(option: str | ModelRef) -> str:
    return option if isinstance(option, str) else option.label


def choose(esc: Escalation, estimates: Estimates | None, remaining: int) -> tuple[str | ModelRef, list[Expected]]:
    """The option with the lowest expected cost per success (the first listed on a tie), and every option's figures."""
    found = estimates or Estimates()
    figures = [found.expected(_option_name(o), remaining) for o in esc.cheapest or []]
    best = min(range(len(figures)), key=lambda i: (figures[i].usd_per_success, -figures[i].pass_chance, i))
    return (esc.cheapest or [])[best], figures


def escalation_action(spec: LoopSpec, esc: Escalation, rule: int, iteration: int, current: ModelRef,
                      limit: int) -> tuple[ModelRef | None, str | None, dict[str, Any]]:
    """What a fired entry does: (the model to switch to, or None; the note for a person, or None; the event's detail).

    `limit` is the run's iteration limit: an option that is a model gets the iterations left before it."""
    from .human import rate_of

    detail: dict[str, Any] = {"rule": rule, "iteration": iteration}
    target: str | ModelRef | None = esc.model
    if esc.cheapest is not None:
        target, figures = choose(esc, spec.estimates, limit - iteration)
        detail["cheapest"] = {"chosen": _option_name(target), "remaining_iterations": limit - iteration,
                              "options": [f.to_dict() for f in figures]}
    if isinstance(target, ModelRef):
        return target, None, {**detail, "from": current.label, "to": target.label}
    note = esc.human_note or ("a person was the cheapest option per success" if esc.cheapest is not None else "")
    return None, note, {**detail, "human": note, "minutes": esc.human_minutes, "usd_per_hour": rate_of(spec)}
