"""The cost page of a time window: spend over time by model and by spec, a person's time, the top batches.

Totals come from `ledger.costs.cost_report`, the same numbers `loopkit cost` prints.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..formatting import usd
from ..ledger import Ledger
from ..ledger.costs import cost_report
from ..ledger.report_queries import spend_series
from ..timewindow import from_iso
from . import charts

TOP_BATCHES = 10
MAX_SERIES = 6  # the biggest spenders by name; the rest are drawn as "other"
MAX_BUCKETS = 120  # a longer window starts its chart at its first spend
_FORMATS = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d"}


def bucket_size(since: str | None, until: str | None) -> str:
    """Hours for a window of two days or less, else days."""
    start = from_iso(since)
    end = from_iso(until) if until else datetime.now().astimezone()
    return "hour" if start is not None and end is not None and end - start <= timedelta(days=2) else "day"


def _all_buckets(seen: list[str], bucket: str, since: str | None, until: str | None) -> list[str]:
    """Every bucket from the window's start (or, for a window much longer than its spend, from the first
    bucket with spend) to its end, so quiet days show as gaps rather than vanish."""
    if not seen:
        return []
    fmt, step = _FORMATS[bucket], timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start, end = from_iso(since), from_iso(until) or datetime.now().astimezone()
    first, last = datetime.strptime(seen[0], fmt), datetime.strptime(seen[-1], fmt)
    if since:
        last = max(last, datetime.strptime(end.astimezone().strftime(fmt), fmt))
    if start is not None:
        opening = datetime.strptime(start.astimezone().strftime(fmt), fmt)
        first = opening if (last - opening) / step <= MAX_BUCKETS else first
    out, t = [], first
    while t <= last:
        out.append(t.strftime(fmt))
        t += step
    return out


def spend_chart(ledger: Ledger, *, since: str | None, until: str | None, bucket: str, by: str) -> dict[str, Any]:
    """A stacked column per bucket, one layer per model (or spec), with the table the chart draws."""
    rows = spend_series(ledger, since=since, until=until, bucket=bucket, by=by)
    totals: dict[str, float] = {}
    for r in rows:
        totals[str(r["series"] or "(none)")] = totals.get(str(r["series"] or "(none)"), 0.0) + r["cost_usd"]
    ranked = sorted(totals, key=lambda k: -totals[k])
    kept = ranked[:MAX_SERIES] if len(ranked) <= MAX_SERIES + 1 else ranked[:MAX_SERIES] + ["other"]
    buckets = _all_buckets(sorted({r["bucket"] for r in rows}), bucket, since, until)
    index = {b: i for i, b in enumerate(buckets)}
    values = {name: [0.0] * len(buckets) for name in kept}
    for r in rows:
        name = str(r["series"] or "(none)")
        values[name if name in values else "other"][index[r["bucket"]]] += r["cost_usd"]
    chart = charts.stacked_columns(f"Spend per {bucket} by {by}", buckets, [(k, values[k]) for k in kept], y_fmt=usd) if rows else None
    return {"chart": chart, "series": [{"name": k, "cost_usd": sum(values[k])} for k in kept]}


def cost_page(ledger: Ledger, *, since: str | None, until: str | None) -> dict[str, Any]:
    report = cost_report(ledger, since=since, until=until, by="model")
    batches = cost_report(ledger, since=since, until=until, by="batch")["groups"][:TOP_BATCHES]
    specs = cost_report(ledger, since=since, until=until, by="spec")["groups"]
    bucket = bucket_size(since, until)
    return {
        "since": since, "until": until, "bucket": bucket, "report": report, "batches": batches, "specs": specs,
        "by_model": spend_chart(ledger, since=since, until=until, bucket=bucket, by="model"),
        "by_spec": spend_chart(ledger, since=since, until=until, bucket=bucket, by="spec"),
    }
