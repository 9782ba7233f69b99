"""Times for `--since` / `--until`, and the ledger's UTC timestamp text.

`parse_time` reads what a person types, in local time like git: `now`, `today`, `yesterday`,
`30s` / `30m` / `2h` / `7d` / `2w` ago, `2026-11-20` (local midnight), `2026-11-20T14:30`
(seconds, fractions, `Z` or `+02:00` optional; no offset means local time). It returns an aware
UTC datetime. `to_iso` writes the ledger's format, whose strings sort like the times they hold.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone

from loopkit.errors import UsageError

__all__ = ["from_iso", "parse_time", "seconds_between", "to_iso", "utcnow_iso"]

ACCEPTED = "now, today, yesterday, 30m, 2h, 7d, 2w, 2026-11-20 or 2026-11-20T14:30"

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"(\d{1,9})\s*([smhdw])")
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}"  # date
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"  # time: HH:MM[:SS[.ffffff]]
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"  # offset: Z, +HH, +HHMM, +HH:MM
)


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """Parse a `--since` / `--until` value into an aware UTC datetime.

    `now` is the reference for `now`, `today`, `yesterday` and relative values (default: the
    current time; a naive `now` is taken as local time). Raises `UsageError` on anything else.
    """
    now = _utc(now if now is not None else datetime.now(timezone.utc))
    text = value.strip()
    lowered = text.lower()
    if lowered == "now":
        return now
    if lowered == "today":
        return _local_midnight(now.astimezone().date())
    if lowered == "yesterday":
        return _local_midnight(now.astimezone().date() - timedelta(days=1))
    if match := _RELATIVE.fullmatch(lowered):
        amount, unit = match.groups()
        try:
            return now - timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:
            raise UsageError(f"bad time {value!r}: {amount}{unit} ago is before year 1") from None
    if _ISO.fullmatch(text.upper()):
        try:
            return _utc(datetime.fromisoformat(text.upper()))
        except (ValueError, OverflowError, OSError):
            pass  # 2026-02-30, 25:00, or a year the platform's local time cannot convert
    raise UsageError(f"bad time {value!r}: use {ACCEPTED}")


def to_iso(dt: datetime) -> str:
    """The ledger's timestamp text: UTC, microseconds, `Z` (e.g. `2026-11-20T14:30:00.000000Z`).

    Fixed width, so strings compare in SQL in the same order as the times. A naive `dt` is local time.
    """
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str | None) -> datetime | None:
    """The aware UTC datetime of a ledger timestamp (`to_iso`'s text); None for missing or bad text."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one ledger timestamp to another (a run's wall time); None when either is missing."""
    a, b = from_iso(start), from_iso(end)
    return None if a is None or b is None else max(0.0, (b - a).total_seconds())


_SECOND: tuple[int, str] = (-1, "")  # the last whole second formatted, shared by every thread


def utcnow_iso() -> str:
    """The current time in the ledger's format (`to_iso`'s text). Three are taken per iteration, so the
    date and time are formatted once per second and only the microseconds per call."""
    global _SECOND
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    known = _SECOND
    if known[0] != seconds:
        known = _SECOND = (seconds, datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{known[1]}.{micros:06d}Z"


def _utc(dt: datetime) -> datetime:
    """An aware UTC datetime; a naive one is read as local time (which `astimezone` does)."""
    return dt.astimezone(timezone.utc)


def _local_midnight(day: date) -> datetime:
    """Midnight at the start of `day` in local time, as UTC (right across DST changes)."""
    return _utc(datetime(day.year, day.month, day.day))
