"""Read-side questions the CLI asks of the ledger: lists, batch summaries, the review queue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..liveness import is_stale
from .store import Ledger

_SECONDS = "(julianday(ended_at) - julianday(started_at)) * 86400.0"


def _runs_where(*, spec: str | None, status: str | None, since: str | None, until: str | None, batch_id: str | None,
                suspect: bool) -> tuple[str, list[Any]]:
    where, args = [], []
    for clause, value in (("spec_name = ?", spec), ("status = ?", status), ("started_at >= ?", since),
                          ("started_at < ?", until), ("batch_id = ?", batch_id)):
        if value is not None:
            where.append(clause)
            args.append(value)
    if suspect:
        where.append("suspect IS NOT NULL")
    return (" WHERE " + " AND ".join(where) if where else ""), args


def list_runs(ledger: Ledger, *, spec: str | None = None, status: str | None = None, since: str | None = None,
              until: str | None = None, batch_id: str | None = None, suspect: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    where, args = _runs_where(spec=spec, status=status, since=since, until=until, batch_id=batch_id, suspect=suspect)
    return ledger.query(f"SELECT * FROM runs{where} ORDER BY started_at DESC LIMIT ?", [*args, limit])


def count_runs(ledger: Ledger, *, spec: str | None = None, status: str | None = None, since: str | None = None,
               until: str | None = None, batch_id: str | None = None, suspect: bool = False) -> int:
    """How many runs `list_runs` would give without its limit (counted in SQL, no row loaded)."""
    where, args = _runs_where(spec=spec, status=status, since=since, until=until, batch_id=batch_id, suspect=suspect)
    return int((ledger.one(f"SELECT COUNT(*) AS n FROM runs{where}", args) or {}).get("n") or 0)


def cache_use(ledger: Ledger, *, run_id: str | None = None, batch_id: str | None = None) -> dict[str, Any]:
    """How many of a run's (or batch's) calls the cache answered, and what they would have cost: each cached
    call priced at its original uncached call with the same cache key (as `loopkit cost` counts savings).

    Returns `calls`, `cached`, `would_have_cost_usd` and `without_original` (cached calls whose original was not in the ledger).
    """
    column, value = ("run_id", run_id) if run_id is not None else ("batch_id", batch_id)
    row = ledger.one(
        f"SELECT COUNT(*) AS calls, COALESCE(SUM(c.cached = 1), 0) AS cached, TOTAL({ledger.saved_by_call}) AS would_have_cost_usd, "
        f"COUNT({ledger.saved_by_call}) AS priced FROM calls c WHERE c.{column} = ?", (value,)) or {}
    cached = int(row.get("cached") or 0)
    return {"calls": int(row.get("calls") or 0), "cached": cached, "would_have_cost_usd": float(row.get("would_have_cost_usd") or 0.0),
            "without_original": cached - int(row.get("priced") or 0)}


SHOWN_RUNS = 50
SHOWN_SUSPECTS = 10


def batch_summary(ledger: Ledger, batch_id: str, *, shown: int = SHOWN_RUNS) -> dict[str, Any]:
    """Pass rate, cost, cost per passed case, statuses, stop reasons, why runs errored, cache use, the slowest
    and most expensive cases, and the first `shown` runs (`first_runs`). Every figure is aggregated in SQL, so
    the memory it takes does not grow with the batch; `iter_batch_runs` streams every run where all are wanted."""
    batch = ledger.batch(batch_id) or {}
    totals = ledger.one(
        "SELECT COUNT(*) AS runs, COALESCE(SUM(success), 0) AS passed, COALESCE(SUM(cost_usd), 0) AS cost, "
        "MIN(spec_name) AS spec_name, COUNT(suspect) AS suspects FROM runs WHERE batch_id=?", (batch_id,)) or {}
    reasons = {r["stop_reason"] or "-": r["n"] for r in ledger.query(
        "SELECT stop_reason, COUNT(*) AS n FROM runs WHERE batch_id=? GROUP BY stop_reason ORDER BY n DESC", (batch_id,))}
    slowest = ledger.query(f"SELECT id, case_id, {_SECONDS} AS seconds FROM runs WHERE batch_id=? AND ended_at IS NOT NULL "
                           "ORDER BY seconds DESC LIMIT 3", (batch_id,))
    expensive = ledger.query("SELECT id, case_id, cost_usd FROM runs WHERE batch_id=? ORDER BY cost_usd DESC LIMIT 3", (batch_id,))
    runs, passed, cost = totals.get("runs", 0), totals.get("passed", 0), float(totals.get("cost", 0.0))
    if is_stale(batch):  # its process is gone (kill -9, a crash): it is interrupted and can be resumed
        batch = {**batch, "status": "interrupted", "resume": f"loopkit resume {batch_id[:10]}"}
    batch = {**batch, "tags": json.loads(batch.get("tags") or "{}"), "options": json.loads(batch.get("options") or "{}"),
             "argv": json.loads(batch.get("argv") or "[]")}
    return {
        "batch": batch, "spec_name": totals.get("spec_name"), "runs": runs, "passed": passed,
        "pass_rate": passed / runs if runs else 0.0, "cost_usd": cost, "cost_per_pass": cost / passed if passed else None,
        "statuses": batch_status_counts(ledger, batch_id), "stop_reasons": reasons, "error_kinds": error_kinds(ledger, batch_id),
        "cache": cache_use(ledger, batch_id=batch_id), "slowest": slowest, "most_expensive": expensive,
        "suspect_runs": int(totals.get("suspects") or 0), "suspects": suspect_runs(ledger, batch_id),
        "first_runs": [bare_run(r) for r in batch_runs(ledger, batch_id, limit=shown)],
    }


def bare_run(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row without its resume state and case text (as `show BATCH` lists runs)."""
    return {k: v for k, v in row.items() if k not in ("state", "case_json")}


