"""Hard caps: checked before every call from the worst case, never crossed (SPEC.md §1 budget)."""

from __future__ import annotations

import json

import pytest

from fake_llm import Reply
from loopkit.budget import BatchPool, BudgetStop, CaseBudget, worst_case_tokens
from loopkit.prices import TokenPrice
from loopkit.spec import Budget

PRICE = TokenPrice(1e-6, 2e-6)


def test_the_worst_case_pads_the_prompt_and_counts_all_of_max_tokens():
    assert worst_case_tokens(100, 50) == (118, 50)


def test_a_call_that_could_cross_the_case_cap_is_refused_before_it_is_made():
    budget = CaseBudget(Budget(usd=0.0005))
    r = budget.reserve(PRICE, 100, 100)  # worst case 118*1e-6 + 100*2e-6 = 0.000318
    budget.settle(r, 0.0002, 150)
    with pytest.raises(BudgetStop) as stop:
        budget.reserve(PRICE, 100, 100)
    assert stop.value.reason == "budget_usd"


def test_token_and_seconds_caps():
    with pytest.raises(BudgetStop, match="tokens") as stop:
        CaseBudget(Budget(tokens=100)).reserve(None, 50, 60)
    assert stop.value.reason == "budget_tokens"
    with pytest.raises(BudgetStop) as stop:
        CaseBudget(Budget(seconds=1), elapsed_before=2).reserve(None, 1, 1)
    assert stop.value.reason == "budget_seconds"


def test_the_batch_pool_reserves_for_calls_in_flight_and_releases_the_unspent_part():
    pool = BatchPool(cap=1.0)
    assert pool.try_reserve(0.6)
    assert not pool.try_reserve(0.6)  # the first call's worst case is still held
    pool.settle(0.6, 0.1)
    assert pool.try_reserve(0.6) and pool.spent == pytest.approx(0.1)


LADDER = """
model: {{id: openai/cheap-model, api_base: "{base}", price: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}}}
params: {{max_tokens: 20}}
task: {{prompt: "What is 6 x 7?"}}
checkers: [{{name: answer, type: number, expected: "42"}}]
stop: {{max_iterations: 4}}
escalate:
  - when: {{iterations: 2, failed: answer}}
    model: {{id: openai/strong-model, api_base: "{base}", price: {{input_per_mtok: 5, output_per_mtok: 15}}}}
"""


def test_a_ladder_fails_on_the_cheap_model_and_passes_on_the_stronger_one(cli, write_spec, fake_llm):
    fake_llm.responder = lambda body: "42" if body["model"] == "strong-model" else "41"
    done = cli("run", str(write_spec(LADDER.format(base=fake_llm.base_url))), "--json")
    run = json.loads(done.stdout)["runs"][0]
    assert (run["status"], run["iterations"]) == ("passed", 3)
    assert [r["model"] for r in fake_llm.requests] == ["cheap-model", "cheap-model", "strong-model"]
    detail = json.loads(cli("show", run["id"], "--json").stdout)
    assert [i["model"] for i in detail["iterations"]] == ["openai/cheap-model"] * 2 + ["openai/strong-model"]
    (event,) = [e for e in detail["events"] if e["kind"] == "escalation"]
    assert event["detail"] == {"rule": 0, "iteration": 2, "from": "openai/cheap-model", "to": "openai/strong-model"}
    assert "event escalation" in cli("show", run["id"]).stdout


def test_a_per_case_cap_of_two_calls_worth_makes_exactly_two_calls_on_the_server(cli, write_spec, fake_llm):
    from loopkit.models import count_tokens
    from loopkit.spec import ModelRef

    ref = ModelRef(id="openai/gpt-4o-mini")

    def worst_case_reply(body: dict) -> Reply:
        """Each call costs exactly its worst case; a different wrong answer each time, so only the budget stops it."""
        prompt, completion = worst_case_tokens(count_tokens(ref, body["messages"]), 20)
        return Reply(str(41 - len(body["messages"]) // 2), prompt_tokens=prompt, completion_tokens=completion)

    fake_llm.responder = worst_case_reply
    price = TokenPrice(0.15e-6, 0.60e-6)
    m1 = [{"role": "user", "content": "What is 6 x 7?"}]
    m2 = m1 + [{"role": "assistant", "content": "41"}, {"role": "user", "content": "- answer: expected 42, got 41"}]
    two_calls = price.cost(*worst_case_tokens(count_tokens(ref, m1), 20)) + price.cost(*worst_case_tokens(count_tokens(ref, m2), 20))
    spec = write_spec(f"""
        model: {{id: openai/gpt-4o-mini, api_base: "{fake_llm.base_url}"}}
        params: {{max_tokens: 20}}
        task: {{prompt: "What is 6 x 7?"}}
        checkers: [{{name: answer, type: number, expected: "42"}}]
        stop: {{max_iterations: 5}}
        budget: {{usd: {two_calls + 1e-12!r}}}
        """)
    run = json.loads(cli("run", str(spec), "--json").stdout)["runs"][0]
    assert fake_llm.count == 2
    assert (run["status"], run["stop_reason"]) == ("failed", "budget_usd")
    assert run["cost_usd"] <= two_calls


def test_a_budget_without_max_tokens_or_with_an_unknown_price_is_refused_at_load(cli, write_spec):
    spec = write_spec("""
        model: {id: openai/my-local-model, api_base: "http://127.0.0.1:9/v1"}
        task: {prompt: go}
        budget: {usd: 1}
        """)
    done = cli("check", str(spec))
    assert done.returncode == 2
    assert "needs `max_tokens`" in done.stderr and "price of openai/my-local-model is unknown" in done.stderr


def test_max_usd_on_the_command_line_caps_the_batch_and_exits_3(cli, write_spec, fake_llm):
    fake_llm.responder = lambda body: Reply("ok", completion_tokens=20)
    inputs = "".join(f'{{"id": {i}}}\n' for i in range(6))
    spec = write_spec(f"""
        model: {{id: openai/x, api_base: "{fake_llm.base_url}", price: {{input_per_mtok: 100, output_per_mtok: 100}}}}
        params: {{max_tokens: 20}}
        task: {{prompt: "case {{{{ case.id }}}}"}}
        inputs: cases.jsonl
        """, cases__jsonl=inputs)
    done = cli("run", str(spec), "--max-usd", "0.01", "--concurrency", "1", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 3 and report["not_run_budget"] > 0
    assert report["cost_usd"] <= 0.01
    assert len(report["runs"]) + report["not_run_budget"] == 6


def test_a_budget_with_a_model_swapped_in_whose_price_is_unknown_is_refused_before_any_call(cli, write_spec, fake_llm):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        params: {max_tokens: 10}
        task: {prompt: go}
        """)
    done = cli("run", str(spec), "--model", "openai/no-such-model", "--max-usd", "1")
    assert done.returncode == 2 and "price of openai/no-such-model is unknown" in done.stderr
    assert fake_llm.count == 0
