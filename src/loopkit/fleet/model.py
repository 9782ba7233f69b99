"""The fleet file (SPEC.md §9): many loops under one budget, one reviewer capacity and one time window.

    budget: {usd_per_day: 40, total_usd: 400}
    reviewers: {minutes_per_day: 90, usd_per_hour: 90}
    window: "22:00-06:00"
    providers: {openai: {concurrency: 32}}
    loops:
      - {spec: loops/triage.yaml, inputs: tickets.jsonl, priority: 1, share: 0.5, deadline: 2026-12-24}

Only the shape lives here; `load.py` reads the YAML with positions and loads each loop's spec.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FleetBudget(_Strict):
    """Hard caps on model spend across every loop: per local day, and over the fleet's life."""

    usd_per_day: float | None = Field(default=None, gt=0)
    total_usd: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some_cap(self) -> FleetBudget:
        if self.usd_per_day is None and self.total_usd is None:
            raise ValueError("found no cap, expected `usd_per_day`, `total_usd` or both (a fleet always runs under a budget)")
        return self


class Reviewers(_Strict):
    """How many minutes people can review per local day, and what a minute of theirs costs."""

    minutes_per_day: float = Field(ge=0)
    usd_per_hour: float | None = Field(default=None, ge=0)


class Provider(_Strict):
    """Model calls in flight at once to one litellm provider (halved on a 429, creeping back up)."""

    concurrency: int = Field(ge=1)


class Yielding(_Strict):
    """When a loop yields the shared budget: its last `window` runs against the runs before them."""

    window: int = Field(default=20, ge=2)
    pass_rate_drop: float = Field(default=0.5, gt=0, lt=1)  # paused when recent pass rate < history × this
    cost_rise: float = Field(default=2.0, gt=1)  # paused when recent cost per success > history × this


class FleetLoop(_Strict):
    spec: str = Field(min_length=1)
    inputs: str | None = None
    priority: int | None = Field(default=None, ge=1)  # 1 runs first; default: its place in the list
    share: float | None = Field(default=None, gt=0, le=1)  # the most of the money this loop may spend
    deadline: datetime | date | None = None
    name: str | None = Field(default=None, min_length=1)  # default: the spec's name


class Window(BaseModel):
    """Local "HH:MM-HH:MM"; an end before the start wraps past midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window:
        m = WINDOW.match(text.strip())
        if m is None:
            raise ValueError(f"found {text!r}, expected \"HH:MM-HH:MM\" in 24-hour local time, e.g. \"22:00-06:00\"")
        start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
        if start == end:
            raise ValueError(f"found {text!r}: the window starts where it ends; leave `window:` out to run at any time")
        return cls(start=start, end=end)

    def contains(self, at: time) -> bool:
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class FleetSpec(_Strict):
    name: str | None = Field(default=None, min_length=1)  # default: the file's stem
    budget: FleetBudget
    reviewers: Reviewers | None = None
    window: str | None = None
    providers: dict[str, Provider] = Field(default_factory=dict)
    loops: list[FleetLoop] = Field(min_length=1)
    yielding: Yielding = Field(default_factory=Yielding)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            Window.parse(value)
        return value

    @property
    def time_window(self) -> Window | None:
        return Window.parse(self.window) if self.window else None


def priority_of(loop: FleetLoop, index: int) -> int:
    return loop.priority if loop.priority is not None else index + 1


def deadline_at(value: Any) -> datetime | None:
    """A loop's deadline as a naive local datetime (a date means the end of that day)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone().replace(tzinfo=None)
    return datetime.combine(value, time(23, 59, 59))
