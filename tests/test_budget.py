"""Hard caps: checked before every call from the worst case, never crossed (SPEC.md §1 budget)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from fake_llm import Reply
from loopkit.budget import BatchPool, BudgetStop, CaseBudget, Prompt, worst_case_call, worst_case_tokens
from loopkit.prices import TokenPrice
from loopkit.spec import Budget

PRICE = TokenPrice(1e-6, 2e-6)


def test_the_worst_case_pads_the_prompt_and_counts_all_of_max_tokens():
    assert worst_case_tokens(100, 50) == (118, 50)


def test_a_call_that_could_cross_the_case_cap_is_refused_before_it_is_made():
    async def scenario() -> None:
        budget = CaseBudget(Budget(usd=0.0005))
        r = await budget.reserve(PRICE, 100, 100)  # worst case 118*1e-6 + 100*2e-6 = 0.000318
        budget.settle(r, 0.0002, 150)
        with pytest.raises(BudgetStop) as stop:
            await budget.reserve(PRICE, 100, 100)
        assert stop.value.reason == "budget_usd"

    asyncio.run(scenario())


def test_token_and_seconds_caps():
    with pytest.raises(BudgetStop, match="tokens") as stop:
        asyncio.run(CaseBudget(Budget(tokens=100)).reserve(None, 50, 60))
    assert stop.value.reason == "budget_tokens"
    with pytest.raises(BudgetStop) as stop:
        asyncio.run(CaseBudget(Budget(seconds=1), elapsed_before=2).reserve(None, 1, 1))
    assert stop.value.reason == "budget_seconds"


class CountedPrompt:
    """A Prompt whose exact count records that it was taken."""

    def __init__(self, bound: int, exact: int) -> None:
        self.taken = 0

        def count() -> int:
            self.taken += 1
            return exact
        self.prompt = Prompt(bound, count)


def test_a_bound_that_fits_is_reserved_without_counting_and_the_count_is_taken_when_it_does_not():
    async def scenario() -> None:
        far = CountedPrompt(4_000, 1_000)
        budget = CaseBudget(Budget(usd=1.0))
        reserved = await budget.reserve(PRICE, far.prompt, 100)
        assert far.taken == 0 and reserved.usd == worst_case_call(PRICE, 4_000, 100).usd
        budget.settle(reserved, 0.001, 1_100)
        exact_usd = worst_case_call(PRICE, 1_000, 100).usd
        assert exact_usd is not None
        near = CountedPrompt(4_000, 1_000)
        tight = CaseBudget(Budget(usd=exact_usd))
        assert (await tight.reserve(PRICE, near.prompt, 100)).usd == exact_usd and near.taken == 1

    asyncio.run(scenario())


def test_a_bound_refused_by_a_stale_view_of_the_batch_pool_is_retried_with_the_exact_count():
    class StalePool(BatchPool):
        """A Ray worker's view: the room it saw last, while other workers spent most of it."""

        @property
        def remaining(self) -> float | None:
            return 1.0

    async def scenario() -> None:
        exact_usd = worst_case_call(PRICE, 1_000, 100).usd
        assert exact_usd is not None
        pool = StalePool(cap=exact_usd)
        prompt = CountedPrompt(4_000, 1_000)
        assert (await CaseBudget(Budget(), pool).reserve(PRICE, prompt.prompt, 100)).usd == exact_usd
        assert prompt.taken == 1 and pool.reserved == exact_usd

    asyncio.run(scenario())


def test_the_batch_pool_waits_for_calls_in_flight_to_settle_before_it_refuses():
    async def scenario() -> None:
        pool = BatchPool(cap=1.0)
        assert await pool.reserve(0.6)
        second = asyncio.ensure_future(pool.reserve(0.6))  # fits once the first call's unspent part comes back
        await asyncio.sleep(0)
        assert not second.done()
        pool.settle(0.6, 0.1)
        assert await second and pool.spent == pytest.approx(0.1) and pool.reserved == pytest.approx(0.6)
        pool.settle(0.6, 0.5)
        assert not await pool.reserve(0.6)  # 0.6 spent: waiting cannot make room, spend never goes down
        assert pool.refused == 1

    asyncio.run(scenario())


def test_waiting_for_room_in_the_batch_budget_ends_at_the_case_deadline():
    async def scenario() -> None:
        pool = BatchPool(cap=1.0)
        assert await pool.reserve(0.9)
        with pytest.raises(BudgetStop) as stop:
            await CaseBudget(Budget(seconds=0.05), pool).reserve(TokenPrice(1e-3, 1e-3), 100, 100)
        assert stop.value.reason == "budget_seconds" and pool.reserved == pytest.approx(0.9)

    asyncio.run(scenario())


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


