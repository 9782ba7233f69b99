"""How a person's time reads in `run`'s summary and in `show`: minutes, and their price when a rate is set."""

from __future__ import annotations

from typing import Any

from ..formatting import usd as money


def _minutes(value: float) -> str:
    return f"{value:,.0f} min" if value >= 10 else f"{value:,.1f} min".replace(".0 min", " min")


def time_text(minutes: float, usd: float, unpriced: float = 0.0) -> str:
    """`12 min ($18.00)`; minutes recorded without a rate are not priced (and say so)."""
    if unpriced >= minutes:
        return f"{_minutes(minutes)} (no human_rate to price it)"
    return f"{_minutes(minutes)} ({money(usd)}" + (f"; {_minutes(unpriced)} unpriced)" if unpriced else ")")


def human_parts(h: dict[str, Any]) -> list[str]:
    """A person's time, recorded and still expected, as phrases (none when there is neither)."""
    parts = []
    if h.get("reviews"):
        parts.append(f"a person's time {time_text(h['minutes'], h['usd'], h['unpriced_minutes'])} in {h['reviews']:,} review(s)")
    if h.get("waiting_runs"):
        expected = f"≈{_minutes(h['waiting_minutes'])}" + (f", {money(h['waiting_usd'])}" if h["waiting_usd"] else "")
        parts.append(f"{h['waiting_runs']:,} run(s) wait for a person ({expected} expected; `loopkit review`)")
    return parts


def human_line(ledger: Any, *, batch_id: str) -> str | None:
    """The batch's human time in one line, or None when no person was involved."""
    from ..human import batch_human

    parts = human_parts(batch_human(ledger, batch_id))
    return " · ".join(parts) if parts else None


def run_parts(h: dict[str, Any]) -> list[str]:
    """One run's human time: what its reviews took, and what it is expected to take while it waits."""
    parts = human_parts({k: v for k, v in h.items() if k != "waiting_minutes"})
    if h.get("waiting_minutes") is not None:
        parts.append(f"waits for a person: ≈{_minutes(h['waiting_minutes'])} expected (`loopkit review`)")
    return parts
