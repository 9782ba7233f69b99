"""How money reads everywhere loopkit shows it: terminal tables, A/B reports, markdown summaries."""

from __future__ import annotations


def usd(value: float | None, *, signed: bool = False) -> str:
    """$1.2345, or six decimals under a cent (loop calls are often fractions of one); '-' for unknown."""
    if value is None:
        return "-"
    sign = ("+" if value >= 0 else "-") if signed else ("-" if value < 0 else "")
    size = abs(value)
    return f"{sign}${size:,.6f}" if size < 0.01 else f"{sign}${size:,.4f}"