def iter_batch_runs(ledger: Ledger, batch_id: str) -> Iterator[dict[str, Any]]:
    """Every run of a batch by start time, one row at a time (without the resume state)."""
    cursor = ledger.conn.execute("SELECT * FROM runs WHERE batch_id=? ORDER BY started_at", (batch_id,))
    for row in cursor:
        yield dict(row)


def suspect_runs(ledger: Ledger, batch_id: str, *, limit: int = SHOWN_SUSPECTS) -> list[dict[str, Any]]:
    """The first runs of a batch that passed their reward but failed an audit."""
    return ledger.query("SELECT id, case_id, suspect FROM runs WHERE batch_id=? AND suspect IS NOT NULL ORDER BY started_at LIMIT ?",
                        (batch_id, limit))


# Why a run errored, from its message: the kind a person acts on (fix a key, a model name, a server...).
# LIKE is case-insensitive for ASCII; the first matching kind wins.
_ERROR_KIND = """CASE
  WHEN stop_reason = 'checker_error' THEN 'checker error'
  WHEN message LIKE 'replay:%' THEN 'replay miss (no recorded response)'
  WHEN message LIKE '%AuthenticationError%' OR message LIKE '%PermissionDeniedError%' THEN 'authentication failed (401/403)'
  WHEN message LIKE '%NotFoundError%' OR message LIKE '%model_not_found%' OR message LIKE '%does not exist%'
    OR message LIKE '%LLM Provider NOT provided%' THEN 'unknown model (404)'
  WHEN message LIKE '%Connection error%' OR message LIKE '%Connection refused%' OR message LIKE '%APIConnectionError%'
    THEN 'connection failed'
  WHEN message LIKE '%RateLimitError%' THEN 'rate limited (429)'
  WHEN message LIKE '%Timeout%' OR message LIKE '%timed out%' THEN 'timed out'
  WHEN message LIKE '%InternalServerError%' OR message LIKE '%ServiceUnavailableError%' THEN 'server error (5xx)'
  WHEN message LIKE '%BadRequestError%' THEN 'bad request (400)'
  WHEN message IS NULL OR message = '' THEN 'error without a message'
  ELSE 'other error' END"""


