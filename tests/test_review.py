"""Human review and audits through the real litellm path on the fake server (SPEC.md §1, §3 review)."""

from __future__ import annotations

import json

from fake_llm import Reply

REVIEWED = """
model: {{id: openai/test-model, api_base: "{base}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
task:
  prompt: "Filing status for {{{{ case.name }}}}?"
  feedback: "Reviewer: {{{{ feedback }}}}"
inputs: [{{id: kim, name: Kim}}]
checkers: [{{name: status, type: equals, expected: married_joint}}]
stop: {{max_iterations: 3}}
escalate:
  - when: {{failed: status}}
    human: "Unusual household: confirm the filing status."
"""


def answer_from_feedback(body: dict) -> str:
    """The model follows a reviewer's words when they arrive, and guesses before."""
    last = body["messages"][-1]["content"]
    return "married_joint" if last.startswith("Reviewer:") and "married" in last else "single"


def test_a_parked_run_is_listed_resumed_with_feedback_and_passes_on_the_server(cli, write_spec, fake_llm):
    fake_llm.responder = answer_from_feedback
    done = cli("run", str(write_spec(REVIEWED.format(base=fake_llm.base_url))), "--json")
    (run,) = json.loads(done.stdout)["runs"]
    assert (run["status"], run["stop_reason"], fake_llm.count) == ("needs_review", "human", 1)

    (queued,) = json.loads(cli("review", "--json").stdout)
    assert queued["id"] == run["id"] and queued["last_output"] == "single" and queued["failed_checks"] == ["status"]
    assert queued["message"] == "Unusual household: confirm the filing status." and queued["cost_usd"] > 0

    decided = cli("review", run["id"][:7], "--feedback", "they are married, file jointly", "--reviewer", "sam", "--json")
    assert json.loads(decided.stdout)["status"] == "passed"
    assert fake_llm.count == 2
    assert fake_llm.requests[1]["messages"][-1]["content"] == "Reviewer: they are married, file jointly"
    detail = json.loads(cli("show", run["id"], "--json").stdout)
    assert [i["output"] for i in detail["iterations"]] == ["single", "married_joint"]
    assert [e["kind"] for e in detail["events"]] == ["escalation", "review"]
    assert detail["events"][1]["detail"]["reviewer"] == "sam" and detail["events"][1]["created_at"]


AUDITED = """
model: {{id: openai/test-model, api_base: "{base}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
task: {{prompt: "What is the tax? Explain."}}
checkers:
  - {{name: exact, type: contains, expected: "4640"}}
  - {{name: honest, type: contains, expected: "standard deduction", audit: true}}
"""


def test_an_audit_failure_is_flagged_while_the_reward_passes(cli, write_spec, fake_llm):
    fake_llm.default = Reply("The tax is 4640.")  # the right number, no reasoning: the audit catches it
    done = cli("run", str(write_spec(AUDITED.format(base=fake_llm.base_url))))
    assert done.returncode == 0
    assert "possible reward hacking: passed `exact`, failed audit `honest`" in done.stdout
    (suspect,) = json.loads(cli("runs", "--suspect", "--json").stdout)
    assert suspect["status"] == "passed" and suspect["reward"] == 1.0
    shown = cli("show", suspect["id"]).stdout
    assert "possible reward hacking" in shown and "honest (audit)" in shown
