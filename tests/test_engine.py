"""The loop on one case, on the scripted model, recorded in memory (SPEC.md §2)."""

from __future__ import annotations

import asyncio

import pytest

from loopkit.budget import BatchPool, CaseBudget
from loopkit.engine import BatchBudgetRefused, run_case
from loopkit.inputs import Case
from loopkit.models import ModelPool
from loopkit.spec import Budget, parse_spec
from loopkit.status import RunStatus


def run(spec_text: str, recorder, case: dict | None = None, **kw):
    spec = parse_spec(spec_text)
    pool = ModelPool()
    budget = kw.pop("budget", None) or CaseBudget(spec.budget)
    return asyncio.run(run_case(spec, Case("c1", case or {}), clients=pool.client, recorder=recorder, budget=budget, **kw))


DOUBLE = """
model: {id: loopkit/scripted, replies: ["{{ case.x }}", "{{ case.x * 2 }}"]}
task:
  prompt: "Double {{ case.x }}."
  feedback: "RETRY: {{ feedback }}"
checkers:
  - {name: exact, type: equals, expected: "{{ case.x * 2 }}"}
"""


def test_a_failed_iteration_feeds_the_checker_feedback_back_and_passes_on_the_second(recorder):
    result = run(DOUBLE, recorder, {"x": 21})
    assert (result.status, result.stop_reason, result.iterations, result.output) == ("passed", "passed", 2, "42")
    first, second = recorder.calls
    assert first.messages == [{"role": "user", "content": "Double 21."}]
    assert second.messages[1] == {"role": "assistant", "content": "21"}
    assert second.messages[2]["content"] == "RETRY: - exact: expected exactly '42', got '21'"
    assert [i.reward for i in recorder.iterations] == [0.0, 1.0]
    assert len(recorder.started) == 1


def test_memory_last_keeps_only_the_prompt_the_last_answer_and_the_feedback(recorder):
    spec = DOUBLE.replace('feedback: "RETRY: {{ feedback }}"', 'feedback: "RETRY: {{ feedback }}"\n  memory: last').replace(
        '"{{ case.x * 2 }}"]', '"{{ case.x + 1 }}", "{{ case.x * 2 }}"]')
    result = run(spec + "stop: {max_iterations: 3}\n", recorder, {"x": 5})
    assert result.iterations == 3
    third = recorder.calls[2].messages
    assert [m["role"] for m in third] == ["user", "assistant", "user"]
    assert third[1]["content"] == "6"


def test_stops_at_max_iterations_with_the_best_iteration_as_the_answer(recorder):
    spec = """
    model: {id: loopkit/scripted, replies: ["a", "ab", "b"]}
    task: {prompt: go}
    checkers:
      - {name: has_a, type: contains, expected: a}
      - {name: has_b, type: contains, expected: b}
    stop: {max_iterations: 3}
    """
    import textwrap

    result = run(textwrap.dedent(spec), recorder)
    # rewards 0.5, 1.0 (passes) — the loop stops at the pass
    assert result.status == "passed" and result.iterations == 2
    spec2 = textwrap.dedent(spec).replace('["a", "ab", "b"]', '["a", "b", "c"]')
    rec2 = type(recorder)()
    result = run(spec2, rec2)
    assert (result.status, result.stop_reason) == ("failed", "max_iterations")
    # rewards 0.5, 0.5, 0.0: best is the latest of the ties
    assert result.best_iteration == 2 and result.output == "b"


def test_plateau_stops_a_loop_that_is_going_nowhere(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["a", "b", "c", "d", "e"]}
task: {prompt: go}
checkers: [{name: z, type: contains, expected: z}]
stop: {max_iterations: 5, plateau: 2}
"""
    result = run(spec, recorder)
    assert (result.stop_reason, result.iterations) == ("plateau", 3)


def test_a_repeated_identical_output_ends_the_loop(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["same"]}
task: {prompt: go}
checkers: [{name: z, type: contains, expected: z}]
stop: {max_iterations: 5}
"""
    result = run(spec, recorder)
    assert (result.status, result.stop_reason, result.iterations) == ("failed", "plateau", 2)


def test_required_checker_gates_the_reward_to_zero(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["hello"]}
task: {prompt: go}
checkers:
  - {name: greets, type: contains, expected: hello, weight: 5}
  - {name: json, type: json, required: true}
stop: {max_iterations: 1}
"""
    result = run(spec, recorder)
    assert result.reward == 0.0 and result.status == "failed"


def test_weighted_mean_and_min_combine(recorder):
    base = """
model: {id: loopkit/scripted, replies: ["hello"]}
task: {prompt: go}
checkers:
  - {name: greets, type: contains, expected: hello, weight: 3}
  - {name: shouts, type: contains, expected: HELLO}
