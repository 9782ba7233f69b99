"""The SQL of a person's time: `human_time` rows (one per review, kind `human`), kept apart from `calls`.

A row's `usd` is its minutes at the rate the run was priced with (`usd_per_hour`), NULL when no rate
was set; a query given a rate prices every minute at it instead. Runs still waiting for a person have
no row yet: what they are expected to take is in their escalation event (`minutes`, `usd_per_hour`).
A ledger from before this table (read without migrating) has no human time.
"""

from __future__ import annotations

import json
from typing import Any

from ..timewindow import utcnow_iso
from .rows import insert, to_json
from .store import Ledger

__all__ = ["GROUPS", "has_human_time", "human_by_run", "human_report", "pending_reviews", "record_review"]

# `cost --by NAME` for human rows: a person is not a model, so `--by model` shows them as the group `human`.
GROUPS = {
    "model": "'human'",
    "spec": "r.spec_name",
    "day": "date(h.created_at, 'localtime')",
    "batch": "h.batch_id",
}


def has_human_time(ledger: Ledger) -> bool:
    return ledger.one("SELECT 1 AS x FROM sqlite_master WHERE type='table' AND name='human_time'") is not None


def record_review(ledger: Ledger, run_id: str, event: dict[str, Any], *, minutes: float | None, usd_per_hour: float | None,
                  estimated: bool) -> None:
    """A review's event and, when its length is known, its human-time row, in one transaction."""
    now = utcnow_iso()
    with ledger.write() as conn:
        insert(conn, "events", [{"run_id": run_id, "kind": "review", "detail": to_json(event), "created_at": now}])
        if minutes is None:
            return
        row = conn.execute("SELECT batch_id FROM runs WHERE id=?", (run_id,)).fetchone()
        insert(conn, "human_time", [{
            "run_id": run_id, "batch_id": row[0] if row else None, "kind": "human", "minutes": float(minutes),
            "usd_per_hour": usd_per_hour, "usd": None if usd_per_hour is None else minutes * usd_per_hour / 60,
            "estimated": int(estimated), "decision": event.get("decision"), "reviewer": event.get("reviewer"), "created_at": now}])


