"""The batch's writer: steps are queued by the event loop and committed in groups by one thread.

What it promises: every step handed over is written by `close()`; a group commits within its window
(here made long, so the tests see the grouping without timing anything); an answer still queued
answers the cache; a failed write stops the batch at its next step instead of being lost quietly.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from loopkit.engine import run_case
from loopkit.errors import LedgerError
from loopkit.inputs import Case
from loopkit.ledger import Ledger
from loopkit.ledger.writer import Writer
from loopkit.models import ModelPool
from loopkit.records import CallRecord, RunInfo, RunResult, RunState, new_id
from loopkit.spec import parse_spec
from loopkit.status import RunStatus, StopReason

SPEC = parse_spec('model: {id: loopkit/scripted, replies: ["a", "b", "c"]}\ntask: {prompt: go}\n'
                  'checkers: [{name: c, type: equals, expected: c}]\n')


def _count(path: Path, table: str) -> int:
    other = sqlite3.connect(path)
    try:
        return other.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        other.close()


def _run_cases(writer: Writer, n: int) -> None:
    async def all_cases() -> None:
        await asyncio.gather(*(run_case(SPEC, Case(str(i), {}), clients=ModelPool().client, recorder=writer) for i in range(n)))

    asyncio.run(all_cases())


def test_every_step_handed_over_is_written_by_close(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    writer = ledger.writer()
    _run_cases(writer, 25)  # three iterations each
    writer.close()
    assert _count(tmp_path / "l.db", "runs") == 25
    assert _count(tmp_path / "l.db", "iterations") == 75
    assert _count(tmp_path / "l.db", "calls") == 75
    assert {r["status"] for r in ledger.query("SELECT status FROM runs")} == {"passed"}


def test_steps_wait_for_their_group_and_are_committed_together(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    writer = Writer(ledger, group_seconds=3600, group_steps=75)  # a window no test waits for
    _run_cases(writer, 24)  # 72 steps: the group is not full
    assert _count(tmp_path / "l.db", "iterations") == 0, "nothing is written before the group commits"
    _run_cases(writer, 1)  # steps 73-75 fill the group
    writer.flush()
    assert _count(tmp_path / "l.db", "iterations") == 75
    writer.close()


def test_flush_commits_at_once_without_waiting_for_the_window(tmp_path: Path) -> None:
    writer = Writer(Ledger(tmp_path / "l.db"), group_seconds=3600)
    _run_cases(writer, 2)
    writer.flush()
    assert _count(tmp_path / "l.db", "iterations") == 6
    writer.close()


def _step_with_a_call(key: str) -> tuple[RunResult, list[CallRecord], RunInfo]:
    run_id = new_id()
    info = RunInfo(run_id, None, "hash", "spec", "case", {})
    call = CallRecord(new_id(), 1, "worker", "m", [{"role": "user", "content": "go"}], "the answer", 3, 2, 0.5, 1.0, False,
                      None, key, key, None)
    result = RunResult(run_id, RunStatus.PASSED, StopReason.PASSED, True, 1.0, 1, 1, "the answer", 0.5, 3, 2, RunState())
    return result, [call], info


def test_an_answer_still_queued_answers_the_cache(tmp_path: Path) -> None:
    writer = Writer(Ledger(tmp_path / "l.db"), group_seconds=3600)
    result, calls, info = _step_with_a_call("key-1")
    writer.commit(result, None, calls, [], start=info)
    hit = writer.lookup("key-1")
    assert hit is not None and hit.text == "the answer" and hit.cached
    assert writer.lookup("key-2") is None
    writer.close()


def test_a_write_that_fails_stops_the_next_step_and_close(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    writer = Writer(ledger, group_seconds=3600)
    other = sqlite3.connect(tmp_path / "l.db")
    other.execute("DROP TABLE calls")  # the next group cannot be written
    other.commit()
    other.close()
    result, calls, info = _step_with_a_call("key-1")
    writer.commit(result, None, calls, [], start=info)
    with pytest.raises(LedgerError):
        writer.flush()
    with pytest.raises(LedgerError):
        writer.commit(result, None, calls, [])
    with pytest.raises(LedgerError):
        writer.close()
    assert _count(tmp_path / "l.db", "runs") == 0, "the failed group was rolled back whole"


def _table(ledger: Ledger, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in ledger.query(sql)]


def test_a_group_leaves_the_rows_that_writing_its_steps_one_by_one_leaves(tmp_path: Path) -> None:
    """A group is written table by table and a run's row once, from its latest step: the runs, iterations,
    checks and calls must equal those of the same runs committed a step per transaction."""
    one_by_one = Ledger(tmp_path / "a.db")
    _run_cases(one_by_one, 6)  # the ledger itself as the recorder: one transaction per step
    grouped = Ledger(tmp_path / "b.db")
    writer = Writer(grouped, group_seconds=3600, group_steps=10_000)  # all 18 steps in one group
    _run_cases(writer, 6)
    writer.close()
    for sql in ("SELECT case_id, status, stop_reason, success, reward, iterations, best_iteration, output, cost_usd, "
                "prompt_tokens, completion_tokens, message, suspect, json_extract(state, '$.messages') FROM runs ORDER BY case_id",
                "SELECT r.case_id, i.n, i.output, i.reward, i.passed, i.feedback FROM iterations i JOIN runs r ON r.id = i.run_id "
                "ORDER BY r.case_id, i.n",
                "SELECT r.case_id, k.iteration, k.checker, k.score, k.passed FROM checks k JOIN runs r ON r.id = k.run_id "
                "ORDER BY r.case_id, k.iteration",
                "SELECT r.case_id, c.iteration, c.response, c.messages, c.cache_key FROM calls c JOIN runs r ON r.id = c.run_id "
                "ORDER BY r.case_id, c.iteration"):
        assert _table(grouped, sql) == _table(one_by_one, sql), sql
    assert len(_table(grouped, "SELECT * FROM checks")) == 18


def test_a_suspect_flag_of_an_earlier_step_in_the_group_survives_a_later_step_without_one(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    writer = Writer(ledger, group_seconds=3600)
    result, calls, info = _step_with_a_call("key-1")
    result.suspect = "possible reward hacking"
    writer.commit(result, None, calls, [], start=info)
    later, _, _ = _step_with_a_call("key-2")
    later.run_id, later.suspect = info.id, None
    writer.commit(later, None, [], [])
    writer.close()
    assert ledger.one("SELECT suspect FROM runs WHERE id=?", (info.id,)) == {"suspect": "possible reward hacking"}


def test_a_short_secret_is_scrubbed_from_texts_but_never_corrupts_an_id(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    result, calls, info = _step_with_a_call("key-1")
    secret = info.id[4:14]  # a key that happens to appear inside a run's id
    monkeypatch.setenv("MY_TOKEN", secret)
    calls[0].response = f"the key is {secret}"
    ledger = Ledger(tmp_path / "l.db")
    writer = Writer(ledger, group_seconds=3600)
    writer.commit(result, None, calls, [], start=info)
    writer.close()
    assert ledger.one("SELECT id FROM runs") == {"id": info.id}
    assert ledger.one("SELECT response FROM calls") == {"response": "the key is [REDACTED]"}



# --- through the CLI: another process holds the ledger's write lock ---------------------------------


def test_a_locked_ledger_neither_freezes_the_batch_nor_loses_a_paid_call_on_ctrl_c(fake_llm, tmp_path: Path) -> None:  # noqa: ANN001
    import signal

    from fake_llm import Reply
    from test_faults import env_for, killed_at_exit, query, start, wait_until, write_fake_spec

    fake_llm.default = Reply("42", latency=0.05)
    write_fake_spec(tmp_path, fake_llm.base_url, [f"c{i:03d}" for i in range(400)])
    db = tmp_path / "ledger.db"
    proc = start(["run", "spec.yaml", "--concurrency", "2"], cwd=tmp_path, env=env_for(db))
    with killed_at_exit(proc):
        wait_until(lambda: len(query(db, "SELECT id FROM runs WHERE status='passed'")) >= 2, proc=proc, what="two finished runs")
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # as a long write of another process would
        locked_at = fake_llm.count
        wait_until(lambda: fake_llm.count >= locked_at + 6, proc=proc, what="calls made while the ledger is locked")
        proc.send_signal(signal.SIGINT)
        lock.execute("COMMIT")
        lock.close()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Event loop is closed" not in err and "never awaited" not in err, err
    assert query(db, "SELECT status FROM batches")[0]["status"] == "interrupted"
    recorded = query(db, "SELECT COUNT(*) AS n FROM calls")[0]["n"]
    assert recorded == fake_llm.count, "every call the provider answered is in the ledger"


def test_runs_faster_than_the_writer_wait_for_it_so_the_queue_stays_within_a_group(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Backpressure: the queue (and the batch's memory) stays within one group however far the runs outpace
    the thread; before, it grew with the batch (2,888 steps queued at 10,000 scripted cases)."""
    monkeypatch.setattr("loopkit.ledger.writer.BACKLOG_WAIT", 60.0)  # the wait ends when the writer catches up
    ledger = Ledger(tmp_path / "l.db")
    writer = Writer(ledger, group_seconds=3600, group_steps=8)  # only full groups commit
    queued: list[int] = []
    commit = writer.commit

    def commit_and_look(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        commit(*args, **kwargs)
        queued.append(len(writer._pending))

    writer.commit = commit_and_look  # type: ignore[method-assign]
    _run_cases(writer, 40)
    writer.close()
    assert len(queued) == 120 and max(queued) <= 8
    assert _count(tmp_path / "l.db", "iterations") == 120