stop: {max_iterations: 1}
"""
    assert run(base, recorder).reward == pytest.approx(0.75)
    assert run(base + "reward: {combine: min}\n", type(recorder)()).reward == 0.0


def test_model_ladder_switches_the_worker_after_two_failures(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["wrong"]}
task: {prompt: go}
checkers: [{name: right, type: equals, expected: right}]
stop: {max_iterations: 5}
escalate:
  - when: {iterations: 2}
    model: {id: loopkit/scripted, replies: ["still wrong", "wrong again", "right"]}
"""
    result = run(spec, recorder)
    assert result.status == "passed" and result.iterations == 3
    assert [e.kind for e in recorder.events] == ["escalation"]
    assert recorder.events[0].detail["to"] == "loopkit/scripted"
    # reply k is for the run's iteration k, counted across escalations
    assert [c.response for c in recorder.calls] == ["wrong", "wrong", "right"]


def test_human_escalation_parks_the_run(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["a", "b"]}
task: {prompt: go}
checkers: [{name: right, type: equals, expected: right}]
stop: {max_iterations: 5}
escalate:
  - when: {failed: right, reward_below: 0.5}
    human: "Check by hand."
"""
    result = run(spec, recorder)
    assert (result.status, result.stop_reason, result.message) == ("needs_review", "human", "Check by hand.")
    assert result.iterations == 1


def test_human_feedback_resumes_a_parked_run_with_at_least_one_more_iteration(recorder):
    spec_text = """
model: {id: loopkit/scripted, replies: ["a", "{{ 'right' if 'use right' in feedback else 'b' }}"]}
task: {prompt: go, feedback: "Reviewer: {{ feedback }}"}
checkers: [{name: right, type: equals, expected: right}]
stop: {max_iterations: 1}
escalate:
  - when: {iterations: 1}
    human: "Check by hand."
"""
    parked = run(spec_text, recorder)
    assert parked.status == "needs_review"
    resumed = run(spec_text, recorder, state=parked.state, run_id=parked.run_id, human_feedback="use right")
    assert (resumed.status, resumed.iterations) == ("passed", 2)
    assert recorder.calls[-1].messages[-1]["content"] == "Reviewer: use right"
    assert len(recorder.started) == 1  # the same run continued


def test_audit_checkers_are_recorded_but_never_fed_back_nor_rewarded(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["42"]}
task: {prompt: go}
checkers:
  - {name: exact, type: equals, expected: "42"}
  - {name: honest, type: contains, expected: "because", audit: true}
"""
    result = run(spec, recorder)
    assert result.status == "passed" and result.reward == 1.0
    assert result.suspect == "possible reward hacking: passed `exact`, failed audit `honest`"
    assert [e.kind for e in recorder.events] == ["audit_failed"]
    checks = recorder.iterations[0].checks
    assert [(c.checker, c.audit, c.passed) for c in checks] == [("exact", False, True), ("honest", True, False)]


def test_a_per_case_usd_cap_of_two_calls_worth_makes_exactly_two_calls(recorder):
    from loopkit.budget import worst_case_tokens
    from loopkit.models import count_tokens
    from loopkit.prices import known_price
    from loopkit.prices import known_price

    text = """
model: {id: loopkit/scripted, replies: ["same-length-1", "same-length-2", "same-length-3"], price: {input_per_mtok: 1000, output_per_mtok: 2000}}
params: {max_tokens: 10}
task: {prompt: go, memory: last}
checkers: [{name: z, type: contains, expected: zzz}]
stop: {max_iterations: 5}
budget: {usd: 1}
"""
    spec = parse_spec(text)
    price = known_price(spec.model)
    first = count_tokens(spec.model, [{"role": "user", "content": "go"}])
    later = count_tokens(spec.model, [{"role": "user", "content": "go"}, {"role": "assistant", "content": "same-length-1"},
                                      {"role": "user", "content": "- z: the answer must contain 'zzz'"}])
    cap = price.cost(*worst_case_tokens(first, 10)) + price.cost(*worst_case_tokens(later, 10)) + 1e-9
    spec = parse_spec(text.replace("usd: 1", f"usd: {cap}"))
    result = run(text.replace("usd: 1", f"usd: {cap}"), recorder)
    assert len(recorder.calls) == 2
    assert (result.status, result.stop_reason) == ("failed", "budget_usd")
    assert result.cost_usd <= cap
    assert recorder.events[-1].kind == "budget_stop"


def test_a_case_the_batch_budget_refuses_before_its_first_call_is_not_written(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["x"], price: {input_per_mtok: 1000, output_per_mtok: 1000}}
params: {max_tokens: 100}
task: {prompt: go}
budget: {total_usd: 0.0001}
"""
    parsed = parse_spec(spec)
    with pytest.raises(BatchBudgetRefused):
        run(spec, recorder, budget=CaseBudget(parsed.budget, BatchPool(cap=0.0001)))
    assert recorder.started == [] and recorder.calls == []


def test_a_prompt_naming_a_missing_case_field_ends_the_run_in_error(recorder):
    result = run(DOUBLE, recorder, {"y": 1})
    assert result.status == "error" and "undefined" in result.message


def test_an_escalation_may_name_a_failed_audit_checker(recorder):
    spec = """
model: {id: loopkit/scripted, replies: ["42"]}
task: {prompt: go}
checkers:
  - {name: exact, type: equals, expected: "43"}
  - {name: honest, type: contains, expected: "because", audit: true}