def last_escalation_to_person(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """The detail of the event that parked a run for a person (its expected minutes and rate), or {}."""
    row = ledger.one("SELECT detail FROM events WHERE run_id=? AND kind='escalation' AND json_extract(detail, '$.human') "
                     "IS NOT NULL ORDER BY id DESC LIMIT 1", (run_id,))
    return json.loads(row["detail"]) if row else {}


def _price(usd_per_hour: float | None) -> tuple[str, list[Any]]:
    """The SQL of a row's USD: as recorded, or every minute at `usd_per_hour` when given."""
    return ("TOTAL(h.usd)", []) if usd_per_hour is None else ("TOTAL(h.minutes) * ? / 60.0", [usd_per_hour])


def human_by_run(ledger: Ledger, *, batch_id: str | None = None, run_id: str | None = None,
                 usd_per_hour: float | None = None) -> dict[str, dict[str, Any]]:
    """Recorded human time per run of a batch (or of one run): {run_id: {reviews, minutes, usd, unpriced_minutes}}."""
    if not has_human_time(ledger):
        return {}
    price, args = _price(usd_per_hour)
    where, scope = ("h.batch_id = ?", [batch_id]) if batch_id is not None else ("h.run_id = ?", [run_id])
    unpriced = "0.0" if usd_per_hour is not None else "TOTAL(CASE WHEN h.usd IS NULL THEN h.minutes END)"
    rows = ledger.query(f"SELECT h.run_id, COUNT(*) AS reviews, TOTAL(h.minutes) AS minutes, {price} AS usd, "
                        f"{unpriced} AS unpriced_minutes FROM human_time h WHERE {where} GROUP BY h.run_id", [*args, *scope])
    return {r.pop("run_id"): r for r in rows}


def pending_reviews(ledger: Ledger, *, batch_id: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    """Runs still waiting for a person, each with what its hand-off expects: `minutes` and `usd_per_hour`
    (None where the spec did not say)."""
    where, args = ("r.batch_id = ?", [batch_id]) if batch_id is not None else ("r.id = ?", [run_id])
    return ledger.query(
        "SELECT r.id AS run_id, json_extract(e.detail, '$.minutes') AS minutes, json_extract(e.detail, '$.usd_per_hour') "
        "AS usd_per_hour FROM runs r JOIN events e ON e.id = (SELECT MAX(x.id) FROM events x WHERE x.run_id = r.id AND "
        f"x.kind = 'escalation' AND json_extract(x.detail, '$.human') IS NOT NULL) WHERE {where} AND r.status = 'needs_review'",
        args)


def _zero() -> dict[str, Any]:
    return {"reviews": 0, "minutes": 0.0, "usd": 0.0, "unpriced_minutes": 0.0}


def human_report(ledger: Ledger, *, since: str | None = None, until: str | None = None, by: str | None = None,
                 usd_per_hour: float | None = None) -> dict[str, Any]:
    """Human time recorded in [since, until): `{total, groups: {key: figures}}`, each with reviews, minutes,
    usd (priced minutes only, or every minute at `usd_per_hour`) and unpriced_minutes (recorded without a rate)."""
    if not has_human_time(ledger):
        return {"total": _zero(), "groups": {}}
    key = GROUPS[by] if by else "NULL"
    join = " LEFT JOIN runs r ON r.id = h.run_id" if by == "spec" else ""
    price, args = _price(usd_per_hour)
    where, window = [], []
    for clause, value in (("h.created_at >= ?", since), ("h.created_at < ?", until)):
        if value is not None:
            where.append(clause)
            window.append(value)
    unpriced = "0.0" if usd_per_hour is not None else "TOTAL(CASE WHEN h.usd IS NULL THEN h.minutes END)"
    rows = ledger.query(
        f"SELECT {key} AS key, COUNT(*) AS reviews, TOTAL(h.minutes) AS minutes, {price} AS usd, {unpriced} AS unpriced_minutes "
        f"FROM human_time h{join}" + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY 1", [*args, *window])
    total = _zero()
    for row in rows:
        for name in total:
            total[name] += row[name] or 0
    return {"total": total, "groups": {row.pop("key"): row for row in rows} if by else {}}


HUMAN_FIELDS = ("human_reviews", "human_minutes", "human_usd", "human_unpriced_minutes")


def add_human_time(ledger: Ledger, report: dict[str, Any], *, usd_per_hour: float | None = None) -> dict[str, Any]:
    """Put a person's time beside a `cost` report's model spend (never into it): `human_reviews`,
    `human_minutes`, `human_usd`, `human_unpriced_minutes` on its total and on each group; a group with
    human time and no model calls (`--by model` puts a person in the group `human`) is added after the others."""
    found = human_report(ledger, since=report["since"], until=report["until"], by=report["by"], usd_per_hour=usd_per_hour)

    def put(into: dict[str, Any], row: dict[str, Any] | None) -> None:
        row = row or _zero()
        into.update({"human_reviews": row["reviews"], "human_minutes": row["minutes"], "human_usd": row["usd"],
                     "human_unpriced_minutes": row["unpriced_minutes"]})

    put(report["total"], found["total"])
    groups = found["groups"]
    for group in report["groups"]:
        put(group, groups.pop(group["key"], None))
    for key, row in sorted(groups.items(), key=lambda kv: (-(kv[1]["usd"] or 0), -(kv[1]["minutes"] or 0), str(kv[0]))):
        empty = {name: 0 for name in report["total"] if name not in HUMAN_FIELDS}
        group = {"key": key, **empty, "worker_usd": 0.0, "judge_usd": 0.0}
        put(group, row)
        report["groups"].append(group)
    return report
