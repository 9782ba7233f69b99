"""Local time for the fleet: the window, the day its budgets reset, and waiting for either.

The runner reads time only through a `Clock`, so tests (and a dry run) can move it without sleeping.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol

from ..timewindow import to_iso
from .model import Window


class Clock(Protocol):
    def now(self) -> datetime:
        """Local wall-clock time, naive."""

    async def sleep(self, seconds: float) -> None:
        """Wait (a test clock moves itself forward instead)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def day_bounds(now: datetime) -> tuple[str, str]:
    """The local day `now` is in, as [since, until) ISO UTC text for ledger queries."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return to_iso(start), to_iso(start + timedelta(days=1))


def seconds_to_midnight(now: datetime) -> float:
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return max(1.0, (tomorrow - now).total_seconds())


def in_window(window: Window | None, now: datetime) -> bool:
    return window is None or window.contains(now.time())


def seconds_to_open(window: Window, now: datetime) -> float:
    """How long until the window opens next (0 inside it)."""
    if window.contains(now.time()):
        return 0.0
    opens = now.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    if opens <= now:
        opens += timedelta(days=1)
    return max(1.0, (opens - now).total_seconds())
