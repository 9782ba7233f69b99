"""`loopkit cost`: spend, tokens and calls in a time window, from the `calls` table.

One pass over the window's calls, read from the calls' time index alone, grouped by (group, role),
folded into totals here. A cached call costs nothing; what it saved is estimated as the cost of the
original, uncached call with the same `cache_key` (the most expensive one, should a key have been
paid for more than once, wherever in time it was), priced when the cached call was recorded
(`calls.saved_usd`). A cached call whose original was not in the ledger counts in
`cached_without_original` and adds nothing to `saved_usd`.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .human import add_human_time
from .store import Ledger

__all__ = ["GROUPS", "SAVED_ESTIMATE", "cost_report"]

# --by NAME → the SQL expression of the group key. `day` is the local calendar day (SQLite's
# 'localtime' follows the process's time zone, as Python's does).
GROUPS = {
    "model": "c.model",
    "spec": "r.spec_name",
    "day": "date(c.created_at, 'localtime')",
    "batch": "c.batch_id",
}

SAVED_ESTIMATE = "each cached call saved the cost of the original uncached call with the same cache key"

_FIELDS = ("calls", "cost_usd", "prompt_tokens", "completion_tokens", "cached_calls", "saved_usd", "cached_without_original", "errors")


def _zero() -> dict[str, Any]:
    return {"calls": 0, "cost_usd": 0.0, "prompt_tokens": 0, "completion_tokens": 0, "cached_calls": 0, "saved_usd": 0.0,
            "cached_without_original": 0, "errors": 0}


def _add(into: dict[str, Any], row: dict[str, Any]) -> None:
    for name in _FIELDS:
        into[name] += row[name] or 0


def _window(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    where, args = [], []
    if since is not None:
        where.append("c.created_at >= ?")
        args.append(since)
    if until is not None:
        where.append("c.created_at < ?")
        args.append(until)
    return (" WHERE " + " AND ".join(where) if where else ""), args


def cost_report(ledger: Ledger, *, since: str | None = None, until: str | None = None, by: str | None = None,
                human_usd_per_hour: float | None = None) -> dict[str, Any]:
    """Spend in [since, until) (ledger ISO strings; None = unbounded), with a person's time beside it (human.py:
    `human_minutes`, `human_usd` … on the total and each group; `human_usd_per_hour` prices every minute).

    Returns `{since, until, by, total, roles, groups, saved_estimate}`: `total` and each of
    `roles[role]` (worker, judge) and `groups[i]` hold calls, cost_usd, prompt_tokens,
    completion_tokens, cached_calls, saved_usd, cached_without_original and errors; each group
    also has `key`, `worker_usd` and `judge_usd`, and groups are sorted by spend, highest first.
    """
    if by is not None and by not in GROUPS:
        raise UsageError(f"--by {by!r}: use one of {', '.join(GROUPS)}")
    key = GROUPS[by] if by else "NULL"
    join = " LEFT JOIN runs r ON r.id = c.run_id" if by == "spec" else ""
    where, args = _window(since, until)
    rows = ledger.query(
        f"SELECT {key} AS key, c.role AS role, COUNT(*) AS calls, TOTAL(c.cost_usd) AS cost_usd, "
        "TOTAL(c.prompt_tokens) AS prompt_tokens, TOTAL(c.completion_tokens) AS completion_tokens, "
        f"SUM(c.cached = 1) AS cached_calls, TOTAL({ledger.saved_by_call}) AS saved_usd, COUNT({ledger.saved_by_call}) AS priced, "
        f"SUM(c.error IS NOT NULL) AS errors FROM calls c{join}{where} GROUP BY 1, 2", args)
    for row in rows:
        row["cached_without_original"] = (row["cached_calls"] or 0) - row.pop("priced")
    total = _zero()
    roles: dict[str, dict[str, Any]] = {"worker": _zero(), "judge": _zero()}
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        for name in ("prompt_tokens", "completion_tokens"):
            row[name] = int(row[name] or 0)
        _add(total, row)
        _add(roles.setdefault(row["role"] or "-", _zero()), row)
        if by:
            group = groups.setdefault(row["key"], {"key": row["key"], **_zero(), "worker_usd": 0.0, "judge_usd": 0.0})
            _add(group, row)
            if row["role"] in ("worker", "judge"):
                group[f"{row['role']}_usd"] += row["cost_usd"] or 0.0
    ordered = sorted(groups.values(), key=lambda g: (-g["cost_usd"], -g["calls"], str(g["key"])))
    if by == "batch":
        _label_batches(ledger, ordered)
    report = {"since": since, "until": until, "by": by, "total": total, "roles": roles, "groups": ordered,
              "saved_estimate": SAVED_ESTIMATE}
    return add_human_time(ledger, report, usd_per_hour=human_usd_per_hour)


def _label_batches(ledger: Ledger, groups: list[dict[str, Any]]) -> None:
    """Give each batch group its spec name, kind and start time."""
    ids = [g["key"] for g in groups if g["key"] is not None]
    info: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in ledger.query(
                "SELECT b.id, b.kind, b.started_at, s.name AS spec_name FROM batches b LEFT JOIN specs s ON s.hash = b.spec_hash "
                f"WHERE b.id IN ({', '.join('?' for _ in chunk)})", chunk):
            info[row["id"]] = row
    for g in groups:
        row = info.get(g["key"], {})
        g["spec_name"], g["batch_kind"], g["started_at"] = row.get("spec_name"), row.get("kind"), row.get("started_at")
