"""The ledger's tables (SPEC.md §4), created by named, append-only migrations.

Never edit a migration that has shipped: add a new one. sqlite-utils records applied ones in
`_sqlite_migrations` under the set name `loopkit`; those names are also how a ledger says which
loopkit wrote it (a name missing from `NAMES` is a newer loopkit's, see connect.py). sqlite-utils
is imported only when a migration is applied, so the read commands never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

SET = "loopkit"

_steps: list[Callable[[Database], None]] = []


def _migration(step: Callable[[Database], None]) -> Callable[[Database], None]:
    _steps.append(step)
    return step


@_migration
def m001_initial(db: Database) -> None:
    db["specs"].create({"hash": str, "name": str, "path": str, "yaml": str, "created_at": str}, pk="hash")
    db["batches"].create(
        {"id": str, "kind": str, "spec_hash": str, "spec_hash_b": str, "status": str, "started_at": str, "ended_at": str,
         "cost_usd": float, "argv": str, "tags": str, "options": str, "pid": int, "host": str, "inputs": str},
        pk="id",
    )
    db["runs"].create(
        {"id": str, "batch_id": str, "spec_hash": str, "spec_name": str, "variant": str, "case_id": str, "case_json": str,
         "repeat": int, "status": str, "stop_reason": str, "success": int, "reward": float, "iterations": int,
         "best_iteration": int, "output": str, "cost_usd": float, "prompt_tokens": int, "completion_tokens": int,
         "started_at": str, "ended_at": str, "message": str, "suspect": str, "state": str},
        pk="id",
    )
    db["iterations"].create(
        {"run_id": str, "n": int, "model": str, "output": str, "reward": float, "passed": int, "feedback": str,
         "cost_usd": float, "prompt_tokens": int, "completion_tokens": int, "latency_ms": float, "created_at": str},
        pk=("run_id", "n"),
    )
    db["checks"].create(
        {"run_id": str, "iteration": int, "checker": str, "score": float, "passed": int, "feedback": str, "audit": int,
         "weight": float},
    )
    db["calls"].create(
        {"id": str, "run_id": str, "batch_id": str, "iteration": int, "role": str, "model": str, "api_base": str,
         "messages": str, "response": str, "prompt_tokens": int, "completion_tokens": int, "cost_usd": float,
         "latency_ms": float, "cached": int, "error": str, "cache_key": str, "created_at": str},
        pk="id",
    )
    db["events"].create({"id": int, "run_id": str, "kind": str, "detail": str, "created_at": str}, pk="id")
    db["runs"].create_index(["batch_id"])
    db["runs"].create_index(["spec_name", "started_at"])
    db["runs"].create_index(["started_at"])
    db["runs"].create_index(["status"])
    db["iterations"].create_index(["run_id"])
    db["checks"].create_index(["run_id", "iteration"])
    db["calls"].create_index(["created_at"])
    db["calls"].create_index(["run_id"])
    db["calls"].create_index(["cache_key"])
    db["calls"].create_index(["batch_id"])
    db["events"].create_index(["run_id"])
    db["batches"].create_index(["started_at"])


@_migration
def m002_query_indexes(db: Database) -> None:
    """Indexes for the read side (`runs`, `cost`): each answer is one index range, not a scan and a sort."""
    # `runs --status S`, newest first.
    db.execute("CREATE INDEX IF NOT EXISTS idx_runs_status_started_at ON runs (status, started_at)")
    # `runs --suspect`: few rows, so a partial index.
    db.execute("CREATE INDEX IF NOT EXISTS idx_runs_suspect_started_at ON runs (started_at) WHERE suspect IS NOT NULL")
    # `cost`: what cached calls saved is a second pass over the window's cached calls only.
    db.execute("CREATE INDEX IF NOT EXISTS idx_calls_cached_created_at ON calls (created_at) WHERE cached = 1")


@_migration
def m003_call_key(db: Database) -> None:
    """`--no-cache` calls must not answer later runs, but `--replay` still needs to find them: every
    call gets a `call_key`; `cache_key` is kept only where the call may be reused."""
    db["calls"].add_column("call_key", str)
    db.execute("UPDATE calls SET call_key = cache_key")
    db.execute("CREATE INDEX IF NOT EXISTS idx_calls_batch_call_key ON calls (batch_id, call_key)")


@_migration
def m004_drop_probe(db: Database) -> None:
    """Writability used to be probed by writing to a `_probe` table in every ledger; it no longer is
    (connect.py), so the table goes."""
    db.execute("DROP TABLE IF EXISTS _probe")


@_migration
def m005_tool_calls(db: Database) -> None:
    """Tools (SPEC.md §5): every tool call the worker model made is a row, and a model call's reply keeps
    the tool calls it asked for (`calls.tool_calls`, JSON), so the cache and `--replay` can answer with them."""
    db["calls"].add_column("tool_calls", str)
    db["tool_calls"].create(
        {"id": int, "run_id": str, "iteration": int, "step": int, "tool": str, "arguments": str, "result": str,
         "error": str, "latency_ms": float, "call_id": str, "tool_call_id": str, "created_at": str},
        pk="id",
    )
    db["tool_calls"].create_index(["run_id", "iteration"])


@_migration
def m006_human_time(db: Database) -> None:
    """A person's time (SPEC.md §6): each review's minutes, and their price when a rate is set, as rows of
    their own (`kind` human), never mixed into `calls` (model spend)."""
    db["human_time"].create(
        {"id": int, "run_id": str, "batch_id": str, "kind": str, "minutes": float, "usd_per_hour": float, "usd": float,
         "estimated": int, "decision": str, "reviewer": str, "created_at": str},
        pk="id",
    )
    db["human_time"].create_index(["run_id"])
    db["human_time"].create_index(["batch_id"])
    db["human_time"].create_index(["created_at"])


@_migration
def m007_fleets(db: Database) -> None:
    """Fleets (SPEC.md §9): one row per fleet file; its loops' batches carry its id in their tags, and its
    pause/resume/reviewer-capacity events are found by kind."""
    db["fleets"].create({"id": str, "name": str, "path": str, "yaml": str, "status": str, "started_at": str}, pk="id")
    db["fleets"].create_index(["path"])
    db.execute("CREATE INDEX IF NOT EXISTS idx_events_kind ON events (kind)")


@_migration
def m008_runs_batch_case(db: Database) -> None:
    """A rerun of a fleet looks its cases up in a loop's batch a chunk at a time: one index range per case,
    not a scan of the batch per chunk (a million-case loop would read its batch thousands of times)."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_runs_batch_case ON runs (batch_id, case_id)")