# --- every entry point validates a cap before its first call -----------------------------------------

UNCAPPED = """
model: {{id: openai/x, api_base: "{base}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
task: {{prompt: go}}
"""


def test_run_max_usd_on_a_spec_without_max_tokens_is_refused_before_any_call(cli, write_spec, fake_llm):
    fake_llm.default = Reply("ok", completion_tokens=100_000)  # what an uncapped reply may cost
    done = cli("run", str(write_spec(UNCAPPED.format(base=fake_llm.base_url))), "--max-usd", "0.01")
    assert done.returncode == 2, done.stdout
    assert "model: a batch budget (--max-usd) is set, so openai/x needs `max_tokens`" in done.stderr
    assert fake_llm.count == 0


def test_ab_max_usd_checks_prices_and_max_tokens_as_run_does(cli, write_spec, fake_llm):
    a = write_spec(UNCAPPED.format(base=fake_llm.base_url), name="a.yaml")
    b = write_spec(f"""
        model: {{id: openai/unpriced, api_base: "{fake_llm.base_url}"}}
        params: {{max_tokens: 10}}
        task: {{prompt: go}}
        """, name="b.yaml")
    done = cli("ab", str(a), str(b), "--max-usd", "1")
    assert done.returncode == 2
    assert "openai/x needs `max_tokens`" in done.stderr
    assert fake_llm.count == 0
    done = cli("ab", str(b), str(b), "--max-usd", "1")
    assert done.returncode == 2 and "the price of openai/unpriced is unknown" in done.stderr
    assert fake_llm.count == 0


# --- the batch pool refuses only what truly cannot fit -------------------------------------------------

CHEAP_CASES = """
model: {{id: openai/x, api_base: "{base}", price: {{input_per_mtok: 100, output_per_mtok: 100}}}}
params: {{max_tokens: {max_tokens}}}
task: {{prompt: "case {{{{ case.id }}}}"}}
inputs: cases.jsonl
"""


def _cases(n: int) -> str:
    return "".join(f'{{"id": {i}}}\n' for i in range(n))


def test_reservations_in_flight_do_not_refuse_cases_that_fit_the_batch_budget(cli, write_spec, fake_llm):
    # each call reserves ~$0.1 (1,000 tokens of reply at $100/M) and costs ~$0.0006: 40 of them fit $1 easily
    fake_llm.default = Reply("ok", completion_tokens=1)
    spec = write_spec(CHEAP_CASES.format(base=fake_llm.base_url, max_tokens=1000), cases__jsonl=_cases(40))
    done = cli("run", str(spec), "--max-usd", "1", "--concurrency", "40", "--json")
    report = json.loads(done.stdout)
    assert (done.returncode, report["not_run_budget"], len(report["runs"])) == (0, 0, 40)
    assert report["cost_usd"] < 0.05


def _billed_at_worst_case(max_tokens: int):
    """A responder whose every reply is billed exactly its call's worst case (so a cap's arithmetic is exact)."""
    from loopkit.models import count_tokens
    from loopkit.spec import ModelRef

    ref = ModelRef(id="openai/gpt-4o-mini")

    def reply(body: dict) -> Reply:
        prompt, completion = worst_case_tokens(count_tokens(ref, body["messages"]), max_tokens)
        return Reply("ok", prompt_tokens=prompt, completion_tokens=completion)

    return ref, reply


def test_a_batch_budget_that_fits_three_cases_runs_three_and_never_records_more_than_the_cap(cli, write_spec, fake_llm, tmp_path):
    from loopkit import Ledger
    from loopkit.models import count_tokens

    ref, fake_llm.responder = _billed_at_worst_case(20)
    one_case = TokenPrice(100e-6, 100e-6).cost(*worst_case_tokens(count_tokens(ref, [{"role": "user", "content": "case 0"}]), 20))
    spec = write_spec(CHEAP_CASES.format(base=fake_llm.base_url, max_tokens=20), cases__jsonl=_cases(8))
    done = cli("run", str(spec), "--max-usd", repr(3 * one_case + 1e-12), "--concurrency", "8", "--json")
    report = json.loads(done.stdout)
    assert (done.returncode, len(report["runs"]), report["not_run_budget"]) == (3, 3, 5)
    (spent,) = Ledger(tmp_path / "ledger.db").query("SELECT SUM(cost_usd) AS s FROM calls")
    assert spent["s"] <= 3 * one_case + 1e-12 and fake_llm.count == 3


