"""The SQL behind `loopkit ab`: a variant-aware response cache and an A/B batch's runs."""

from __future__ import annotations

from typing import Any

from ..models import Completion
from .store import Ledger


def lookup_for_variant(ledger: Ledger, key: str, *, batch_id: str, variant: str) -> Completion | None:
    """A cached response, never one the other variant of this batch made (it would look free)."""
    row = ledger.one(
        "SELECT c.response, c.prompt_tokens, c.completion_tokens, c.cost_usd FROM calls c LEFT JOIN runs r ON r.id = c.run_id "
        "WHERE c.cache_key=? AND c.error IS NULL AND c.response IS NOT NULL AND (c.batch_id IS NOT ? OR r.variant = ?) "
        "ORDER BY c.created_at LIMIT 1", (key, batch_id, variant))
    if row is None:
        return None
    return Completion(row["response"], row["prompt_tokens"], row["completion_tokens"], 0.0, 0.0, cached=True,
                      recorded_cost_usd=row["cost_usd"] or 0.0)


def ab_runs(ledger: Ledger, batch_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, int]]:
    """(runs, per-run call latency/cached sums, per-run escalation counts) of one batch."""
    runs = ledger.query("SELECT id, variant, case_id, repeat, status, success, reward, iterations, cost_usd, started_at, ended_at "
                        "FROM runs WHERE batch_id=? ORDER BY started_at, id", (batch_id,))
    calls = {r["run_id"]: r for r in ledger.query(
        "SELECT run_id, COALESCE(SUM(latency_ms), 0) AS ms, COALESCE(SUM(cached), 0) AS cached FROM calls WHERE batch_id=? "
        "GROUP BY run_id", (batch_id,))}
    escalations = {r["run_id"]: r["n"] for r in ledger.query(
        "SELECT e.run_id, COUNT(*) AS n FROM events e JOIN runs r ON r.id = e.run_id WHERE r.batch_id=? AND e.kind='escalation' "
        "GROUP BY e.run_id", (batch_id,))}
    return runs, calls, escalations
