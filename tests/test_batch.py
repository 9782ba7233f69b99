"""Batches: many cases through the real litellm path against the fake server, into a real ledger."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopkit
from fake_llm import Reply
from loopkit.api import run_batch
from loopkit.batch import BatchOptions
from loopkit.errors import UsageError
from loopkit.ledger import Ledger
from loopkit.spec import load_spec


def fake_spec(write_spec, fake, *, cases: int, extra: str = "", price: str = "{input_per_mtok: 1, output_per_mtok: 2}",
              max_tokens: int = 50) -> Path:
    inputs = "\n".join(f'{{"id": "c{i}", "n": {i}}}' for i in range(cases))
    return write_spec(f"""
        model: {{id: openai/test-model, api_base: "{fake.base_url}", price: {price}}}
        params: {{max_tokens: {max_tokens}}}
        task: {{prompt: "Echo {{{{ case.n }}}}"}}
        inputs: cases.jsonl
        checkers: [{{name: echo, type: regex, pattern: "^echo"}}]
        stop: {{max_iterations: 1}}
        {textwrap.dedent(extra)}
        """, cases__jsonl=inputs + "\n")


def echo(body: dict) -> Reply:
    return Reply("echo " + body["messages"][-1]["content"], latency=0.02)


def test_two_hundred_concurrent_cases_each_recorded_once_with_latency(write_spec, fake_llm, tmp_path):
    fake_llm.responder = echo
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=200))
    ledger = Ledger(tmp_path / "l.db")
    result = run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=50))
    assert (result.status, result.finished, result.passed) == ("done", 200, 200)
    assert fake_llm.count == 200
    calls = ledger.query("SELECT run_id, latency_ms FROM calls")
    assert len(calls) == 200 and len({c["run_id"] for c in calls}) == 200
    assert all(c["latency_ms"] >= 20 for c in calls)
    assert ledger.one("SELECT COUNT(DISTINCT case_id) AS n FROM runs")["n"] == 200


def test_a_second_identical_run_is_answered_from_the_cache(write_spec, fake_llm, tmp_path):
    fake_llm.responder = echo
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=5))
    ledger = Ledger(tmp_path / "l.db")
    first = run_batch(spec, ledger=ledger)
    second = run_batch(spec, ledger=ledger)
    assert fake_llm.count == 5
    assert second.passed == 5 and second.cost_usd == 0
    rows = ledger.query("SELECT cached, cost_usd FROM calls WHERE batch_id=?", (second.batch_id,))
    assert rows and all(r["cached"] == 1 and r["cost_usd"] == 0 for r in rows)
    assert first.cost_usd > 0
    run_batch(spec, ledger=ledger, options=BatchOptions(no_cache=True))
    assert fake_llm.count == 10


def test_repeat_runs_each_case_k_times_with_the_repeat_index_in_the_cache_key(write_spec, fake_llm, tmp_path):
    fake_llm.responder = echo
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=3))
    result = run_batch(spec, ledger=Ledger(tmp_path / "l.db"), options=BatchOptions(repeat=3))
    assert result.finished == 9 and fake_llm.count == 9


def test_ten_concurrent_cases_under_a_small_batch_cap_spend_no_more_than_the_cap(write_spec, fake_llm, tmp_path):
    fake_llm.responder = lambda body: Reply("echo", completion_tokens=50, latency=0.01)
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=10, extra="budget: {total_usd: 0.00045}"))
    ledger = Ledger(tmp_path / "l.db")
    result = run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=10))
    spent = ledger.one("SELECT SUM(cost_usd) AS s FROM calls")["s"] or 0
    assert 0 < spent <= 0.00045
    assert result.refused > 0 and result.status == "budget" and result.exit_code(None) == 3
    assert ledger.batch(result.batch_id)["status"] == "budget"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    input_per_mtok=st.floats(0.01, 50),
    output_per_mtok=st.floats(0.01, 100),
    completion=st.integers(1, 200),
    max_tokens=st.integers(200, 400),
    cap=st.floats(1e-5, 5e-3),
    concurrency=st.integers(1, 8),
)
def test_recorded_spend_never_exceeds_the_batch_cap(write_spec, fake_llm, tmp_path_factory, input_per_mtok, output_per_mtok,
                                                     completion, max_tokens, cap, concurrency):
    fake_llm.responder = lambda body: Reply("echo", completion_tokens=completion)
    price = f"{{input_per_mtok: {input_per_mtok}, output_per_mtok: {output_per_mtok}}}"
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=6, price=price, max_tokens=max_tokens,
                               extra=f"budget: {{total_usd: {cap!r}, usd: {cap / 2!r}}}"))
    ledger = Ledger(tmp_path_factory.mktemp("l") / "l.db")
    run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=concurrency))
    assert (ledger.one("SELECT COALESCE(SUM(cost_usd), 0) AS s FROM calls")["s"]) <= cap + 1e-12
    per_run = ledger.query("SELECT run_id, SUM(cost_usd) AS s FROM calls GROUP BY run_id")
    assert all(r["s"] <= cap / 2 + 1e-12 for r in per_run)


def test_a_case_whose_retries_run_out_is_an_error_and_the_batch_goes_on(write_spec, fake_llm, tmp_path):
    fake_llm.responder = lambda body: Reply(status=500) if "Echo 1" in body["messages"][-1]["content"] else echo(body)
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=3))
    ledger = Ledger(tmp_path / "l.db")
    result = run_batch(spec, ledger=ledger, options=BatchOptions(max_retries=2))
    assert result.statuses == {"passed": 2, "error": 1} and result.exit_code(None) == 4
    error = ledger.one("SELECT * FROM runs WHERE status='error'")
    assert error["stop_reason"] == "error" and "InternalServerError" in error["message"]
    assert ledger.one("SELECT COUNT(*) AS n FROM calls WHERE error IS NOT NULL")["n"] == 1


def test_a_fail_under_gate_turns_a_low_pass_rate_into_exit_1(write_spec, fake_llm, tmp_path):
    fake_llm.responder = lambda body: "nope" if "Echo 0" in body["messages"][-1]["content"] else echo(body)
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=4))
    result = run_batch(spec, ledger=Ledger(tmp_path / "l.db"))
    assert result.pass_rate == 0.75
    assert result.exit_code(0.8) == 1 and result.exit_code(0.75) == 0


def test_no_cache_neither_reads_nor_writes_the_cache_yet_its_batch_can_be_replayed(write_spec, fake_llm, tmp_path):
    fake_llm.responder = echo
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=3))
    ledger = Ledger(tmp_path / "l.db")
    uncached = run_batch(spec, ledger=ledger, options=BatchOptions(no_cache=True))
    run_batch(spec, ledger=ledger)
    assert fake_llm.count == 6  # the --no-cache batch left nothing for the next run to reuse
    fake_llm.stop()
    replayed = run_batch(spec, ledger=ledger, options=BatchOptions(replay=uncached.batch_id))
    assert replayed.passed == 3 and fake_llm.count == 6


def test_retry_errors_continues_each_error_run_under_its_own_id(write_spec, fake_llm, tmp_path):
    failing = {"on": True}
    fake_llm.responder = lambda body: Reply(status=500) if failing["on"] and "Echo 1" in body["messages"][-1]["content"] else echo(body)
    spec = load_spec(fake_spec(write_spec, fake_llm, cases=3))
    ledger = Ledger(tmp_path / "l.db")
    first = run_batch(spec, ledger=ledger, options=BatchOptions(max_retries=1))
    (error,) = ledger.query("SELECT id FROM runs WHERE status='error'")
    failing["on"] = False
    again = loopkit.resume(first.batch_id, ledger=ledger, retry_errors=True)
    rows = ledger.query("SELECT id, case_id, status FROM runs WHERE batch_id=?", (first.batch_id,))
    assert len(rows) == 3 and again.statuses == {"passed": 3} and again.pass_rate == 1.0
    assert {r["id"]: r["status"] for r in rows}[error["id"]] == "passed"
    # its failed call stays on record under the same run
    assert ledger.one("SELECT COUNT(*) AS n FROM calls WHERE run_id=? AND error IS NOT NULL", (error["id"],))["n"] == 1


def test_a_batch_running_in_a_live_process_cannot_be_claimed_twice(write_spec, tmp_path):
    spec = load_spec(write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: go}
        """))
    ledger = Ledger(tmp_path / "l.db")
    batch_id = run_batch(spec, ledger=ledger).batch_id
    ledger.claim_batch(batch_id)
    with ledger.write() as conn:  # as if another, live process had claimed it
        conn.execute("UPDATE batches SET pid=? WHERE id=?", (os.getppid(), batch_id))
    with pytest.raises(UsageError, match="still running"):
        loopkit.resume(batch_id, ledger=Ledger(tmp_path / "l.db"))
    assert ledger.one("SELECT COUNT(*) AS n FROM batches WHERE kind='resume'")["n"] == 0


