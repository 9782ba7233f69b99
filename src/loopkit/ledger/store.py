"""The ledger: every spec, batch, run, iteration, check, call and event, in one SQLite file.

The only module (with its siblings in this package) that speaks SQL. Writes are one short
`BEGIN IMMEDIATE` transaction per finished iteration, so a killed process loses at most the
iteration in flight and several processes can share one file (WAL, busy timeout).

It is also the boundary for secrets: every row any write puts in passes through `rows.scrubbed`, so no
caller has to remember to.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
import contextlib
import dataclasses
import uuid
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LedgerError, UsageError
from ..timewindow import utcnow_iso
from .rows import ORIGINAL_COST, Step, insert, scrubbed, to_json, write_step

if TYPE_CHECKING:  # the query commands must start fast: engine/models/sqlite_utils load only where used
    from sqlite_utils import Database

    from ..records import CallRecord, EventRecord, IterationRecord, RunInfo, RunResult, RunState
    from ..models import Completion
    from .writer import Writer

DEFAULT_PATH = Path(".loopkit") / "ledger.db"
BUSY_TIMEOUT_SECONDS = 60


def ledger_path(option: str | Path | None) -> Path:
    """`--ledger`, else $LOOPKIT_LEDGER, else .loopkit/ledger.db here."""
    return Path(option or os.environ.get("LOOPKIT_LEDGER") or DEFAULT_PATH)


def _storage_error(path: Path, exc: BaseException) -> LedgerError:
    text = str(exc)
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        why = "the location is read-only"
    elif "disk is full" in text or "No space" in text:
        why = "the disk is full"
    else:
        why = text
    return LedgerError(f"cannot write the ledger: {why}; pass --ledger PATH or set $LOOPKIT_LEDGER to a writable file",
                       location=str(path))


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` transaction on `conn`; LedgerError when the disk or location refuses it."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise _storage_error(path, exc) from None
        conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, (sqlite3.OperationalError, OSError)):
            raise _storage_error(path, exc) from None
        raise


def _host() -> str:
    """This machine's name, for a batch's row (socket is imported here: query commands never need it)."""
    import socket

    return socket.gethostname()


class Ledger:
    """A ledger file. Also the engine's `Recorder` and `CallCache`."""

    def __init__(self, path: str | Path | None = None, *, readonly: bool = False) -> None:
        """Open the ledger; for writes, create or migrate it and make sure it takes a write. What the
        file is (ours, empty, newer, someone else's) is decided in connect.py, before any write."""
        from .connect import open_ledger

        self.path = ledger_path(path)
        try:
            conn = open_ledger(self.path, readonly=readonly, timeout=BUSY_TIMEOUT_SECONDS)
        except LedgerError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _storage_error(self.path, exc) from None
        conn.row_factory = sqlite3.Row
        self.conn = conn

    @cached_property
    def db(self) -> Database:
        """The same connection through sqlite-utils (migrations, table introspection)."""
        from sqlite_utils import Database

        return Database(self.conn, execute_plugins=False)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One immediate transaction; raises LedgerError when the disk or location refuses it."""
        return immediate(self.conn, self.path)

    def writer(self) -> Writer:
        """A writer thread for a batch's steps (see writer.py); close it to have them all written."""
        from .writer import Writer

        return Writer(self)

    # --- specs and batches ---------------------------------------------------------------

    def save_spec(self, spec_hash: str, name: str, path: str | None, text: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO specs (hash, name, path, yaml, created_at) VALUES (?, ?, ?, ?, ?)",
                         *scrubbed([(spec_hash, name, path, text, utcnow_iso())]))

    def start_batch(self, kind: str, spec_hash: str, *, argv: list[str], tags: dict[str, str], options: dict[str, Any],
                    spec_hash_b: str | None = None, inputs: str | None = None) -> str:
        batch_id = uuid.uuid4().hex
        with self.write() as conn:
            insert(conn, "batches", [{
                "id": batch_id, "kind": kind, "spec_hash": spec_hash, "spec_hash_b": spec_hash_b, "status": "running",
                "started_at": utcnow_iso(), "ended_at": None, "cost_usd": 0.0, "argv": to_json(argv),
                "tags": to_json(tags), "options": to_json(options), "pid": os.getpid(), "host": _host(), "inputs": inputs,
            }])
        return batch_id

    def claim_batch(self, batch_id: str) -> None:
        """Mark a batch running under this process, atomically: of two `resume`s at once, one wins and the
        other is told the batch is running. A batch marked running whose process is gone may be claimed."""
        from ..liveness import is_stale

        with self.write() as conn:
            row = conn.execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
            if row is None:
                raise UsageError(f"no batch {batch_id}")
            if row["status"] == "running" and not is_stale(dict(row)):
                raise UsageError(f"batch {batch_id[:10]} is still running in another process (pid {row['pid']}); "
                                 "wait for it, or stop it first")
            conn.execute("UPDATE batches SET status='running', ended_at=NULL, pid=?, host=? WHERE id=?",
                         (os.getpid(), _host(), batch_id))

    def finish_batch(self, batch_id: str, status: str, *, cost_usd: float | None = None) -> None:
        """Close a batch; its cost is what its calls cost unless given (a `resume` row's share)."""
        with self.write() as conn:
            if cost_usd is None:
                conn.execute(
                    "UPDATE batches SET status=?, ended_at=?, cost_usd=(SELECT COALESCE(SUM(cost_usd), 0) FROM calls WHERE "
                    "batch_id=?) WHERE id=?", (status, utcnow_iso(), batch_id, batch_id))
            else:
                conn.execute("UPDATE batches SET status=?, ended_at=?, cost_usd=? WHERE id=?", (status, utcnow_iso(), cost_usd, batch_id))

    # --- the engine's Recorder -------------------------------------------------------------

    def commit(self, result: RunResult, iteration: IterationRecord | None, calls: list[CallRecord], events: list[EventRecord],
               *, start: RunInfo | None = None) -> None:
        with self.write() as conn:
            write_step(conn, Step.of(result, iteration, calls, events, start))

    def add_event(self, run_id: str, kind: str, detail: dict[str, Any]) -> None:
        with self.write() as conn:
            insert(conn, "events", [{"run_id": run_id, "kind": kind, "detail": to_json(detail), "created_at": utcnow_iso()}])

    def set_run_status(self, run_id: str, status: str, stop_reason: str, *, success: bool) -> None:
        with self.write() as conn:
            conn.execute("UPDATE runs SET status=?, stop_reason=?, success=?, ended_at=? WHERE id=?",
                         (status, stop_reason, int(success), utcnow_iso(), run_id))

    # --- the engine's CallCache ---------------------------------------------------------------

    def lookup(self, key: str, *, replay_batch: str | None = None, variant_of: tuple[str, str] | None = None) -> Completion | None:
        """A recorded answer to this call (see cache.py): from any cacheable call; from one batch's calls
        (a replay, by call key); never from the other variant of an A/B batch (`variant_of`)."""
        if replay_batch is not None:
            sql = ("SELECT c.response, c.prompt_tokens, c.completion_tokens, c.cost_usd, c.tool_calls FROM calls c WHERE c.call_key=? "
                   "AND c.batch_id=? AND c.error IS NULL AND c.response IS NOT NULL")
            args: list[Any] = [key, replay_batch]
        elif variant_of is not None:
            sql = ("SELECT c.response, c.prompt_tokens, c.completion_tokens, c.cost_usd, c.tool_calls FROM calls c LEFT JOIN runs r ON r.id = c.run_id "
                   "WHERE c.cache_key=? AND c.error IS NULL AND c.response IS NOT NULL AND (c.batch_id IS NOT ? OR r.variant = ?)")
            args = [key, *variant_of]
        else:
            sql = ("SELECT c.response, c.prompt_tokens, c.completion_tokens, c.cost_usd, c.tool_calls FROM calls c WHERE c.cache_key=? "
                   "AND c.error IS NULL AND c.response IS NOT NULL")
            args = [key]
        row = self.conn.execute(sql + " ORDER BY c.created_at LIMIT 1", args).fetchone()
        if row is None:
            return None
        from ..models import Completion

        return Completion(row["response"], row["prompt_tokens"], row["completion_tokens"], 0.0, 0.0, cached=True,
                          recorded_cost_usd=row["cost_usd"] or 0.0,
                          tool_calls=json.loads(row["tool_calls"]) if row["tool_calls"] else None)

    def answerable_keys(self, spec_name: str, *, limit: int) -> list[str] | None:
        """The cache keys of a spec's calls that `lookup` could answer from, or None when there are more than `limit`."""
        keys = [row[0] for row in self.tuples(
            "SELECT c.cache_key FROM runs r JOIN calls c ON c.run_id = r.id WHERE r.spec_name = ? AND c.cache_key IS NOT NULL "
            "AND c.error IS NULL AND c.response IS NOT NULL LIMIT ?", (spec_name, limit + 1))]
        return None if len(keys) > limit else keys

    def batches_running_or_since(self, since: str, *, besides: str) -> list[dict[str, Any]]:
        """Batches other than `besides` marked running, or started at or after `since` (their process may be gone)."""
        return self.query("SELECT id, status, started_at, pid, host FROM batches WHERE id != ? AND (status = 'running' "
                          "OR started_at >= ?)", (besides, since))

    # --- reads -------------------------------------------------------------------------------

    def query(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self._reading():
            cursor = self.conn.execute(sql, args)
            if cursor.description is None:  # a statement that returns no rows
                return []
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]  # a third cheaper than dict(sqlite3.Row)

    def tuples(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """`query` without the dicts, for many small rows read by position."""
        with self._reading():
            cursor = self.conn.cursor()
            cursor.row_factory = None  # plain tuples: the connection's sqlite3.Row is built for name access
            return cursor.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> dict[str, Any] | None:
        with self._reading():
            row = self.conn.execute(sql, args).fetchone()
        return dict(row) if row else None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Damage that opening the file could not see (a page deep in it) is one line and exit 2, not a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise LedgerError(f"cannot read the ledger: {exc}; check it with `sqlite3 {self.path} 'PRAGMA integrity_check'`",
                              location=str(self.path)) from None

    def resolve(self, prefix: str) -> tuple[str, str]:
        """('run' | 'batch', full id) for a unique ID prefix, like git."""
        if not prefix or not all(ch in "0123456789abcdef" for ch in prefix.lower()):
            raise UsageError(f"{prefix!r} is not a run or batch ID (hex, or a unique prefix of one)")
        # A range on the primary key, not LIKE 'p%' (which scans): IDs are lowercase hex, and 'g' sorts after every hex digit.
        low = prefix.lower()
        span = (low, low + "g")
        found = [("run", r["id"]) for r in self.query("SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 2", span)]
        found += [("batch", r["id"]) for r in self.query("SELECT id FROM batches WHERE id >= ? AND id < ? LIMIT 2", span)]
        if not found:
            raise UsageError(f"no run or batch with ID {prefix!r}")
        if len(found) > 1:
            raise UsageError(f"ID prefix {prefix!r} is ambiguous: {', '.join(i for _, i in found)}; give more characters")
        return found[0]

    def run(self, run_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM runs WHERE id=?", (run_id,))

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM batches WHERE id=?", (batch_id,))

    def spec_text(self, spec_hash: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM specs WHERE hash=?", (spec_hash,))

    def run_state(self, run_id: str) -> RunState | None:
        from ..records import RunState

        row = self.one("SELECT state FROM runs WHERE id=?", (run_id,))
        return RunState.from_json(row["state"]) if row and row["state"] else None

    def continuation(self, run_id: str) -> RunState:
        """Where a run left off, for resume and review: its saved state (or a fresh one if it never finished
        an iteration), with what it has spent taken from its calls, so paid calls count against its caps."""
        from ..records import RunState

        state = self.run_state(run_id) or RunState()
        spent = self.one("SELECT COALESCE(SUM(cost_usd), 0) AS cost, COALESCE(SUM(prompt_tokens), 0) AS p, "
                         "COALESCE(SUM(completion_tokens), 0) AS c FROM calls WHERE run_id=?", (run_id,)) or {}
        return dataclasses.replace(state, cost_usd=float(spent.get("cost") or 0.0), prompt_tokens=int(spent.get("p") or 0),
                                   completion_tokens=int(spent.get("c") or 0))

    def run_detail(self, run_id: str) -> dict[str, Any]:
        """A run with its iterations (each with checks), events and calls."""
        run = self.run(run_id)
        if run is None:
            raise UsageError(f"no run {run_id}")
        run.pop("state", None)
        run["case"] = json.loads(run.pop("case_json") or "{}")
        iterations = self.query("SELECT * FROM iterations WHERE run_id=? ORDER BY n", (run_id,))
        checks = self.query("SELECT * FROM checks WHERE run_id=? ORDER BY iteration, rowid", (run_id,))
        for it in iterations:
            it["checks"] = [c for c in checks if c["iteration"] == it["n"]]
        run["iterations"] = iterations
        run["events"] = [{**e, "detail": json.loads(e["detail"])} for e in
                         self.query("SELECT kind, detail, created_at FROM events WHERE run_id=? ORDER BY id", (run_id,))]
        run["calls"] = [{**c, "messages": json.loads(c["messages"] or "[]"),
                         **({"tool_calls": json.loads(c["tool_calls"])} if c.get("tool_calls") else {})} for c in
                        self.query("SELECT * FROM calls WHERE run_id=? ORDER BY created_at, rowid", (run_id,))]
        run["tool_calls"] = self._tool_calls(run_id)
        return run

    @cached_property
    def saved_by_call(self) -> str:
        """SQL for what call `c` saved: its `saved_usd` (priced when it was recorded), or, in a ledger read as it
        was left by a loopkit before m011, its original's cost looked up per cached call as m011 does once."""
        if self.one("SELECT 1 AS found FROM pragma_table_info('calls') WHERE name = 'saved_usd'") is not None:
            return "c.saved_usd"
        return f"(CASE WHEN c.cached = 1 THEN {ORIGINAL_COST.format(key='c.cache_key')} END)"

    def _tool_calls(self, run_id: str) -> list[dict[str, Any]]:
        """A run's tool calls in the order they ran (none in a ledger from before tools, read without migrating)."""
        if self.one("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'tool_calls'") is None:
            return []
        found = self.query("SELECT iteration, step, tool, arguments, result, error, latency_ms, call_id, tool_call_id, created_at "
                           "FROM tool_calls WHERE run_id=? ORDER BY id", (run_id,))
        for t in found:
            with contextlib.suppress(ValueError, TypeError):
                t["arguments"] = json.loads(t["arguments"])
        return found
