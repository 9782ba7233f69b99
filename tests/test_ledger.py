"""The ledger: schema by migrations, one transaction per iteration, shared safely between processes."""

from __future__ import annotations

import sqlite3

import pytest

from loopkit.errors import LedgerError, UsageError
from loopkit.ledger import Ledger, ledger_path
from loopkit.ledger.schema import migrations

SPEC_TABLES = {
    "specs": {"hash", "name", "path", "yaml", "created_at"},
    "batches": {"id", "kind", "spec_hash", "status", "started_at", "ended_at", "cost_usd", "argv", "tags"},
    "runs": {"id", "batch_id", "spec_hash", "spec_name", "variant", "case_id", "case_json", "status", "stop_reason", "success",
             "reward", "iterations", "best_iteration", "output", "cost_usd", "prompt_tokens", "completion_tokens", "started_at",
             "ended_at"},
    "iterations": {"run_id", "n", "model", "output", "reward", "passed", "feedback", "cost_usd"},
    "checks": {"run_id", "iteration", "checker", "score", "passed", "feedback", "audit"},
    "calls": {"id", "run_id", "iteration", "role", "model", "messages", "response", "prompt_tokens", "completion_tokens",
              "cost_usd", "latency_ms", "cached", "error", "created_at"},
    "events": {"run_id", "kind", "detail", "created_at"},
}


def test_the_tables_of_the_contract_exist_with_at_least_their_columns(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    for table, columns in SPEC_TABLES.items():
        assert columns <= set(ledger.db[table].columns_dict), table


def test_migrations_are_recorded_and_applied_once(tmp_path):
    Ledger(tmp_path / "l.db").close()
    ledger = Ledger(tmp_path / "l.db")
    applied = [m.name for m in migrations.applied(ledger.db)]
    assert applied == [m.name for m in migrations._migrations]
    assert migrations.pending(ledger.db) == []


def test_wal_mode_and_indexes_for_the_common_queries(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plan = " ".join(str(r[3]) for r in ledger.conn.execute(
        "EXPLAIN QUERY PLAN SELECT SUM(cost_usd) FROM calls WHERE created_at >= '2026'"))
    assert "idx_calls_created_at" in plan


def test_the_path_comes_from_the_option_then_the_environment_then_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOPKIT_LEDGER", str(tmp_path / "env.db"))
    assert ledger_path("x.db").name == "x.db"
    assert ledger_path(None) == tmp_path / "env.db"
    monkeypatch.delenv("LOOPKIT_LEDGER")
    assert str(ledger_path(None)) == ".loopkit/ledger.db"


def test_a_ledger_that_cannot_be_written_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LedgerError, match="cannot write the ledger"):
        Ledger(blocker / "l.db")


def test_reading_commands_do_not_create_a_ledger(tmp_path):
    with pytest.raises(LedgerError, match="no ledger here yet"):
        Ledger(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_ids_resolve_by_unique_prefix_like_git(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    a = ledger.start_batch("run", "h", argv=[], tags={}, options={})
    assert ledger.resolve(a[:6]) == ("batch", a)
    with pytest.raises(UsageError, match="no run or batch"):
        ledger.resolve("0" * 32 if not a.startswith("0") else "f" * 32)
    with pytest.raises(UsageError, match="not a run or batch ID"):
        ledger.resolve("xyz")


def test_argv_is_scrubbed_of_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_API_KEY", "sk-secret-value-123456")
    ledger = Ledger(tmp_path / "l.db")
    batch = ledger.start_batch("run", "h", argv=["run", "--x", "sk-secret-value-123456"], tags={}, options={})
    assert "sk-secret" not in ledger.batch(batch)["argv"]


def test_a_second_connection_sees_each_iteration_as_soon_as_it_is_committed(tmp_path, recorder):
    import asyncio

    from loopkit.engine import run_case
    from loopkit.inputs import Case
    from loopkit.models import ModelPool
    from loopkit.spec import parse_spec

    ledger = Ledger(tmp_path / "l.db")
    seen: list[int] = []

    class Watching:
        def commit(self, result, iteration, calls, events, *, start=None):  # noqa: ANN001
            ledger.commit(result, iteration, calls, events, start=start)
            other = sqlite3.connect(tmp_path / "l.db")
            seen.append(other.execute("SELECT COUNT(*) FROM iterations").fetchone()[0])
            other.close()

    spec = parse_spec('model: {id: loopkit/scripted, replies: ["a", "b", "c"]}\ntask: {prompt: go}\n'
                      'checkers: [{name: c, type: equals, expected: c}]\n')
    asyncio.run(run_case(spec, Case("1", {}), clients=ModelPool().client, recorder=Watching()))
    assert seen == [1, 2, 3]