@_migration
def m009_calls_cache_key_cost(db: Database) -> None:
    """What a cached call saved is the cost of the original call with its cache key (`show`, `cost`): the
    cache-key index now also holds `cached` and `cost_usd`, so that price is read from the index alone
    instead of a row per cached call (half of `show BATCH`'s SQL on a 1M-call ledger). It replaces the
    index on `cache_key` alone, which it serves as well (the cache's lookups), so a call costs no extra index."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_calls_cache_key_cost ON calls (cache_key, cached, cost_usd)")
    db.execute("DROP INDEX IF EXISTS idx_calls_cache_key")


@_migration
def m010_calls_created_at_cost(db: Database) -> None:
    """`loopkit cost` sums a window's calls by model and role: the time index now holds every column that sum
    reads, so the window is read from the index alone instead of from each call's row, where those columns
    sit behind the call's messages and response (the raw SQL took 0.26 s for a week of a 1M-call ledger, the
    index alone 0.1 s). It replaces the index on `created_at` alone, so a call still costs no extra index."""
    db.execute("CREATE INDEX IF NOT EXISTS idx_calls_created_cost ON calls "
               "(created_at, model, role, cost_usd, prompt_tokens, completion_tokens, cached, error)")
    db.execute("DROP INDEX IF EXISTS idx_calls_created_at")



@_migration
def m011_calls_saved_usd(db: Database) -> None:
    """What a cached call saved (the cost of the original uncached call with its cache key, the most expensive
    one should the key have been paid more than once) is written on the cached call's row when it is recorded,
    and the calls' time index holds it: `cost` then sums a window's savings in its one pass over the index
    instead of pricing each cached call through the cache-key index (half of `cost`'s SQL on a 1M-call
    ledger). Cached calls already in the ledger are priced here, once; their partial time index goes."""
    db["calls"].add_column("saved_usd", float)
    db.execute("UPDATE calls SET saved_usd = (SELECT MAX(o.cost_usd) FROM calls o WHERE o.cache_key = calls.cache_key "
               "AND o.cached = 0) WHERE cached = 1")
    db.execute("CREATE INDEX IF NOT EXISTS idx_calls_created_saved ON calls "
               "(created_at, model, role, cost_usd, prompt_tokens, completion_tokens, cached, error, saved_usd)")
    db.execute("DROP INDEX IF EXISTS idx_calls_created_cost")
    db.execute("DROP INDEX IF EXISTS idx_calls_cached_created_at")

NAMES: tuple[str, ...] = tuple(step.__name__ for step in _steps)


def migrations() -> Migrations:
    """The steps as sqlite-utils `Migrations`, applied in order, each recorded once."""
    from sqlite_utils.migrations import Migrations

    found = Migrations(SET)
    for step in _steps:
        found()(step)
    return found
