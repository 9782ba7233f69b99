"""The SQL behind `loopkit ab`: an A/B batch's runs."""

from __future__ import annotations

from typing import Any

from .store import Ledger


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
