"""How steps of runs become rows: the SQL both the ledger's own transactions and the batch writer
thread run, so a step is written the same way whichever path carries it.

Every text of every row passes through `redact.scrubber` here: this is the ledger's boundary for secrets.
The only texts spared are those loopkit makes itself (`GENERATED`: ids, hashes, timestamps, statuses),
which cannot hold a key and which a scrub could only corrupt (an id that happened to contain a short
secret's value).

A group of steps is written table by table, one `executemany` each, and a run's row is rewritten once
per group (with its latest state), not once per step: the rows and totals at commit are those that
writing the steps one by one leaves.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..redact import safe_text, scrubber

if TYPE_CHECKING:
    from ..records import CallRecord, EventRecord, IterationRecord, RunInfo, RunResult

# Columns only loopkit fills (uuid hex ids, sha256 keys, its own timestamps and enum values).
GENERATED = frozenset({"id", "run_id", "batch_id", "call_id", "spec_hash", "hash", "created_at", "started_at", "ended_at",
                       "status", "stop_reason", "cache_key", "call_key", "role", "kind"})

_RUN_COLUMNS = ("id", "batch_id", "spec_hash", "spec_name", "variant", "case_id", "case_json", "repeat", "status",
                "started_at", "success", "iterations", "cost_usd", "prompt_tokens", "completion_tokens")
_ITERATION_COLUMNS = ("run_id", "n", "model", "output", "reward", "passed", "feedback", "cost_usd", "prompt_tokens",
                      "completion_tokens", "latency_ms", "created_at")
_CHECK_COLUMNS = ("run_id", "iteration", "checker", "score", "passed", "feedback", "audit", "weight")
_CALL_COLUMNS = ("id", "run_id", "batch_id", "iteration", "role", "model", "api_base", "messages", "response",
                 "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "cached", "error", "cache_key", "call_key",
                 "created_at", "tool_calls")
_TOOL_CALL_COLUMNS = ("run_id", "iteration", "step", "tool", "arguments", "result", "error", "latency_ms", "call_id",
                      "tool_call_id", "created_at")
_EVENT_COLUMNS = ("run_id", "kind", "detail", "created_at")
_RUN_UPDATE_COLUMNS = ("status", "stop_reason", "success", "reward", "iterations", "best_iteration", "output", "ended_at",
                       "message", "suspect", "state", "run_id", "run_id")
_RUN_UPDATE = (
    "UPDATE runs SET status=?, stop_reason=?, success=?, reward=?, iterations=?, best_iteration=?, output=?, "
    "ended_at=?, message=?, suspect=COALESCE(?, suspect), state=?, cost_usd=t.cost, prompt_tokens=t.p, "
    "completion_tokens=t.c FROM (SELECT COALESCE(SUM(cost_usd), 0) AS cost, COALESCE(SUM(prompt_tokens), 0) AS p, "
    "COALESCE(SUM(completion_tokens), 0) AS c FROM calls WHERE run_id=?) AS t WHERE id=?")

# What a cached call saved: the cost of the original uncached call with its key (the dearest, should the key
# have been paid more than once). Written on the cached call's row here (`saved_usd`, m011), so `cost` and
# `show` sum a column.
ORIGINAL_COST = "(SELECT MAX(o.cost_usd) FROM calls o WHERE o.cache_key = {key} AND o.cached = 0)"
_PRICE_CACHED = f"UPDATE calls SET saved_usd = {ORIGINAL_COST.format(key='?')} WHERE id = ?"


to_json = json.JSONEncoder(ensure_ascii=False, default=str).encode  # one encoder for every row, not one per value


# Columns that only ever hold numbers (counts, money, scores, flags): nothing to scrub in them.
NUMERIC = frozenset({"repeat", "success", "iterations", "best_iteration", "cost_usd", "prompt_tokens", "completion_tokens", "n",
                     "reward", "passed", "latency_ms", "iteration", "score", "audit", "weight", "cached", "step"})


def scrubbed(rows: Iterable[Sequence[Any]], columns: Sequence[str] | None = None, *,
             memo: dict[str, Any] | None = None) -> list[Sequence[Any]]:
    """Rows with every secret out of every text (one scrubber for them all) and every text writable (a lone
    surrogate escaped: a tool's result, say, would otherwise fail the whole group's commit); with `columns`
    named, the `GENERATED` and `NUMERIC` ones are left as they are, and a text repeated across the rows (a
    reply is also the iteration's output and the run's) is cleaned once (across calls, when they share `memo`)."""
    scrub = scrubber()

    def clean(text: str) -> str:
        return safe_text(scrub(text) or "")

    if columns is None:
        return [tuple(clean(v) if isinstance(v, str) else v for v in row) for row in rows]
    texts = [i for i, c in enumerate(columns) if c not in GENERATED and c not in NUMERIC]
    done: dict[str, Any] = {} if memo is None else memo
    out = []
    for row in rows:
        row = list(row)
        for i in texts:
            v = row[i]
            if isinstance(v, str):
                cleaned = done.get(v)
                if cleaned is None:
                    cleaned = done[v] = clean(v)
                row[i] = cleaned
        out.append(row)
    return out


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], replace: bool) -> str:
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]], *, replace: bool = False) -> None:
    if not rows:
        return
    columns = tuple(rows[0])
    insert_tuples(conn, table, columns, [tuple(r[c] for c in columns) for r in rows], replace=replace)


def insert_tuples(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], *,
                  replace: bool = False, memo: dict[str, Any] | None = None) -> None:
    """`rows` (values in `columns` order) scrubbed and inserted with one statement."""
    if rows:
        conn.executemany(_insert_sql(table, columns, replace), scrubbed(rows, columns, memo=memo))


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
        return cls(result, iteration, list(calls), list(events), start, result.state.to_json())


def write_step(conn: sqlite3.Connection, step: Step) -> None:
    """A run's step inside the caller's transaction."""
    write_steps(conn, [step])


def write_steps(conn: sqlite3.Connection, steps: Sequence[Step]) -> None:
    """Steps, in the order handed over, inside the caller's transaction. Money and tokens of each run come
    from its calls, in this same transaction: one truth, whatever the engine counted."""
    batch_of: dict[str, str | None] = {}
    runs: list[tuple[Any, ...]] = []
    iterations: list[tuple[Any, ...]] = []
    checks: dict[tuple[str, int], list[tuple[Any, ...]]] = {}  # the latest step's checks of an iteration replace others
    calls: list[tuple[Any, ...]] = []
    tools: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    cached: list[tuple[str | None, str]] = []  # (cache key, call id) of the cached calls, priced after the insert
    updates: dict[str, list[Any]] = {}  # a run's row is rewritten once, from its latest step
    batch_cost: dict[str, float] = {}
    for step in steps:
        result, run_id = step.result, step.result.run_id
        info = step.start
        if info is not None:
            batch_of[run_id] = info.batch_id
            runs.append((info.id, info.batch_id, info.spec_hash, info.spec_name, info.variant, info.case_id, to_json(info.case),
                         info.repeat, "running", info.started_at, 0, 0, 0.0, 0, 0))
        elif run_id not in batch_of:
            row = conn.execute("SELECT batch_id FROM runs WHERE id=?", (run_id,)).fetchone()
            batch_of[run_id] = row[0] if row else None
        batch_id = batch_of[run_id]
        it = step.iteration
        if it is not None:
            iterations.append((run_id, it.n, it.model, it.output, it.reward, int(it.passed), it.feedback, it.cost_usd,
                               it.prompt_tokens, it.completion_tokens, it.latency_ms, it.created_at))
            checks[(run_id, it.n)] = [(run_id, it.n, c.checker, c.score, int(c.passed), c.feedback, int(c.audit), c.weight)
                                      for c in it.checks]
        for c in step.calls:
            calls.append((c.id, run_id, batch_id, c.iteration, c.role, c.model, c.api_base, to_json(c.messages), c.response,
                          c.prompt_tokens, c.completion_tokens, c.cost_usd, c.latency_ms, int(c.cached), c.error, c.cache_key,
                          c.call_key, c.created_at, to_json(c.tool_calls) if c.tool_calls else None))
            if c.cached:
                cached.append((c.cache_key, c.id))
            tools.extend((run_id, t.iteration, t.step, t.tool, t.arguments, t.result, t.error, t.latency_ms, t.call_id,
                          t.tool_call_id, t.created_at) for t in c.tools_run)
        events.extend((run_id, e.kind, to_json(e.detail), e.created_at) for e in step.events)
        earlier = updates.pop(run_id, None)
        suspect = result.suspect if result.suspect is not None or earlier is None else earlier[9]  # COALESCE, step by step
        updates[run_id] = [result.status, result.stop_reason, int(result.success), result.reward, result.iterations,
                           result.best_iteration, result.output, result.ended_at, result.message, suspect, step.state_json,
                           run_id, run_id]
        if step.calls and batch_id is not None:
            batch_cost[batch_id] = batch_cost.get(batch_id, 0.0) + sum(c.cost_usd for c in step.calls)
    memo: dict[str, Any] = {}  # texts already scrubbed in this group
    insert_tuples(conn, "runs", _RUN_COLUMNS, runs, memo=memo)
    insert_tuples(conn, "iterations", _ITERATION_COLUMNS, iterations, replace=True, memo=memo)
    if checks:
        conn.executemany("DELETE FROM checks WHERE run_id=? AND iteration=?", list(checks))
        insert_tuples(conn, "checks", _CHECK_COLUMNS, [row for rows in checks.values() for row in rows], memo=memo)
    insert_tuples(conn, "calls", _CALL_COLUMNS, calls, memo=memo)
    if cached:  # after the insert, so an original written in this same group prices its copies
        conn.executemany(_PRICE_CACHED, cached)
    insert_tuples(conn, "tool_calls", _TOOL_CALL_COLUMNS, tools, memo=memo)
    insert_tuples(conn, "events", _EVENT_COLUMNS, events, memo=memo)
    conn.executemany(_RUN_UPDATE, scrubbed(updates.values(), _RUN_UPDATE_COLUMNS, memo=memo))
    if batch_cost:
        conn.executemany("UPDATE batches SET cost_usd = COALESCE(cost_usd, 0) + ? WHERE id=?",
                         [(cost, batch_id) for batch_id, cost in batch_cost.items()])
