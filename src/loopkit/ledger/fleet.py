"""The fleet's rows and questions (SPEC.md §9): the `fleets` table, each loop's batch, the shared
spend and reviewer minutes of a window of time, pause state, and per-loop figures for `fleet status`.

A loop's batch is a `batches` row of kind `fleet` whose tags hold `fleet` (the fleet's id),
`fleet_loop` (the loop's name) and `fleet_priority`. Fleet events (`fleet_pause`, `fleet_resume`) have
no run: their detail holds `fleet` and `loop`. `reviewer_capacity` events belong to the run held.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..timewindow import utcnow_iso
from .rows import insert, scrubbed, to_json

if TYPE_CHECKING:
    from .store import Ledger

LOOKUP_CHUNK = 500  # case ids per query when skipping finished cases: bounded memory for any number of cases


def save_fleet(ledger: Ledger, name: str, path: str, text: str) -> str:
    """The fleet's row for this file (one per path): created once, its YAML and name kept current."""
    with ledger.write() as conn:
        row = conn.execute("SELECT id FROM fleets WHERE path=? ORDER BY started_at LIMIT 1", (path,)).fetchone()
        if row is not None:
            conn.execute("UPDATE fleets SET name=?, yaml=? WHERE id=?", (*scrubbed([(name, text)])[0], row["id"]))
            return str(row["id"])
        fleet_id = uuid.uuid4().hex
        insert(conn, "fleets", [{"id": fleet_id, "name": name, "path": path, "yaml": text,
                                 "status": "running", "started_at": utcnow_iso()}])
        return fleet_id


def set_fleet_status(ledger: Ledger, fleet_id: str, status: str) -> None:
    with ledger.write() as conn:
        conn.execute("UPDATE fleets SET status=? WHERE id=?", (status, fleet_id))


def find_fleet(ledger: Ledger, ref: str | None = None, *, path: str | None = None) -> dict[str, Any] | None:
    """A fleet by file path, id prefix or name; the latest one when nothing is given."""
    if path is not None:
        return ledger.one("SELECT * FROM fleets WHERE path=? ORDER BY started_at LIMIT 1", (path,))
    if ref is None:
        return ledger.one("SELECT * FROM fleets ORDER BY started_at DESC LIMIT 1")
    return ledger.one("SELECT * FROM fleets WHERE id LIKE ? OR name=? ORDER BY started_at DESC LIMIT 1", (ref + "%", ref))


def loop_batch(ledger: Ledger, fleet_id: str, loop: str, spec_hash: str) -> dict[str, Any] | None:
    """The batch this loop's cases run in (the latest for this spec version), or None before its first run."""
    return ledger.one(
        "SELECT * FROM batches WHERE kind='fleet' AND json_extract(tags, '$.fleet')=? AND json_extract(tags, '$.fleet_loop')=? "
        "AND spec_hash=? ORDER BY started_at DESC LIMIT 1", (fleet_id, loop, spec_hash))


def fleet_batches(ledger: Ledger, fleet_id: str) -> list[dict[str, Any]]:
    """Every batch of the fleet, newest first, with its loop's name and priority from the tags."""
    rows = ledger.query("SELECT * FROM batches WHERE kind='fleet' AND json_extract(tags, '$.fleet')=? ORDER BY started_at DESC",
                        (fleet_id,))
    for r in rows:
        tags = json.loads(r.get("tags") or "{}")
        r["loop"], r["priority"] = tags.get("fleet_loop"), int(tags.get("fleet_priority") or 0)
    return rows


def runs_of_cases(ledger: Ledger, batch_id: str, case_ids: Iterable[str]) -> dict[tuple[str, int], dict[str, Any]]:
    """The runs of these cases in a batch, by (case_id, repeat): `id`, `status`, `stop_reason` (one query per chunk)."""
    ids = list(case_ids)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    if not ids or ledger.one("SELECT 1 AS x FROM runs WHERE batch_id=? LIMIT 1", (batch_id,)) is None:
        return found  # a batch's first run: nothing to skip
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start:start + LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        for r in ledger.query(f"SELECT id, case_id, repeat, status, stop_reason FROM runs WHERE batch_id=? AND case_id IN ({marks})",
                              (batch_id, *chunk)):
            found[(r["case_id"], r["repeat"])] = r
    return found


def spend(ledger: Ledger, batch_ids: list[str], *, since: str | None = None, until: str | None = None) -> float:
    """What these batches' calls cost, within [since, until) when given (ISO UTC)."""
    if not batch_ids:
        return 0.0
    marks = ",".join("?" * len(batch_ids))
    row = ledger.one(f"SELECT TOTAL(cost_usd) AS c FROM calls WHERE batch_id IN ({marks}) AND created_at >= ? AND created_at < ?",
                     (*batch_ids, since or "", until or "9999"))
    return float((row or {}).get("c") or 0.0)


