"""The response cache: one key per call, salted where a reply depends on more than the messages."""

from __future__ import annotations

import os
import socket

from fake_llm import Reply
from loopkit.api import run_batch
from loopkit.batch import BatchOptions
from loopkit.cache import cache_key
from loopkit.ledger import Ledger
from loopkit.spec import load_spec, parse_spec


def test_two_cases_with_one_prompt_keep_their_own_scripted_answers(write_spec, tmp_path):
    # The prompt does not mention the case's answer, but the scripted reply is rendered from it.
    spec = load_spec(write_spec("""
        model: {id: loopkit/scripted, replies: ["{{ case.answer }}"]}
        task: {prompt: "What is the answer?"}
        inputs:
          - {id: a, answer: "1"}
          - {id: b, answer: "2"}
        checkers: [{name: right, type: equals, expected: "{{ case.answer }}"}]
        """))
    ledger = Ledger(tmp_path / "l.db")
    result = run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=1))
    outputs = {r["case_id"]: r["output"] for r in ledger.query("SELECT case_id, output FROM runs")}
    assert outputs == {"a": "1", "b": "2"}
    assert result.passed == 2
    assert ledger.one("SELECT COUNT(*) AS n FROM calls WHERE cached = 1")["n"] == 0


def test_a_second_run_of_the_same_cases_is_answered_from_the_cache(write_spec, tmp_path):
    spec = load_spec(write_spec("""
        model: {id: loopkit/scripted, replies: ["{{ case.answer }}"]}
        task: {prompt: "What is the answer?"}
        inputs: [{id: a, answer: "1"}, {id: b, answer: "2"}]
        checkers: [{name: right, type: equals, expected: "{{ case.answer }}"}]
        """))
    ledger = Ledger(tmp_path / "l.db")
    run_batch(spec, ledger=ledger)
    run_batch(spec, ledger=ledger)
    rows = ledger.query("SELECT r.case_id, r.output, c.cached FROM runs r JOIN calls c ON c.run_id = r.id ORDER BY c.created_at")
    assert [(r["case_id"], r["output"]) for r in rows if r["cached"]] in (
        [("a", "1"), ("b", "2")], [("b", "2"), ("a", "1")])


def test_the_key_changes_with_each_part_of_the_call():
    model = parse_spec("model: gpt-4o-mini\ntask: {prompt: hi}\n").model
    base = cache_key("s", model, [{"role": "user", "content": "hi"}], {"temperature": 0}, 0)
    assert base != cache_key("t", model, [{"role": "user", "content": "hi"}], {"temperature": 0}, 0)
    assert base != cache_key("s", model, [{"role": "user", "content": "ho"}], {"temperature": 0}, 0)
    assert base != cache_key("s", model, [{"role": "user", "content": "hi"}], {"temperature": 1}, 0)
    assert base != cache_key("s", model, [{"role": "user", "content": "hi"}], {"temperature": 0}, 1)
    assert base != cache_key("s", model, [{"role": "user", "content": "hi"}], {"temperature": 0}, 0, salt="x")


# --- misses settled from memory (cache.KnownKeys) -----------------------------------------------

LOOKUP = "FROM calls c WHERE c.cache_key="  # the ledger's cache lookup, as SQLite traces it (values filled in)


def _lookups(ledger: Ledger) -> list[str]:
    ran: list[str] = []
    ledger.conn.set_trace_callback(lambda sql: ran.append(sql) if LOOKUP in sql else None)
    return ran


SCRIPTED = """
    model: {id: loopkit/scripted, replies: ["{{ case.answer }}"]}
    task: {prompt: "What is the answer?"}
    inputs: [{id: a, answer: "1"}, {id: b, answer: "2"}, {id: c, answer: "3"}]
    checkers: [{name: right, type: equals, expected: "{{ case.answer }}"}]
    """


def test_a_new_specs_misses_ask_the_ledger_nothing_and_a_rerun_still_finds_every_answer(write_spec, tmp_path):
    spec = load_spec(write_spec(SCRIPTED))
    ledger = Ledger(tmp_path / "l.db")
    asked = _lookups(ledger)
    run_batch(spec, ledger=ledger)
    assert asked == []  # no answer of this spec was in the ledger, and none of its own was asked for again
    run_batch(spec, ledger=ledger)
    assert len(asked) == 3  # each call of the rerun may be answered: it is looked up, and found
    assert ledger.one("SELECT COUNT(*) AS n FROM calls WHERE cached = 1")["n"] == 3


