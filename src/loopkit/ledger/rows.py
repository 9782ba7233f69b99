"""How one step of a run becomes rows: the SQL both the ledger's own transactions and the batch writer
thread run, so a step is written the same way whichever path carries it.

Every text of every row passes through `redact.scrubber` here: this is the ledger's boundary for secrets.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..redact import scrubber

if TYPE_CHECKING:
    from ..records import CallRecord, EventRecord, IterationRecord, RunInfo, RunResult


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def scrubbed(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with every secret out of every text, whatever the column (one scrubber for them all)."""
    clean = scrubber()
    return [tuple(clean(v) if isinstance(v, str) else v for v in row) for row in rows]


def insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]], *, replace: bool = False) -> None:
    if not rows:
        return
    columns = list(rows[0])
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    sql = f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    conn.executemany(sql, scrubbed([tuple(r[c] for c in columns) for r in rows]))


@dataclass(frozen=True)
class Step:
    """One commit of a run, frozen when the engine hands it over: the run's state is serialised at once,
    because the engine keeps changing the live object while a writer thread may write it later."""

    result: RunResult
    iteration: IterationRecord | None
    calls: list[CallRecord]
    events: list[EventRecord]
    start: RunInfo | None
    state_json: str

    @classmethod
    def of(cls, result: RunResult, iteration: IterationRecord | None, calls: list[CallRecord], events: list[EventRecord],
           start: RunInfo | None) -> Step:
        return cls(result, iteration, list(calls), list(events), start, result.state.model_dump_json())


def _insert_run(conn: sqlite3.Connection, info: RunInfo) -> None:
    insert(conn, "runs", [{
        "id": info.id, "batch_id": info.batch_id, "spec_hash": info.spec_hash, "spec_name": info.spec_name,
        "variant": info.variant, "case_id": info.case_id, "case_json": to_json(info.case), "repeat": info.repeat,
        "status": "running", "started_at": info.started_at, "success": 0, "iterations": 0, "cost_usd": 0.0,
        "prompt_tokens": 0, "completion_tokens": 0,
    }])


def _insert_iteration(conn: sqlite3.Connection, run_id: str, it: IterationRecord) -> None:
    insert(conn, "iterations", [{
        "run_id": run_id, "n": it.n, "model": it.model, "output": it.output, "reward": it.reward, "passed": int(it.passed),
        "feedback": it.feedback, "cost_usd": it.cost_usd, "prompt_tokens": it.prompt_tokens,
        "completion_tokens": it.completion_tokens, "latency_ms": it.latency_ms, "created_at": it.created_at}], replace=True)
    conn.execute("DELETE FROM checks WHERE run_id=? AND iteration=?", (run_id, it.n))
    insert(conn, "checks", [{"run_id": run_id, "iteration": it.n, "checker": c.checker, "score": c.score, "passed": int(c.passed),
                             "feedback": c.feedback, "audit": int(c.audit), "weight": c.weight} for c in it.checks])


def write_step(conn: sqlite3.Connection, step: Step) -> None:
    """A run's step inside the caller's transaction. Money and tokens of the run come from its calls, in
    this same transaction: one truth, whatever the engine counted."""
    result, run_id = step.result, step.result.run_id
    if step.start is not None:
        _insert_run(conn, step.start)
        batch_id = step.start.batch_id
    else:
        row = conn.execute("SELECT batch_id FROM runs WHERE id=?", (run_id,)).fetchone()
        batch_id = row[0] if row else None
    if step.iteration is not None:
        _insert_iteration(conn, run_id, step.iteration)
    insert(conn, "calls", [{
        "id": c.id, "run_id": run_id, "batch_id": batch_id, "iteration": c.iteration, "role": c.role,
        "model": c.model, "api_base": c.api_base, "messages": to_json(c.messages), "response": c.response,
        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "cost_usd": c.cost_usd,
        "latency_ms": c.latency_ms, "cached": int(c.cached), "error": c.error, "cache_key": c.cache_key, "call_key": c.call_key,
        "created_at": c.created_at, "tool_calls": to_json(c.tool_calls) if c.tool_calls else None} for c in step.calls])
    insert(conn, "tool_calls", [{
        "run_id": run_id, "iteration": t.iteration, "step": t.step, "tool": t.tool, "arguments": t.arguments, "result": t.result,
        "error": t.error, "latency_ms": t.latency_ms, "call_id": t.call_id, "tool_call_id": t.tool_call_id,
        "created_at": t.created_at} for c in step.calls for t in c.tools_run])
    insert(conn, "events", [{"run_id": run_id, "kind": e.kind, "detail": to_json(e.detail), "created_at": e.created_at}
                            for e in step.events])
    conn.execute(
        "UPDATE runs SET status=?, stop_reason=?, success=?, reward=?, iterations=?, best_iteration=?, output=?, "
        "ended_at=?, message=?, suspect=COALESCE(?, suspect), state=?, cost_usd=t.cost, prompt_tokens=t.p, "
        "completion_tokens=t.c FROM (SELECT COALESCE(SUM(cost_usd), 0) AS cost, COALESCE(SUM(prompt_tokens), 0) AS p, "
        "COALESCE(SUM(completion_tokens), 0) AS c FROM calls WHERE run_id=?) AS t WHERE id=?",
        *scrubbed([(result.status, result.stop_reason, int(result.success), result.reward, result.iterations,
                    result.best_iteration, result.output, result.ended_at, result.message, result.suspect,
                    step.state_json, run_id, run_id)]))
    if step.calls and batch_id is not None:
        conn.execute("UPDATE batches SET cost_usd = COALESCE(cost_usd, 0) + ? WHERE id=?",
                     (sum(c.cost_usd for c in step.calls), batch_id))
