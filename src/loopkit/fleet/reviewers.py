"""The day's reviewer minutes (SPEC.md §9): parking a run for a person spends its expected minutes; once
they are gone, runs that would be parked are held (still `needs_review`, with a `reviewer_capacity` event
saying they wait for capacity), and new cases of a loop whose spec also escalates to a model take that
road instead of a person's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..human import DEFAULT_REVIEW_MINUTES
from ..records import EventRecord, RunResult
from ..spec import LoopSpec
from ..status import RunStatus

HELD = "waiting for reviewer capacity"


@dataclass
class ReviewerDesk:
    """Reviewer minutes of one local day: `None` per day means no limit."""

    minutes_per_day: float | None
    used: float = 0.0

    @property
    def left(self) -> float | None:
        return None if self.minutes_per_day is None else max(0.0, self.minutes_per_day - self.used)

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0.0

    def can_take(self, minutes: float) -> bool:
        return self.minutes_per_day is None or self.used + minutes <= self.minutes_per_day + 1e-9

    def take(self, minutes: float) -> bool:
        """Spend `minutes` for a run parked now; False (nothing spent) when the day's minutes cannot cover it."""
        if not self.can_take(minutes):
            return False
        self.used += minutes
        return True


def unheld(message: str | None) -> str | None:
    """A held run's message once capacity took it on."""
    if message == HELD:
        return None
    return message[len(HELD) + 2:] if message and message.startswith(HELD + ": ") else message


def _to_person(events: list[EventRecord]) -> dict[str, Any] | None:
    found = [e.detail for e in events if e.kind == "escalation" and e.detail.get("human") is not None]
    return found[-1] if found else None


class ReviewGate:
    """The engine's Recorder for a fleet loop: the batch's writer, with each hand-off to a person checked
    against the day's reviewer minutes as it is committed."""

    def __init__(self, inner: Any, desk: ReviewerDesk, *, fleet_id: str, loop: str) -> None:
        self.inner = inner
        self.desk = desk
        self.fleet_id = fleet_id
        self.loop = loop
        self.held = 0
        self.parked = 0

    def commit(self, result: RunResult, iteration: Any, calls: list[Any], events: list[EventRecord], *, start: Any = None) -> None:
        handoff = _to_person(events) if result.status == RunStatus.NEEDS_REVIEW else None
        if handoff is not None:
            minutes = float(handoff.get("minutes") or DEFAULT_REVIEW_MINUTES)
            if self.desk.take(minutes):
                self.parked += 1
            else:
                self.held += 1
                events = [*events, EventRecord("reviewer_capacity", {"fleet": self.fleet_id, "loop": self.loop, "minutes": minutes,
                                                                     "message": HELD, "minutes_left": self.desk.left, "released": 0})]
                result = replace(result, message=f"{HELD}: {result.message}" if result.message else HELD)
        self.inner.commit(result, iteration, calls, events, start=start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def handoff_minutes(spec: LoopSpec) -> float:
    """The fewest minutes a hand-off of this spec expects: what must be left today for a person to take one."""
    found = [e.human_minutes or DEFAULT_REVIEW_MINUTES for e in spec.escalate if e.human is not None or e.cheapest]
    return min(found, default=DEFAULT_REVIEW_MINUTES)


def without_people(spec: LoopSpec) -> LoopSpec | None:
    """The spec with its hand-offs to a person taken out, when it also escalates to a model (so the model
    escalation runs instead); None when a person is its only escalation."""
    from ..spec.schema import HUMAN

    if not any(e.models for e in spec.escalate):
        return None
    kept = []
    for esc in spec.escalate:
        if esc.cheapest is not None:
            options = [o for o in esc.cheapest if o != HUMAN]
            if len(options) >= 2:
                kept.append(esc.model_copy(update={"cheapest": options, "human": None}))
            elif options:
                kept.append(esc.model_copy(update={"cheapest": None, "human": None, "model": options[0]}))
        elif esc.human is None:
            kept.append(esc)
    return spec.model_copy(update={"escalate": kept})