def reviewer_minutes(ledger: Ledger, batch_ids: list[str], *, since: str, until: str, default: float) -> float:
    """Reviewer minutes these batches consumed in [since, until): each run parked for a person then (not held for
    capacity) at its hand-off's expected minutes (`default` where the spec said none)."""
    if not batch_ids:
        return 0.0
    marks = ",".join("?" * len(batch_ids))
    row = ledger.one(
        f"SELECT TOTAL(COALESCE(json_extract(e.detail, '$.minutes'), ?)) AS m FROM events e JOIN runs r ON r.id = e.run_id "
        f"WHERE r.batch_id IN ({marks}) AND e.kind = 'escalation' AND json_extract(e.detail, '$.human') IS NOT NULL "
        "AND e.created_at >= ? AND e.created_at < ? AND NOT EXISTS (SELECT 1 FROM events h WHERE h.run_id = e.run_id "
        "AND h.kind = 'reviewer_capacity')", (default, *batch_ids, since, until))
    released = ledger.one(  # held runs a later day's minutes took on
        f"SELECT TOTAL(json_extract(e.detail, '$.minutes')) AS m FROM events e JOIN runs r ON r.id = e.run_id "
        f"WHERE r.batch_id IN ({marks}) AND e.kind = 'reviewer_capacity' AND json_extract(e.detail, '$.released') = 1 "
        "AND e.created_at >= ? AND e.created_at < ?", (*batch_ids, since, until))
    return float((row or {}).get("m") or 0.0) + float((released or {}).get("m") or 0.0)


_HELD = ("r.status = 'needs_review' AND (SELECT json_extract(h.detail, '$.released') FROM events h WHERE h.run_id = r.id "
         "AND h.kind = 'reviewer_capacity' ORDER BY h.id DESC LIMIT 1) = 0")


def held_runs(ledger: Ledger, batch_ids: list[str]) -> list[dict[str, Any]]:
    """Runs held for reviewer capacity and still waiting, oldest first: `id`, `batch_id`, `message`, `minutes`."""
    if not batch_ids:
        return []
    marks = ",".join("?" * len(batch_ids))
    return ledger.query(
        f"SELECT r.id, r.batch_id, r.message, (SELECT json_extract(h.detail, '$.minutes') FROM events h WHERE h.run_id = r.id "
        f"AND h.kind = 'reviewer_capacity' ORDER BY h.id DESC LIMIT 1) AS minutes FROM runs r WHERE r.batch_id IN ({marks}) "
        f"AND {_HELD} ORDER BY r.started_at", tuple(batch_ids))


def release_held(ledger: Ledger, run_id: str, message: str | None, detail: dict[str, Any]) -> None:
    """A held run takes its minutes of today's reviewer capacity: a `reviewer_capacity` event with `released`, and
    its message no longer says it waits."""
    with ledger.write() as conn:
        insert(conn, "events", [{"run_id": run_id, "kind": "reviewer_capacity", "detail": to_json({**detail, "released": 1}),
                                 "created_at": utcnow_iso()}])
        conn.execute("UPDATE runs SET message=? WHERE id=?", (message, run_id))


def fleet_event(ledger: Ledger, fleet_id: str, kind: str, loop: str, detail: dict[str, Any]) -> None:
    """A `fleet_pause` or `fleet_resume` event: no run, the fleet and loop in its detail."""
    with ledger.write() as conn:
        insert(conn, "events", [{"run_id": None, "kind": kind, "detail": to_json({"fleet": fleet_id, "loop": loop, **detail}),
                                 "created_at": utcnow_iso()}])


def paused_loops(ledger: Ledger, fleet_id: str) -> dict[str, dict[str, Any]]:
    """Loops whose latest pause/resume event is a pause: {loop: the pause's detail (with `reason`, `created_at`)}."""
    rows = ledger.query(
        "SELECT kind, detail, created_at FROM events WHERE kind IN ('fleet_pause', 'fleet_resume') AND run_id IS NULL "
        "AND json_extract(detail, '$.fleet') = ? ORDER BY id", (fleet_id,))
    state: dict[str, dict[str, Any]] = {}
    for r in rows:
        detail = json.loads(r["detail"])
        if r["kind"] == "fleet_pause":
            state[detail.get("loop")] = {**detail, "created_at": r["created_at"]}
        else:
            state.pop(detail.get("loop"), None)
    return state


def loop_figures(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """One loop's batch in numbers: runs by status, successes, spend, reviews pending and held, first and last times."""
    row = ledger.one(
        "SELECT COUNT(*) AS runs, TOTAL(success) AS passed, SUM(status IN ('passed','failed','needs_review','error')) AS finished, "
        "SUM(status = 'needs_review') AS pending, MIN(started_at) AS first_at, MAX(ended_at) AS last_at FROM runs WHERE batch_id=?",
        (batch_id,)) or {}
    held = ledger.one(f"SELECT COUNT(*) AS n FROM runs r WHERE r.batch_id=? AND {_HELD}", (batch_id,)) or {}
    return {"runs": int(row.get("runs") or 0), "passed": int(row.get("passed") or 0), "finished": int(row.get("finished") or 0),
            "reviews_pending": int(row.get("pending") or 0), "reviews_held": int(held.get("n") or 0),
            "spent_usd": spend(ledger, [batch_id]), "first_at": row.get("first_at"), "last_at": row.get("last_at")}


def recent_outcomes(ledger: Ledger, batch_id: str) -> tuple[int, int, float]:
    """(finished runs, successes, their cost) of a loop's batch so far: the history a loop's recent runs are compared with."""
    row = ledger.one("SELECT COUNT(*) AS n, TOTAL(success) AS s, TOTAL(cost_usd) AS c FROM runs WHERE batch_id=? AND "
                     "status IN ('passed','failed','needs_review','error')", (batch_id,)) or {}
    return int(row.get("n") or 0), int(row.get("s") or 0), float(row.get("c") or 0.0)