def test_calls_paid_in_an_iteration_the_budget_then_stopped_count_in_the_run_cost(write_spec, fake_llm, tmp_path):
    fake_llm.responder = lambda body: Reply("echo", prompt_tokens=10, completion_tokens=10)
    # the worker call fits the per-case cap, the judge call after it cannot
    spec = fake_spec(write_spec, fake_llm, cases=1, max_tokens=50, extra="budget: {usd: 0.00016}")
    text = spec.read_text().replace(
        'checkers: [{name: echo, type: regex, pattern: "^echo"}]',
        'checkers: [{name: echo, type: regex, pattern: "^echo"}, {name: review, type: judge, rubric: "fine?"}]')
    spec.write_text(text)
    ledger = Ledger(tmp_path / "l.db")
    run_batch(load_spec(tmp_path / "spec.yaml"), ledger=ledger)
    run = ledger.one("SELECT * FROM runs")
    paid = ledger.one("SELECT SUM(cost_usd) AS s, COUNT(*) AS n FROM calls WHERE run_id=?", (run["id"],))
    assert run["stop_reason"] == "budget_usd" and paid["n"] == 1 and paid["s"] > 0
    assert run["cost_usd"] == pytest.approx(paid["s"])
    assert ledger.batch(run["batch_id"])["cost_usd"] == pytest.approx(paid["s"])


def test_ctrl_c_before_any_case_ran_is_exit_130_and_says_nothing_was_recorded(write_spec, cli, monkeypatch, tmp_path):
    """Ctrl-C while the batch still checks its cases and models (litellm loading, say): no batch row, one line."""
    from loopkit.batch import Batch

    write_spec('model: {id: loopkit/scripted, replies: ["42"]}\ntask: {prompt: go}\ninputs: [{id: a}]\n'
               'checkers: [{name: c, type: equals, expected: "42"}]\n')

    def interrupted(self: Batch) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(Batch, "prepare", interrupted)
    done = cli("run", "spec.yaml")
    assert done.returncode == 130
    assert done.stderr.strip().splitlines()[-1] == "interrupted before any case ran; nothing was recorded"
    assert "Traceback" not in done.stderr
    assert Ledger(tmp_path / "ledger.db").query("SELECT id FROM batches") == []
