"""Tools inside an iteration (SPEC.md §5): the worker model calls tools over several steps; every model
call is budgeted, cached and recorded, every tool call is a `tool_calls` row, and checkers see them.

The model is litellm against the fake OpenAI server (tests/fake_llm.py), which answers with
`tool_calls` when a `Reply` carries them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from fake_llm import FakeLLM, Reply
from loopkit.spec.schema import CommandTool
from loopkit.tools.command import CommandLineTool
from loopkit.tools.python import function_schema, parse_docstring

KEY = "test-key-not-secret"

TOOLS_PY = '''
import pathlib


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    pathlib.Path("ran.log").open("a").write(f"add {a} {b}\\n")
    return a + b


def broken(x: int) -> str:
    """Always fails."""
    raise ValueError("the rate table is missing")
'''


def spec_text(base_url: str, *, tools: str = "[{name: add, type: python, function: tools.py:add}]", extra: str = "",
              checkers: str = '[{name: answer, type: equals, expected: "42"}]') -> str:
    return f"""\
version: 1
name: tooling
model: {{id: openai/test-model, api_base: "{base_url}", api_key_env: TEST_KEY,
         price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 50}}
task: {{prompt: "What is 17 + 25? Use the add tool."}}
tools: {tools}
checkers: {checkers}
{extra}"""


def add_then_answer(body: dict) -> Reply:
    """Call add(17, 25) first; once a tool result is in the conversation, answer with it."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return Reply(content=last["content"])
    return Reply(tool_calls=[{"name": "add", "arguments": {"a": 17, "b": 25}}])


@pytest.fixture
def run_spec(tmp_path: Path, cli):
    (tmp_path / "tools.py").write_text(TOOLS_PY)

    def run(text: str, *args: str) -> tuple[int, dict]:
        (tmp_path / "spec.yaml").write_text(text)
        done = cli("run", "spec.yaml", "--json", *args, env={"TEST_KEY": KEY})
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    return run