def test_an_answer_recorded_earlier_in_the_same_batch_is_found(write_spec, fake_llm, tmp_path):
    fake_llm.responder = lambda body: Reply("echo " + body["messages"][-1]["content"])
    spec = load_spec(write_spec(f"""
        model: {{id: openai/test-model, api_base: "{fake_llm.base_url}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
        task: {{prompt: "Echo {{{{ case.word }}}}"}}
        inputs: [{{id: a, word: same}}, {{id: b, word: same}}, {{id: c, word: other}}]
        checkers: [{{name: echo, type: regex, pattern: "^echo"}}]
        stop: {{max_iterations: 1}}
        """))
    ledger = Ledger(tmp_path / "l.db")
    asked = _lookups(ledger)
    run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=1))
    assert len(fake_llm.requests) == 2 and len(asked) == 1  # b's call: held by the filter, so looked up and found
    cached = ledger.query("SELECT r.case_id FROM calls c JOIN runs r ON r.id = c.run_id WHERE c.cached = 1")
    assert [r["case_id"] for r in cached] == ["b"]


def _another_batch(path, *, pid: int, started_at: str, status: str = "running") -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO batches (id, kind, status, started_at, pid, host) VALUES (?, 'run', ?, ?, ?, ?)",
                     (f"other-{pid}-{started_at}", status, started_at, pid, socket.gethostname()))


def test_answers_of_another_process_are_looked_up_once_it_starts_a_batch(tmp_path, monkeypatch):
    import sqlite3

    from loopkit.cache import KnownKeys, LedgerCache
    from loopkit.timewindow import utcnow_iso

    path = tmp_path / "l.db"
    ledger = Ledger(path)
    _another_batch(path, pid=2**22 + 1, started_at="2026-01-01T00:00:00.000000Z")  # killed long ago: still "running"
    with ledger.writer() as writer:
        known = KnownKeys.of(ledger, writer, "quiz", "mine")
        assert known is not None  # a dead process's batch adds nothing more
        cache = LedgerCache(writer, known=known)
        assert cache.lookup("k1") is None and not known.may_hold("k1")
        with sqlite3.connect(path) as conn:  # another process starts a batch and records an answer
            conn.execute("INSERT INTO calls (id, run_id, cached, cache_key, response, prompt_tokens, completion_tokens, "
                         "cost_usd, created_at) VALUES ('c1', 'r1', 0, 'k1', 'theirs', 1, 1, 0.5, ?)", (utcnow_iso(),))
        _another_batch(path, pid=1, started_at=utcnow_iso())  # pid 1 is alive on every machine
        monkeypatch.setattr(known, "_next_check", 0.0)  # the next check is due
        found = cache.lookup("k1")
        assert found is not None and found.text == "theirs" and not known.trusted
    with ledger.writer() as writer:
        assert KnownKeys.of(ledger, writer, "quiz", "mine") is None  # a live batch running: no filter at all


def test_another_batch_running_in_this_process_is_taken_as_live(tmp_path):
    from loopkit.cache import KnownKeys

    path = tmp_path / "l.db"
    ledger = Ledger(path)
    _another_batch(path, pid=os.getpid(), started_at="2026-01-01T00:00:00.000000Z")  # e.g. a batch in another thread
    with ledger.writer() as writer:
        assert KnownKeys.of(ledger, writer, "quiz", "mine") is None


def test_a_spec_with_more_answers_than_the_filter_reads_is_looked_up_as_before(write_spec, tmp_path, monkeypatch):
    from loopkit.cache import KnownKeys

    spec = load_spec(write_spec(SCRIPTED))
    ledger = Ledger(tmp_path / "l.db")
    run_batch(spec, ledger=ledger)
    monkeypatch.setattr(KnownKeys, "LIMIT", 2)
    with ledger.writer() as writer:
        assert KnownKeys.of(ledger, writer, spec.name, "mine") is None
    monkeypatch.setattr(KnownKeys, "LIMIT", 3)
    with ledger.writer() as writer:
        known = KnownKeys.of(ledger, writer, spec.name, "mine")
        assert known is not None
        keys = [r["cache_key"] for r in ledger.query("SELECT cache_key FROM calls")]
        assert all(known.may_hold(k) for k in keys)