# --- the per-case `seconds` budget is a wall-clock cap -------------------------------------------------

TIMED = """
model: {{id: openai/x, api_base: "{base}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 20}}
task: {{prompt: "What is 6 x 7?"}}
checkers: [{{name: answer, type: equals, expected: "42"}}]
budget: {{seconds: 1}}
"""


def _only_run(cli, done) -> dict:  # noqa: ANN001
    (run,) = json.loads(done.stdout)["runs"]
    return json.loads(cli("show", run["id"], "--calls", "--json").stdout) | {"summary": run}


def test_a_slow_model_is_cut_at_the_deadline_not_retried_past_it(cli, write_spec, fake_llm):
    fake_llm.default = Reply("42", latency=3)  # each attempt would take 3 s
    done = cli("run", str(write_spec(TIMED.format(base=fake_llm.base_url))), "--json")
    run = _only_run(cli, done)["summary"]
    assert (run["status"], run["stop_reason"]) == ("failed", "budget_seconds")
    assert fake_llm.count == 1  # one attempt, cut at 1 s; not six timed-out attempts ending in `error`


def test_a_retry_after_longer_than_the_time_left_ends_the_case_at_the_deadline(cli, write_spec, fake_llm):
    fake_llm.queue(Reply(status=429, retry_after=5), "42")
    done = cli("run", str(write_spec(TIMED.format(base=fake_llm.base_url))), "--json")
    detail = _only_run(cli, done)
    assert (detail["summary"]["status"], detail["summary"]["stop_reason"]) == ("failed", "budget_seconds")
    assert fake_llm.count == 1  # the back-off sleep was cut at the deadline: no second attempt
    (stop,) = [e for e in detail["events"] if e["kind"] == "budget_stop"]
    assert stop["detail"]["reason"] == "budget_seconds"


def test_a_command_checker_is_stopped_at_the_case_deadline(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["42"]}
        task: {prompt: go}
        checkers: [{name: slow, type: command, run: "sleep 30", timeout: 60}]
        budget: {seconds: 1}
        """)
    (run,) = json.loads(cli("run", str(spec), "--json").stdout)["runs"]
    assert (run["status"], run["stop_reason"]) == ("failed", "budget_seconds")


# --- the worst case `check` prints is the real one ---------------------------------------------------

EXPENSIVE_LADDER = """
model: {{id: openai/cheap, api_base: "{base}", price: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}}}
params: {{max_tokens: 200}}
task: {{prompt: "Explain why 6 x 7 is 42, in detail.", feedback: "Not yet: {{{{ feedback }}}}"}}
checkers:
  - {{name: answer, type: contains, expected: "forty-two"}}
  - {{name: style, type: judge, rubric: "Is it clear?", model: {{id: openai/judge, api_base: "{base}",
      price: {{input_per_mtok: 3, output_per_mtok: 15}}, params: {{max_tokens: 100}}}}}}
stop: {{max_iterations: 4}}
escalate:
  - when: {{iterations: 1}}
    model: {{id: openai/strong, api_base: "{base}", price: {{input_per_mtok: 5, output_per_mtok: 15}}}}