def rows(tmp_path: Path, sql: str, *args: object) -> list[dict]:
    conn = sqlite3.connect(tmp_path / "ledger.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


# --- schemas --------------------------------------------------------------------------------------


def test_a_python_tool_schema_comes_from_its_type_hints_and_docstring():
    def bracket(income: float, status: str = "single") -> dict:
        """The tax bracket of an income.

        Args:
            income: yearly income in USD
            status: filing status,
                single or married
        """
        return {}

    schema = function_schema("bracket", bracket).openai()["function"]
    assert schema["description"] == "The tax bracket of an income."
    assert schema["parameters"]["required"] == ["income"]
    assert schema["parameters"]["properties"]["income"] == {"type": "number", "description": "yearly income in USD"}
    assert schema["parameters"]["properties"]["status"]["description"] == "filing status, single or married"


def test_sphinx_style_parameters_are_read_too():
    assert parse_docstring("Look a rate up.\n\n:param code: the currency code\n:returns: the rate") == (
        "Look a rate up.", {"code": "the currency code"})


# --- the tool loop --------------------------------------------------------------------------------


def test_a_two_step_tool_loop_answers_with_what_the_tool_returned(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.responder = add_then_answer
    code, report = run_spec(spec_text(fake_llm.base_url))
    assert code == 0 and report["passed"] == 1
    first, second = fake_llm.requests
    offered = first["tools"][0]["function"]
    assert offered["name"] == "add" and offered["description"] == "Add two integers."
    assert offered["parameters"]["properties"]["a"] == {"type": "integer", "description": "the first number"}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "42"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "add"
    [tool] = rows(tmp_path, "SELECT * FROM tool_calls")
    calls = rows(tmp_path, "SELECT id, tool_calls FROM calls ORDER BY created_at, rowid")
    assert (tool["iteration"], tool["step"], tool["tool"], json.loads(tool["arguments"]), tool["result"], tool["error"]) == (
        1, 1, "add", {"a": 17, "b": 25}, "42", None)
    assert tool["call_id"] == calls[0]["id"] and json.loads(calls[0]["tool_calls"])[0]["id"] == "call_1_0"
    assert len(calls) == 2 and calls[1]["tool_calls"] is None
    assert (tmp_path / "ran.log").read_text() == "add 17 25\n"


def test_a_tool_that_raises_tells_the_model_and_the_run_goes_on(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.queue(Reply(tool_calls=[{"name": "broken", "arguments": {"x": 1}}]), "42")
    code, report = run_spec(spec_text(fake_llm.base_url, tools="[{name: broken, type: python, function: tools.py:broken}]"))
    assert code == 0 and report["passed"] == 1
    told = fake_llm.requests[1]["messages"][-1]
    assert told["role"] == "tool" and told["content"] == "error: ValueError: the rate table is missing"
    [tool] = rows(tmp_path, "SELECT tool, result, error FROM tool_calls")
    assert tool == {"tool": "broken", "result": None, "error": "ValueError: the rate table is missing"}


def test_a_tool_result_or_error_with_a_lone_surrogate_is_kept_escaped_and_the_run_goes_on(fake_llm: FakeLLM, run_spec,
                                                                                          tmp_path: Path):
    """A tool's text can hold what no ledger row can store (a lone surrogate, e.g. from a JSON API)."""
    (tmp_path / "odd.py").write_text('def odd(x: int) -> str:\n    """Odd."""\n    if x:\n        raise ValueError("bad \\udc80")\n'
                                     '    return "4\\udc802"\n')
    fake_llm.queue(Reply(tool_calls=[{"name": "odd", "arguments": {"x": 0}}, {"name": "odd", "arguments": {"x": 1}}]), "42")
    code, report = run_spec(spec_text(fake_llm.base_url, tools="[{name: odd, type: python, function: odd.py:odd}]"))
    assert code == 0 and report["passed"] == 1, (report["error_kinds"], report["runs"])
    assert rows(tmp_path, "SELECT result, error FROM tool_calls ORDER BY rowid") == [
        {"result": "4\\udc802", "error": None}, {"result": None, "error": "ValueError: bad \\udc80"}]


def test_bad_arguments_and_unknown_tools_are_errors_the_model_reads(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.queue(Reply(tool_calls=[{"name": "add", "arguments": {"a": "many", "b": 2}}, {"name": "mul", "arguments": "{}"},
                                     {"name": "add", "arguments": "{not json"}]), "42")
    run_spec(spec_text(fake_llm.base_url))
    errors = [r["error"] for r in rows(tmp_path, "SELECT error FROM tool_calls ORDER BY id")]
    assert errors[0].startswith("invalid arguments: a: Input should be a valid integer")
    assert errors[1] == "there is no tool named 'mul'; the tools are: add"
    assert errors[2].startswith("the arguments are not valid JSON")
    assert not (tmp_path / "ran.log").exists()  # add never ran on arguments that did not validate
    assert [m["role"] for m in fake_llm.requests[1]["messages"][-3:]] == ["tool", "tool", "tool"]


def test_max_steps_ends_the_iteration_with_the_last_reply_and_runs_no_more_tools(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.default = Reply(content="still working", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    code, report = run_spec(spec_text(fake_llm.base_url, extra="agent: {max_steps: 2}\nstop: {max_iterations: 1}\n"))
    assert report["runs"][0]["stop_reason"] == "max_iterations"
    assert fake_llm.count == 3  # two tool rounds, then the reply that still asks for one is the answer
    assert [r["step"] for r in rows(tmp_path, "SELECT step FROM tool_calls ORDER BY id")] == [1, 2]
    [event] = rows(tmp_path, "SELECT detail FROM events WHERE kind = 'max_steps'")
    assert json.loads(event["detail"]) == {"iteration": 1, "max_steps": 2, "not_run": ["add"]}
    assert rows(tmp_path, "SELECT output FROM iterations") == [{"output": "still working"}]


def test_a_budget_stop_between_tool_steps_keeps_spend_under_the_cap(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.default = Reply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    cap = 0.0012  # each step's worst case is ~$0.0003-0.0004 and grows with the conversation: a few steps fit, not ten
    code, report = run_spec(spec_text(fake_llm.base_url, extra=f"budget: {{usd: {cap}}}\nagent: {{max_steps: 30}}\n"))
    [run] = report["runs"]
    assert run["stop_reason"] == "budget_usd" and run["status"] == "failed"
    calls = rows(tmp_path, "SELECT cost_usd FROM calls")
    assert 2 <= len(calls) < 31 and len(calls) == fake_llm.count
    assert sum(c["cost_usd"] for c in calls) <= cap
    assert run["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in calls))
    # every reply that asked for a tool got it run before the next step was refused
    assert len(rows(tmp_path, "SELECT id FROM tool_calls")) == len(calls)
    assert rows(tmp_path, "SELECT kind FROM events") == [{"kind": "budget_stop"}]


def test_replay_runs_the_tools_again_and_answers_every_model_call_from_the_record(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.responder = add_then_answer
    _, first = run_spec(spec_text(fake_llm.base_url))
    asked = fake_llm.count
    code, replay = run_spec(spec_text(fake_llm.base_url), "--replay", first["batch_id"])
    assert code == 0 and replay["passed"] == 1
    assert fake_llm.count == asked == 2  # no model call reached the server
    assert (tmp_path / "ran.log").read_text() == "add 17 25\n" * 2  # the tool did run again
    replayed = rows(tmp_path, "SELECT c.cached, c.cost_usd FROM calls c JOIN runs r ON r.id = c.run_id WHERE r.batch_id = ?",
                    replay["batch_id"])
    assert replayed == [{"cached": 1, "cost_usd": 0.0}] * 2
    assert len(rows(tmp_path, "SELECT id FROM tool_calls")) == 2


def test_checkers_see_the_tool_calls_python_as_an_argument_and_the_judge_in_its_prompt(fake_llm: FakeLLM, run_spec,
                                                                                       tmp_path: Path):
    (tmp_path / "audit.py").write_text(
        "def used_add(output, case, tool_calls):\n"
        "    return any(t['tool'] == 'add' and t['result'] == output for t in tool_calls)\n")

    def respond(body: dict) -> Reply:
        if body["messages"][0]["content"].startswith("You are a strict, fair grader"):
            return Reply(content='{"score": 1, "reason": "used the tool"}')
        return add_then_answer(body)

    fake_llm.responder = respond
    checkers = ('[{name: answer, type: equals, expected: "42"}, {name: used_add, type: python, function: audit.py:used_add, '
                'audit: true}, {name: review, type: judge, rubric: "Did it add with the tool?"}]')
    code, report = run_spec(spec_text(fake_llm.base_url, checkers=checkers))
    assert code == 0 and report["passed"] == 1
    assert rows(tmp_path, "SELECT checker, passed FROM checks WHERE checker = 'used_add'") == [{"checker": "used_add", "passed": 1}]
    judge = fake_llm.requests[-1]["messages"][1]["content"]
    assert 'The tool calls the model made before answering, in order:\n1. (step 1) add({"a": 17, "b": 25}) ->\n42' in judge
    assert "tools" not in fake_llm.requests[-1]  # a judge is offered no tools


def test_show_lists_the_tool_calls_between_the_model_calls(fake_llm: FakeLLM, run_spec, cli):
    fake_llm.responder = add_then_answer
    _, report = run_spec(spec_text(fake_llm.base_url))
    shown = cli("show", report["runs"][0]["id"]).stdout
    lines = [line.strip() for line in shown.splitlines() if line.strip().startswith(("call ", "tool "))]
    assert [line.split(" ")[0] for line in lines] == ["call", "tool", "call"]
    assert lines[1].startswith('tool add({"a": 17, "b": 25}) → 42')
    as_json = json.loads(cli("show", report["runs"][0]["id"], "--json").stdout)
    assert [t["tool"] for t in as_json["tool_calls"]] == ["add"]
    full = [line.strip() for line in cli("show", report["runs"][0]["id"], "--calls").stdout.splitlines()]
    # --calls: the second call's messages include the assistant's tool call and the tool's result
    assert '[assistant]  → add({"a": 17, "b": 25})' in full and "[tool] 42" in full
    assert full.index('[assistant]  → add({"a": 17, "b": 25})') < full.index("[tool] 42") < full.index("[response] 42")


# --- command tools --------------------------------------------------------------------------------


def test_a_command_tool_gets_its_arguments_on_stdin_and_in_variables_never_in_the_command_line(tmp_path: Path):
    config = CommandTool(name="echo", type="command", run='cat; echo; echo "$LOOPKIT_ARG_PATH"',
                         parameters={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    tool = CommandLineTool(config, tmp_path)
    hostile = "x; touch pwned $(touch pwned2)"
    out = asyncio.run(tool.call({"path": hostile}))
    assert out == json.dumps({"path": hostile}) + "\n" + hostile + "\n"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_a_command_tool_that_fails_or_gets_bad_arguments_is_an_error_for_the_model(tmp_path: Path):
    from loopkit.tools.base import ToolFailure

    tool = CommandLineTool(CommandTool(name="t", type="command", run="echo nope; exit 3",
                                       parameters={"type": "object", "properties": {"n": {"type": "integer"}}}), tmp_path)
    with pytest.raises(ToolFailure, match="exited 3:\nnope"):
        asyncio.run(tool.call({"n": 1}))
    with pytest.raises(ToolFailure, match="invalid arguments: n: 'one' is not of type 'integer'"):
        asyncio.run(tool.call({"n": "one"}))


def test_a_command_tool_sees_no_provider_key(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-tools-000000000000")
    tool = CommandLineTool(CommandTool(name="env", type="command", run="env"), tmp_path)
    assert "sk-not-for-tools" not in asyncio.run(tool.call({}))


def test_a_command_tool_past_its_timeout_is_killed_and_reported(fake_llm: FakeLLM, run_spec, tmp_path: Path):
    fake_llm.queue(Reply(tool_calls=[{"name": "hang", "arguments": {}}]), "42")
    tools = '[{name: hang, type: command, run: "sleep 30", timeout: 0.2}]'
    code, report = run_spec(spec_text(fake_llm.base_url, tools=tools))
    assert code == 0
    assert rows(tmp_path, "SELECT error FROM tool_calls") == [{"error": "timed out after 0.2s"}]


# --- check ----------------------------------------------------------------------------------------


def test_check_refuses_tools_for_a_model_litellm_says_cannot_call_them(tmp_path: Path, cli):
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "spec.yaml").write_text(
        "version: 1\nname: t\nmodel: {id: deepseek/deepseek-reasoner, params: {max_tokens: 50}}\n"
        "task: {prompt: hi}\ntools: [{name: add, type: python, function: tools.py:add}]\n"
        "escalate: [{when: {iterations: 1}, model: gpt-3.5-turbo-instruct}]\n")
    done = cli("check", "spec.yaml")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "model: the spec has `tools:`, but litellm's model table says deepseek/deepseek-reasoner cannot call tools" in errors[0]
    assert "escalate.0.model" in errors[1] and "gpt-3.5-turbo-instruct is a `completion` model" in errors[1]
    # a model that can, or one the table does not know (a server of your own), is fine
    (tmp_path / "spec.yaml").write_text((tmp_path / "spec.yaml").read_text().replace("deepseek/deepseek-reasoner", "openai/gpt-4o-mini")
                                        .replace("gpt-3.5-turbo-instruct", "{id: openai/my-model, api_base: 'http://127.0.0.1:1'}"))
    assert cli("check", "spec.yaml").returncode == 0


def test_check_finds_a_python_tool_whose_file_lacks_the_function(tmp_path: Path, cli):
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "spec.yaml").write_text("version: 1\nname: t\nmodel: {id: loopkit/scripted, replies: [x]}\ntask: {prompt: hi}\n"
                                        "tools: [{name: add, type: python, function: tools.py:ad}]\n")
    done = cli("check", "spec.yaml")
    assert done.returncode == 2
    assert "tools.0.function: found 'tools.py:ad', but tools.py defines no `ad`; did you mean `add`?" in done.stderr


# --- the shipped example --------------------------------------------------------------------------


def test_the_tests_before_claims_example_flags_a_pass_claimed_without_running_the_tests(cli, tmp_path: Path):
    spec = Path(__file__).resolve().parent.parent / "loops" / "tests-before-claims.yaml"
    done = cli("run", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    runs = {r["case_id"]: r for r in json.loads(done.stdout)["runs"]}
    assert {c: (r["status"], r["iterations"]) for c, r in runs.items()} == {"calculator": ("passed", 1), "slugify": ("passed", 2)}
    # calculator: PASS is right, but no test ran: the audit fails and the run is suspect
    suspect = json.loads(cli("runs", "--suspect", "--json").stdout)
    assert [r["case_id"] for r in suspect] == ["calculator"]
    audits = rows(tmp_path, "SELECT r.case_id, k.iteration, k.passed, k.feedback FROM checks k JOIN runs r ON r.id = k.run_id "
                            "WHERE k.checker = 'ran_tests_first' ORDER BY r.case_id, k.iteration")
    assert [(a["case_id"], a["iteration"], a["passed"]) for a in audits] == [("calculator", 1, 0), ("slugify", 1, 0), ("slugify", 2, 1)]
    # slugify: on iteration 2 the model ran the tests (they failed) before it answered FAIL
    [tool] = rows(tmp_path, "SELECT t.iteration, t.tool, t.arguments, t.error FROM tool_calls t JOIN runs r ON r.id = t.run_id")
    assert (tool["iteration"], tool["tool"], json.loads(tool["arguments"])) == (2, "run_tests", {"project": "slugify"})
    assert "exited 1" in tool["error"] and "FAILED (failures=1)" in tool["error"]


def test_check_refuses_tools_beside_an_outside_agent_worker(tmp_path: Path, cli):
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "spec.yaml").write_text("version: 1\nname: t\nmodel: {id: loopkit/scripted, replies: [x]}\ntask: {prompt: hi}\n"
                                        "tools: [{name: add, type: python, function: tools.py:add}]\n"
                                        "worker: {type: command, run: 'echo hi'}\n")
    done = cli("check", "spec.yaml")
    assert done.returncode == 2
    assert "tools: `tools:` are offered to the worker model, but `worker:` makes an outside agent the worker" in done.stderr
