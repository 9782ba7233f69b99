"""How money and times read everywhere loopkit shows them: terminal tables, A/B reports, markdown summaries.

Times: the ledger keeps UTC ISO text; a person reads local time with its zone, the same local time that
`--since` and `--until` are typed in (e.g. `2026-12-03 09:14:05 CET`, or `+05:30` where the zone has no name).
"""

from __future__ import annotations

from datetime import datetime, timezone


def usd(value: float | None, *, signed: bool = False) -> str:
    """$1.2345, or six decimals under a cent (loop calls are often fractions of one); '-' for unknown."""
    if value is None:
        return "-"
    sign = ("+" if value >= 0 else "-") if signed else ("-" if value < 0 else "")
    size = abs(value)
    return f"{sign}${size:,.6f}" if size < 0.01 else f"{sign}${size:,.4f}"


def _local(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # the ledger's text always says Z; a bare time is UTC all the same
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone()
    except (OverflowError, OSError):  # a year the platform's local time cannot convert
        return None


def zone(moment: datetime) -> str:
    """The zone's short name (CET, UTC), or its offset (+05:30) where the name is only a number."""
    name = moment.strftime("%Z")
    if name and any(ch.isalpha() for ch in name):
        return name
    offset = moment.strftime("%z") or "+0000"
    return f"{offset[:3]}:{offset[3:5]}"


def local_time(iso: str | None, *, seconds: bool = True, with_zone: bool = True) -> str:
    """A ledger timestamp as local time: `2026-12-03 09:14:05 CET`; '-' when missing, the text itself when unreadable."""
    moment = _local(iso)
    if moment is None:
        return "-" if not iso else iso
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {zone(moment)}" if with_zone else text


def local_zone(iso: str | None) -> str | None:
    """The local zone a ledger timestamp falls in (CET in winter, CEST in summer); None when unreadable."""
    moment = _local(iso)
    return zone(moment) if moment is not None else None


def duration(seconds: float | None) -> str:
    """0.4 s, 12.3 s, 4 m 05 s, 2 h 03 m."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"