def error_kinds(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    """The batch's error runs by kind, most first: `kind`, `runs`, and the first one's `message`, `run_id`, `case_id`."""
    return ledger.query(
        f"SELECT kind, COUNT(*) AS runs, MIN(started_at) AS first_at, message, id AS run_id, case_id FROM ("
        f"SELECT {_ERROR_KIND} AS kind, message, id, case_id, started_at FROM runs WHERE batch_id=? AND status='error') "
        "GROUP BY kind ORDER BY runs DESC, first_at", (batch_id,))


def review_queue(ledger: Ledger) -> list[dict[str, Any]]:
    """Runs parked for a person, with what the person needs to decide: a fleet's runs first, by their loop's
    priority (SPEC.md §9), then oldest first."""
    priority = "CAST(json_extract(b.tags, '$.fleet_priority') AS INTEGER)"
    rows = ledger.query("SELECT r.id, r.batch_id, r.spec_name, r.case_id, r.case_json, r.output, r.cost_usd, r.iterations, r.message, "
                        "r.started_at FROM runs r LEFT JOIN batches b ON b.id = r.batch_id WHERE r.status='needs_review' "
                        f"ORDER BY {priority} IS NULL, {priority}, r.started_at")
    for r in rows:
        r["case"] = json.loads(r.pop("case_json") or "{}")
        last = ledger.one("SELECT n, output FROM iterations WHERE run_id=? ORDER BY n DESC LIMIT 1", (r["id"],))
        r["last_output"] = (last or {}).get("output")
        r["failed_checks"] = [c["checker"] for c in ledger.query(
            "SELECT checker FROM checks WHERE run_id=? AND iteration=? AND passed=0 AND audit=0", (r["id"], (last or {}).get("n", 0)))]
    return rows


def batch_runs(ledger: Ledger, batch_id: str, *, order: str = "started_at", limit: int | None = None) -> list[dict[str, Any]]:
    """Every run of a batch (or the first `limit`), by start time or (`order="case"`) by case and repeat."""
    by = "case_id, repeat, started_at" if order == "case" else "started_at"
    return ledger.query(f"SELECT * FROM runs WHERE batch_id=? ORDER BY {by} LIMIT ?", (batch_id, -1 if limit is None else limit))


def batch_status_counts(ledger: Ledger, batch_id: str) -> dict[str, int]:
    return {r["status"]: r["n"] for r in ledger.query(
        "SELECT status, COUNT(*) AS n FROM runs WHERE batch_id=? GROUP BY status", (batch_id,))}


def batch_spend(ledger: Ledger, batch_id: str) -> float:
    """What a batch's calls cost so far (its budget covers it across a resume)."""
    row = ledger.one("SELECT COALESCE(SUM(cost_usd), 0) AS c FROM calls WHERE batch_id=?", (batch_id,))
    return float(row["c"]) if row else 0.0


def batch_cache_hits(ledger: Ledger, batch_id: str) -> tuple[int, int]:
    """(calls, cached calls) of a batch."""
    row = ledger.one("SELECT COUNT(*) AS n, COALESCE(SUM(cached), 0) AS hits FROM calls WHERE batch_id=?", (batch_id,)) or {}
    return int(row.get("n") or 0), int(row.get("hits") or 0)


def last_feedback(ledger: Ledger, run_id: str) -> str:
    """The feedback of a run's latest iteration (what a JUnit failure shows)."""
    row = ledger.one("SELECT feedback FROM iterations WHERE run_id=? ORDER BY n DESC LIMIT 1", (run_id,))
    return (row or {}).get("feedback") or ""
