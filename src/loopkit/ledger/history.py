"""The SQL behind `loopkit plan` and `cheapest:`: a spec's recorded runs, iteration by iteration.

Read-only. The runs in scope are those of the given spec versions (by hash) that started in
[since, until) and finished (passed, failed, or waiting for a person); errored and interrupted runs
say nothing about the loop.
"""

from __future__ import annotations

import json
from typing import Any

from .store import Ledger

__all__ = ["History", "spec_versions", "read_history"]

FINISHED = ("passed", "failed", "needs_review")


def spec_versions(ledger: Ledger, name: str | None = None) -> list[dict[str, Any]]:
    """Every recorded spec version (of one name, when given): hash, name and text."""
    if name is None:
        return ledger.query("SELECT hash, name, yaml FROM specs ORDER BY created_at")
    return ledger.query("SELECT hash, name, yaml FROM specs WHERE name=? ORDER BY created_at", (name,))


class History(dict):
    """`runs`, `iterations`, `events` (escalation and review, detail decoded) and `human` (minutes per run)."""


def _scope(hashes: list[str], since: str | None, until: str | None) -> tuple[str, list[Any]]:
    where = [f"r.spec_hash IN ({', '.join('?' for _ in hashes)})", f"r.status IN ({', '.join('?' for _ in FINISHED)})"]
    args: list[Any] = [*hashes, *FINISHED]
    for clause, value in (("r.started_at >= ?", since), ("r.started_at < ?", until)):
        if value is not None:
            where.append(clause)
            args.append(value)
    return " AND ".join(where), args


def read_history(ledger: Ledger, hashes: list[str], *, since: str | None = None, until: str | None = None) -> History:
    """The runs of these spec versions with their iterations (each with `cached`: whether any of its calls came
    from the cache, so its cost is not what the step costs), escalation/review events and recorded human minutes."""
    found = History(runs=[], iterations=[], events=[], human={})
    if not hashes:
        return found
    has_human = ledger.one("SELECT 1 AS x FROM sqlite_master WHERE type='table' AND name='human_time'") is not None
    for start in range(0, len(hashes), 400):
        where, args = _scope(hashes[start:start + 400], since, until)
        found["runs"] += ledger.query(
            "SELECT r.id, r.case_id, r.repeat, r.variant, r.batch_id, r.spec_hash, r.status, r.stop_reason, r.success "
            f"FROM runs r WHERE {where}", args)
        found["iterations"] += ledger.query(
            "SELECT i.run_id, i.n, i.model, i.passed, i.cost_usd, i.prompt_tokens, i.completion_tokens, "
            "(SELECT COALESCE(MAX(c.cached), 0) FROM calls c WHERE c.run_id = i.run_id AND c.iteration = i.n) AS cached "
            f"FROM iterations i JOIN runs r ON r.id = i.run_id WHERE {where} ORDER BY i.run_id, i.n", args)
        found["events"] += [{**e, "detail": json.loads(e["detail"] or "{}")} for e in ledger.query(
            "SELECT e.run_id, e.kind, e.detail FROM events e JOIN runs r ON r.id = e.run_id "
            f"WHERE e.kind IN ('escalation', 'review') AND {where} ORDER BY e.id", args)]
        if has_human:
            found["human"].update({row["run_id"]: row["minutes"] for row in ledger.query(
                "SELECT h.run_id, TOTAL(h.minutes) AS minutes FROM human_time h JOIN runs r ON r.id = h.run_id "
                f"WHERE {where} GROUP BY h.run_id", args)})
    return found
