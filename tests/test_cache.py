"""The response cache: one key per call, salted where a reply depends on more than the messages."""

from __future__ import annotations

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
