"""The ledger: schema by migrations, one transaction per iteration, shared safely between processes."""

from __future__ import annotations

import json
import sqlite3

import pytest

from loopkit.errors import LedgerError, UsageError
from loopkit.ledger import Ledger, ledger_path
from loopkit.ledger.costs import cost_report
from loopkit.ledger.schema import NAMES, migrations

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
    applied = [m.name for m in migrations().applied(ledger.db)]
    assert applied == list(NAMES)
    assert migrations().pending(ledger.db) == []


def test_wal_mode_and_indexes_for_the_common_queries(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ran: list[str] = []
    ledger.conn.set_trace_callback(ran.append)
    cost_report(ledger, since="2026-01-01T00:00:00", by="model")
    ledger.conn.set_trace_callback(None)
    sums = [sql for sql in ran if "FROM calls" in sql]
    assert len(sums) == 1  # one pass, savings included
    plan = " ".join(str(r[3]) for r in ledger.conn.execute("EXPLAIN QUERY PLAN " + sums[0]))
    assert "COVERING INDEX idx_calls_created_saved" in plan, plan  # `cost` reads a window from the index alone


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


# --- what a ledger path may hold (connect.py) ----------------------------------------------------

SCRIPTED = """\
version: 1
name: opened
model: {id: loopkit/scripted, replies: ["{{ case.id }}"]}
task: {prompt: "say {{ case.id }}"}
inputs: [{id: a}, {id: b}]
checkers: [{name: echo, type: equals, expected: "{{ case.id }}"}]
"""

# Every command that opens the ledger, with arguments that would otherwise get past their own checks.
COMMANDS = {
    "run": ["run", "spec.yaml"], "runs": ["runs"], "show": ["show", "abc123"], "cost": ["cost"],
    "diff": ["diff", "abc123", "def456"], "resume": ["resume", "abc123"], "review": ["review"],
    "ab": ["ab", "spec.yaml", "spec.yaml"],
}


def _another_apps_database(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()


def _another_sqlite_utils_app(path):
    """Another app that also keeps its migrations in sqlite-utils' table, under its own set name."""
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

    theirs = Migrations("theirs")

    @theirs()
    def m001_items(db):  # noqa: ANN001
        db["items"].create({"id": int, "name": str}, pk="id")

    db = Database(path)
    theirs.apply(db)
    db.close()


def _truncated_ledger(path):
    with Ledger(path) as ledger:
        for _ in range(40):
            ledger.save_spec(__import__("uuid").uuid4().hex, "s", None, "x" * 3000)
    conn = sqlite3.connect(path)  # the last connection: checkpointed, the -wal removed
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


NOT_LEDGERS = {
    "text": lambda p: p.write_text("name,amount\nrent,1200\n"),
    "garbage": lambda p: p.write_bytes(bytes(range(256)) * 32),
    "sqlite-header-then-garbage": lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 31),
    "another-apps-database": _another_apps_database,
    "another-sqlite-utils-app": _another_sqlite_utils_app,
    "truncated-ledger": _truncated_ledger,
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(NOT_LEDGERS))
def test_a_file_that_is_not_a_loopkit_ledger_is_one_line_exit_2_and_left_untouched(tmp_path, cli, kind, command):
    (tmp_path / "spec.yaml").write_text(SCRIPTED)
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "ledger.db"
    NOT_LEDGERS[kind](path)
    before = path.read_bytes()
    done = cli("--ledger", str(path), *COMMANDS[command])
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: is not a loopkit ledger ("), done.stderr
    assert done.stdout == ""
    assert path.read_bytes() == before, "not a byte changed"
    if kind != "truncated-ledger":  # a WAL ledger's reader may leave an empty -wal/-shm: SQLite's, harmless
        assert [p.name for p in folder.iterdir()] == ["ledger.db"], "no -wal, -shm or journal left beside it"


def test_why_a_file_is_not_a_ledger_is_said_in_the_message(tmp_path, cli):
    for kind, why in [("text", "not an SQLite database"), ("another-apps-database", "another application: notes"),
                      ("truncated-ledger", "truncated")]:
        path = tmp_path / f"{kind}.db"
        NOT_LEDGERS[kind](path)
        assert why in cli("--ledger", str(path), "runs").stderr, kind


def test_a_folder_given_as_the_ledger_is_not_a_ledger(tmp_path, cli):
    done = cli("--ledger", str(tmp_path), "runs")
    assert done.returncode == 2 and "is not a loopkit ledger (a folder)" in done.stderr


def _empty_file(path):
    path.write_bytes(b"")


def _empty_wal_database(path):
    """What a signal right after `PRAGMA journal_mode=WAL` on a new file leaves: a header, no tables."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


@pytest.mark.parametrize("make", [_empty_file, _empty_wal_database], ids=["0-bytes", "no-tables"])
def test_an_empty_ledger_reads_as_no_runs_and_a_run_initialises_it(tmp_path, cli, make):
    """An empty file is what a signal during the ledger's creation leaves: it is ours to create."""
    (tmp_path / "spec.yaml").write_text(SCRIPTED)
    path = tmp_path / "ledger.db"
    make(path)
    listed = cli("--ledger", str(path), "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert cli("--ledger", str(path), "runs").stdout.strip() == "no runs match"
    cost = cli("--ledger", str(path), "cost", "--json")
    assert cost.returncode == 0 and json.loads(cost.stdout)["total"]["calls"] == 0, cost.stdout + cost.stderr
    shown = cli("--ledger", str(path), "show", "abc123")
    assert shown.returncode == 2 and "no run or batch" in shown.stderr
    assert path.stat().st_size == 0 or sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0, \
        "reading an empty ledger does not create its tables"

    ran = cli("--ledger", str(path), "run", "spec.yaml", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["passed"] == 2
    assert len(json.loads(cli("--ledger", str(path), "runs", "--json").stdout)) == 2


def _from_a_newer_loopkit(path):
    Ledger(path).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('loopkit', 'm999_future', '2027')")
    conn.close()


def test_a_ledger_from_a_newer_loopkit_is_read_but_never_written(tmp_path, cli):
    (tmp_path / "spec.yaml").write_text(SCRIPTED)
    path = tmp_path / "ledger.db"
    assert cli("--ledger", str(path), "run", "spec.yaml").returncode == 0
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('loopkit', 'm999_future', '2027')")
    schema = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()

    for args in (["run", "spec.yaml"], ["review"], ["resume", "abc123"]):
        done = cli("--ledger", str(path), *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == (f"error: {path}: this ledger was written by a newer loopkit (migration m999_future); "
                                       "upgrade loopkit")
    listed = cli("--ledger", str(path), "runs", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2, "reads work: SPEC.md §4 columns are never dropped"
    assert cli("--ledger", str(path), "cost", "--json").returncode == 0
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema, "no migration ran"
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    conn.close()


def test_an_older_ledger_is_migrated_by_the_first_write(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    with conn:  # as loopkit before m003 left it
        conn.execute("DELETE FROM _sqlite_migrations WHERE name IN ('m003_call_key', 'm004_drop_probe')")
        conn.execute("DROP INDEX idx_calls_batch_call_key")
        conn.execute("ALTER TABLE calls DROP COLUMN call_key")
    conn.close()
    with Ledger(path) as ledger:
        assert "call_key" in ledger.db["calls"].columns_dict
        assert sorted(m.name for m in migrations().applied(ledger.db)) == sorted(NAMES)  # later ones were kept


def test_opening_a_ledger_leaves_no_probe_table_and_drops_the_old_one(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "_probe" not in tables
    with conn:  # what loopkit before m004 left in every ledger
        conn.execute("CREATE TABLE _probe (x)")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_drop_probe'")
    conn.close()
    Ledger(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='_probe'").fetchone()[0] == 0
    conn.close()


def test_opening_an_existing_ledger_changes_neither_its_schema_nor_its_journal_mode(tmp_path):
    """A long-lived reader must not see the schema change on every writer's open (issue #15)."""
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    reader = sqlite3.connect(path)
    version = reader.execute("PRAGMA schema_version").fetchone()[0]
    for readonly in (False, True, False):
        Ledger(path, readonly=readonly).close()
        assert reader.execute("PRAGMA schema_version").fetchone()[0] == version
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader.close()


@pytest.mark.parametrize("folder", ["with#hash", "with?question", "100%sure", "spaced out"])
def test_a_ledger_in_a_folder_with_uri_characters_is_read_where_it_was_written(tmp_path, cli, folder):
    (tmp_path / "spec.yaml").write_text(SCRIPTED)
    path = tmp_path / folder / "ledger.db"
    assert cli("--ledger", str(path), "run", "spec.yaml").returncode == 0
    listed = cli("--ledger", str(path), "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 2


def test_an_id_prefix_is_looked_up_as_a_range_of_the_primary_key_not_a_scan(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path / "l.db")
    plans: list[str] = []
    query = ledger.query

    def explained(sql, args=()):  # noqa: ANN001, ANN202
        plans.extend(" ".join(str(v) for v in row.values()) for row in query("EXPLAIN QUERY PLAN " + sql, args))
        return query(sql, args)

    monkeypatch.setattr(ledger, "query", explained)
    with pytest.raises(UsageError):
        ledger.resolve("abc")
    assert len(plans) == 2 and all("SEARCH" in p and "id>? AND id<?" in p for p in plans), plans


def test_opening_a_ledger_never_opens_its_files_outside_sqlite(tmp_path, monkeypatch):
    """Issue #15. POSIX locks belong to the process: closing any descriptor on the file drops the locks
    every SQLite connection of this process holds on it, and another process's clean close then deletes
    -wal and -shm under a live reader, which reads stale pages ("malformed") from then on."""
    import builtins
    import io
    import os

    path = tmp_path / "ledger.db"
    Ledger(path).close()
    opened: list[str] = []

    def spy(real):  # noqa: ANN001, ANN202
        def wrapper(file, *args, **kwargs):  # noqa: ANN001, ANN202
            opened.append(str(file))
            return real(file, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    monkeypatch.setattr(os, "open", spy(os.open))
    for readonly in (False, True):
        Ledger(path, readonly=readonly).close()
    assert not [f for f in opened if f.startswith(str(path))], opened


def test_damage_deep_in_a_ledger_is_one_line_and_exit_2_not_a_traceback(tmp_path, cli):
    (tmp_path / "spec.yaml").write_text(
        'model: {id: loopkit/scripted, replies: ["{{ case.id }}"]}\ntask: {prompt: "say {{ case.id }}"}\n'
        "inputs: [" + ", ".join(f'{{id: "case-{i:04d}-{"x" * 200}"}}' for i in range(300)) + "]\n"
        'checkers: [{name: echo, type: equals, expected: "{{ case.id }}"}]\n')
    assert cli("run", "spec.yaml").returncode == 0
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    assert len(data) > 20 * page_size
    for page in range(len(data) // page_size // 2, len(data) // page_size - 1):  # the back half's pages, not the header
        data[page * page_size:(page + 1) * page_size] = b"\xa5" * page_size
    path.write_bytes(bytes(data))
    done = cli("runs", "--limit", "1000")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("error:") and len(done.stderr.splitlines()) == 1
    assert "integrity_check" in done.stderr


def test_every_text_a_row_carries_is_made_writable_a_lone_surrogate_escaped(tmp_path):
    """Whatever let one through (a model's tool-call arguments, a checker's detail), a lone surrogate
    must not fail the commit of a whole group of steps."""
    from loopkit.ledger.rows import insert_tuples

    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE events (run_id TEXT, kind TEXT, detail TEXT, created_at TEXT)")
    insert_tuples(conn, "events", ("run_id", "kind", "detail", "created_at"), [("r1", "note", '{"x": "a\udc80b"}', "now")])
    assert conn.execute("SELECT detail FROM events").fetchall() == [('{"x": "a\\udc80b"}',)]