"""


def test_checks_worst_case_covers_what_a_run_of_the_ladder_with_a_judge_really_costs(cli, write_spec, fake_llm, tmp_path):
    from loopkit import Ledger

    def verbose(body: dict) -> Reply:  # every reply as long as max_tokens allows, and always failing
        if body["model"] == "judge":
            return Reply('{"score": 0.2, "reason": "' + "unclear " * 40 + '"}', completion_tokens=100)
        return Reply(f"Try {len(body['messages'])}: the answer is 41. " * 40, completion_tokens=200)  # never repeated

    fake_llm.responder = verbose
    spec = write_spec(EXPENSIVE_LADDER.format(base=fake_llm.base_url))
    cli("run", str(spec))
    (actual,) = Ledger(tmp_path / "ledger.db").query(
        "SELECT SUM(cost_usd) AS usd, SUM(prompt_tokens + completion_tokens) AS tokens, COUNT(*) AS calls FROM calls")
    assert actual["calls"] == 8  # 4 iterations: worker + judge each
    (checked,) = json.loads(cli("check", str(spec), "--json").stdout)["specs"]
    assert checked["worst_case_usd_per_case"] >= actual["usd"] and checked["worst_case_tokens_per_case"] >= actual["tokens"]


def test_check_never_imports_litellm(write_spec):
    spec = write_spec(EXPENSIVE_LADDER.format(base="http://127.0.0.1:9/v1"))
    code = ("import sys\nfrom loopkit.cli import main\n"
            f"sys.argv = ['loopkit', 'check', {str(spec)!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "assert 'litellm' not in sys.modules, 'imported litellm'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_check_prints_why_a_worst_case_has_no_figure(cli, write_spec):
    spec = write_spec("""
        model: {id: openai/mine, api_base: "http://127.0.0.1:9/v1"}
        task: {prompt: go}
        """)
    done = cli("check", str(spec))
    assert done.returncode == 0 and "unbounded: no `max_tokens` for openai/mine" in done.stdout


# --- a provider billing above the reservation stops the case and the batch -----------------------------

OVERRUN = """
model: {{id: openai/x, api_base: "{base}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 20}}
task: {{prompt: "case {{{{ case.id }}}}"}}
inputs: cases.jsonl
checkers: [{{name: answer, type: equals, expected: "42"}}]
budget: {{usd: 1}}
"""


def test_a_provider_billing_above_max_tokens_stops_the_case_and_the_batch_at_once(cli, write_spec, fake_llm):
    fake_llm.default = Reply("41", completion_tokens=5000)  # ignores max_tokens: 20
    spec = write_spec(OVERRUN.format(base=fake_llm.base_url), cases__jsonl=_cases(5))
    done = cli("run", str(spec), "--concurrency", "1", "--json")
    report = json.loads(done.stdout)
    assert fake_llm.count == 1  # no further call after the overrun: neither this case's next try nor another case
    assert (done.returncode, len(report["runs"]), report["not_run_budget"]) == (3, 1, 4)
    (run,) = report["runs"]
    assert (run["status"], run["stop_reason"]) == ("failed", "budget_usd")
    (stop,) = [e for e in json.loads(cli("show", run["id"], "--json").stdout)["events"] if e["kind"] == "budget_stop"]
    assert stop["detail"]["overrun"]["billed_tokens"] > stop["detail"]["overrun"]["reserved_tokens"]
    assert stop["detail"]["overrun"]["billed_usd"] > stop["detail"]["overrun"]["reserved_usd"]


# --- unknown models ------------------------------------------------------------------------------------


def test_an_unknown_model_fails_check_and_run_before_any_call(cli, write_spec):
    spec = write_spec("""
        model: gpt-4o-mimi
        task: {prompt: go}
        """)
    checked = cli("check", str(spec))
    assert checked.returncode == 2 and "litellm does not know the model gpt-4o-mimi (did you mean `gpt-4o-mini`?)" in checked.stderr
    done = cli("run", str(spec))
    assert done.returncode == 2 and "gpt-4o-mimi" in done.stderr


def test_a_model_the_table_does_not_know_under_a_known_provider_is_a_warning(cli, write_spec):
    spec = write_spec("""
        model: openai/gpt-9-preview
        task: {prompt: go}
        """)
    done = cli("check", str(spec), "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["ok"]
    assert "does not know openai/gpt-9-preview" in report["warnings"][0]


# --- review feedback stays inside the batch budget -----------------------------------------------------

PARKED = """
model: {{id: openai/gpt-4o-mini, api_base: "{base}"}}
params: {{max_tokens: 20}}
task: {{prompt: "go"}}
checkers: [{{name: answer, type: equals, expected: "42"}}]
escalate: [{{when: {{iterations: 1}}, human: "check it"}}]
budget: {{total_usd: {cap!r}}}
"""


def test_review_feedback_is_held_to_the_batch_total_usd(cli, write_spec, fake_llm):
    from loopkit.models import count_tokens
    from loopkit.prices import known_price

    ref, fake_llm.responder = _billed_at_worst_case(20)
    first = known_price(ref).cost(*worst_case_tokens(count_tokens(ref, [{"role": "user", "content": "go"}]), 20))
    spec = write_spec(PARKED.format(base=fake_llm.base_url, cap=1.5 * first))  # room for the first call, not a second
    (run,) = json.loads(cli("run", str(spec), "--json").stdout)["runs"]
    assert run["status"] == "needs_review" and fake_llm.count == 1
    done = cli("review", run["id"], "--feedback", "try 42", "--json")
    assert json.loads(done.stdout)["stop_reason"] == "budget_total_usd"
    assert fake_llm.count == 1


def test_a_case_is_capped_by_its_usd_or_tokens_or_the_batch_total_but_not_by_seconds_alone():
    assert not CaseBudget(Budget()).capped
    assert not CaseBudget(Budget(seconds=5)).capped
    assert CaseBudget(Budget(usd=1.0)).capped
    assert CaseBudget(Budget(tokens=100)).capped
    assert CaseBudget(Budget(), BatchPool(cap=2.0)).capped