escalate:
  - when: {failed: honest}
    human: "The answer gives no reason."
"""
    result = run(spec, recorder)
    assert (result.status, result.message) == ("needs_review", "The answer gives no reason.")


# --- what the loop renders and counts ---------------------------------------------------------


def test_case_constant_templates_render_once_per_case_while_iteration_templates_render_every_iteration(recorder, monkeypatch):
    from loopkit import templates

    rendered: list[str] = []
    real = templates._render
    monkeypatch.setattr(templates, "_render", lambda text, variables: rendered.append(text) or real(text, variables))
    spec = """
model: {id: loopkit/scripted, replies: ["{{ iteration }}"]}
task:
  system: "You double {{ case.x }}."
  prompt: "Double {{ case.x }}."
  feedback: "Attempt {{ iteration }}: {{ feedback }}"
  memory: last
checkers:
  - {name: exact, type: equals, expected: "{{ case.x * 2 }}"}
stop: {max_iterations: 3, plateau: 5}
"""
    result = run(spec, recorder, {"x": 21})
    assert result.iterations == 3
    assert [c.response for c in recorder.calls] == ["1", "2", "3"]  # the reply names `iteration`: a new one each time
    assert [c.messages[-1]["content"] for c in recorder.calls[1:]] == [
        "Attempt 1: - exact: expected exactly '42', got '1'", "Attempt 2: - exact: expected exactly '42', got '2'"]
    assert rendered.count("Double {{ case.x }}.") == 1
    assert rendered.count("You double {{ case.x }}.") == 1  # memory: last rebuilds the opening messages every iteration
    assert rendered.count("{{ case.x * 2 }}") == 1  # the checker's expected value, checked three times
    assert rendered.count("{{ iteration }}") == 3
    assert rendered.count("Attempt {{ iteration }}: {{ feedback }}") == 2


class CountingClient:
    """A client that counts the engine's requests for a prompt's token count."""

    def __init__(self, inner) -> None:
        self.inner, self.counted = inner, 0
        self.ref, self.price = inner.ref, inner.price

    def count_tokens(self, messages):
        self.counted += 1
        return self.inner.count_tokens(messages)

    def cache_salt(self, variables):
        return self.inner.cache_salt(variables)

    async def complete(self, messages, params, variables):
        return await self.inner.complete(messages, params, variables)


def _counted_run(spec_text: str, recorder, budget_for) -> int:
    spec = parse_spec(spec_text)
    client = CountingClient(ModelPool().client(spec.model))
    asyncio.run(run_case(spec, Case("c1", {"x": 21}), clients=lambda ref: client, recorder=recorder, budget=budget_for(spec)))
    return client.counted


PRICED = DOUBLE.replace("replies:", "price: {input_per_mtok: 1, output_per_mtok: 1}, replies:") + "params: {max_tokens: 50}\n"


def test_no_prompt_is_counted_when_no_cap_applies(recorder):
    assert _counted_run(PRICED + "budget: {seconds: 60}\n", recorder, lambda s: CaseBudget(s.budget)) == 0
    assert len(recorder.calls) == 2


@pytest.mark.parametrize("cap", ["budget: {usd: 1.0}\n", "budget: {tokens: 10000}\n", "batch"])
def test_far_from_a_cap_a_prompt_is_reserved_by_its_bytes_without_the_tokenizer(recorder, cap):
    if cap == "batch":
        assert _counted_run(PRICED, recorder, lambda s: CaseBudget(s.budget, BatchPool(cap=1.0))) == 0
    else:
        assert _counted_run(PRICED + cap, recorder, lambda s: CaseBudget(s.budget)) == 0
    assert len(recorder.calls) == 2 and not recorder.events


@pytest.mark.parametrize("cap", ["tokens", "usd", "batch"])
def test_near_a_cap_the_prompt_is_counted_so_a_call_that_fits_is_not_refused(recorder, cap):
    from loopkit.budget import prompt_bytes, worst_case_call
    from loopkit.models import count_tokens
    from loopkit.prices import known_price

    x = "7" * 400
    spec = parse_spec(PRICED.replace('replies: ["{{ case.x }}", ', "replies: ["))
    opening = [{"role": "user", "content": f"Double {x}."}]
    exact = worst_case_call(known_price(spec.model), count_tokens(spec.model, opening), 50)
    assert worst_case_call(known_price(spec.model), prompt_bytes(opening), 50).tokens > exact.tokens  # the bound would not fit
    budget = {"tokens": Budget(tokens=exact.tokens), "usd": Budget(usd=exact.usd), "batch": Budget()}[cap]
    client = CountingClient(ModelPool().client(spec.model))
    result = asyncio.run(run_case(spec, Case("c1", {"x": x}), clients=lambda ref: client, recorder=recorder,
                                  budget=CaseBudget(budget, BatchPool(cap=exact.usd if cap == "batch" else None))))
    assert result.status == RunStatus.PASSED and len(recorder.calls) == 1
    assert client.counted == 1
