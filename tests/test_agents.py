"""An outside agent program as the worker (SPEC.md §5 `worker:`): its calls metered through loopkit's
endpoint against the fake provider, capped by the budgets, and the program itself killed, kept from the
provider's key and judged by the checkers even when it fails.

The agents here are small stdlib scripts written per test; each reaches the model only through the
OPENAI_BASE_URL / OPENAI_API_KEY loopkit gives it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from fake_llm import FakeLLM, Reply
from loopkit.agents.http import Server
from loopkit.agents.metering import Meter, MeterContext
from loopkit.agents.worker import agents_root
from loopkit.budget import BatchPool, CaseBudget
from loopkit.engine import BatchBudgetRefused, run_case
from loopkit.inputs import Case
from loopkit.models import ModelPool
from loopkit.redact import MASK, scrub
from loopkit.spec import Budget, ModelRef, load_spec

ROOT = Path(__file__).resolve().parent.parent
PER_TOKEN_IN, PER_TOKEN_OUT = 1e-3, 2e-3  # the fake model's price: $1,000 / $2,000 per million tokens

# What every test agent starts with: the case, and one chat completion through loopkit's endpoint.
PRELUDE = '''
import json, os, subprocess, sys, time, urllib.error, urllib.request
CASE = json.loads(os.environ["LOOPKIT_CASE"])

def post(body):
    request = urllib.request.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
                                              "Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=60)

def ask(text, **extra):
    with post({"model": "whatever-the-agent-likes", "messages": [{"role": "user", "content": text}], **extra}) as r:
        return json.load(r)["choices"][0]["message"]["content"]
'''


def model_yaml(fake: FakeLLM, max_tokens: int = 20) -> str:
    return (f"{{id: openai/agent-model, api_base: '{fake.base_url}', params: {{max_tokens: {max_tokens}}}, "
            f"price: {{input_per_mtok: {PER_TOKEN_IN * 1e6:g}, output_per_mtok: {PER_TOKEN_OUT * 1e6:g}}}}}")


def write_agent(tmp_path: Path, body: str, *, model: str, worker: str = "", checkers: str = "[]", extra: str = "",
                name: str = "agent.py") -> Path:
    """A spec whose worker runs `body` (after PRELUDE) as a Python script; returns the spec's path."""
    (tmp_path / name).write_text(PRELUDE + body)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
model: {model}
task: {{prompt: "Do the task.", feedback: "RETRY: {{{{ feedback }}}}"}}
worker: {{type: command, run: "{sys.executable} {{{{ spec_dir }}}}/{name} {{{{ task_file }}}}"{worker}}}
checkers: {checkers}
{extra}
""")
    return spec


def run(spec_path: Path, recorder, case: dict | None = None, budget: CaseBudget | None = None, spec=None):
    spec = spec or load_spec(spec_path)
    return asyncio.run(run_case(spec, Case("c1", case or {}), clients=ModelPool().client, recorder=recorder,
                                budget=budget or CaseBudget(spec.budget)))


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# --- metering ------------------------------------------------------------------------------


def test_each_request_of_the_agent_is_a_call_with_role_agent_and_the_providers_usage_and_cost(fake_llm, tmp_path, recorder):
    fake_llm.queue(Reply("alpha", prompt_tokens=12, completion_tokens=3), Reply("beta", prompt_tokens=20, completion_tokens=4))
    spec = write_agent(tmp_path, 'print(ask("first"), ask("second"))', model=model_yaml(fake_llm),
                       checkers="[{name: both, type: contains, expected: alpha beta}]")
    result = run(spec, recorder)
    assert (result.status, result.output.strip()) == ("passed", "alpha beta")
    calls = recorder.calls
    assert [(c.role, c.model, c.prompt_tokens, c.completion_tokens) for c in calls] == [
        ("agent", "openai/agent-model", 12, 3), ("agent", "openai/agent-model", 20, 4)]
    assert [c.cost_usd for c in calls] == pytest.approx([12e-3 + 6e-3, 20e-3 + 8e-3])
    assert result.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    assert recorder.iterations[0].cost_usd == pytest.approx(result.cost_usd)
    # forwarded to the spec's model, whatever model the agent named, with the spec's max_tokens
    assert [r["model"] for r in fake_llm.requests] == ["agent-model", "agent-model"]
    assert fake_llm.requests[0]["messages"] == [{"role": "user", "content": "first"}]
    assert fake_llm.requests[0]["max_tokens"] == 20


def test_a_streamed_request_is_relayed_chunk_by_chunk_and_metered_from_the_streams_usage(fake_llm, tmp_path, recorder):
    fake_llm.queue(Reply("a streamed answer", prompt_tokens=9, completion_tokens=5, chunks=3))
    seen = tmp_path / "seen.json"
    body = '''
pieces, usage = [], None
with post({"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True,
           "stream_options": {"include_usage": True}}) as response:
    assert response.headers["Content-Type"] == "text/event-stream"
    for line in response:
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        pieces += [c["delta"]["content"] for c in chunk["choices"] if c["delta"].get("content")]
        usage = chunk.get("usage") or usage
json.dump({"pieces": pieces, "usage": usage}, open(CASE["seen"], "w"))
print("".join(pieces))
'''
    result = run(write_agent(tmp_path, body, model=model_yaml(fake_llm)), recorder, {"seen": str(seen)})
    assert result.output.strip() == "a streamed answer"
    agent_saw = json.loads(seen.read_text())
    assert len(agent_saw["pieces"]) == 3  # as the provider sent them, not gathered into one
    assert (agent_saw["usage"]["prompt_tokens"], agent_saw["usage"]["completion_tokens"]) == (9, 5)
    assert fake_llm.requests[0]["stream"] is True  # the provider was streamed too
    (call,) = recorder.calls
    assert (call.role, call.prompt_tokens, call.completion_tokens, call.response) == ("agent", 9, 5, "a streamed answer")
    assert call.cost_usd == pytest.approx(9e-3 + 10e-3)


def test_the_scripted_model_answers_an_agent_offline_and_streams_its_answer_as_one_chunk(tmp_path, recorder):
    body = '''
with post({"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True}) as response:
    events = [line.decode().strip() for line in response if line.strip()]
print(events[-1], json.loads(events[0][6:])["choices"][0]["delta"]["content"])
'''
    model = "{id: loopkit/scripted, price: {input_per_mtok: 1, output_per_mtok: 1}, replies: ['answer {{ iteration }}']}"
    result = run(write_agent(tmp_path, body, model=model), recorder)
    assert result.output.strip() == "data: [DONE] answer 1"
    assert [(c.role, c.response) for c in recorder.calls] == [("agent", "answer 1")]


# --- budgets -------------------------------------------------------------------------------

KEEPS_CALLING = '''
n = 0
while True:
    try:
        ask(f"call {n}")
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
        sys.exit(1)
    n += 1
'''


@pytest.mark.parametrize("cap", ["case", "batch"])
def test_an_agent_that_keeps_calling_is_stopped_by_the_budget_and_spends_no_more_than_the_cap(fake_llm, tmp_path, recorder, cap):
    fake_llm.default = Reply("more", prompt_tokens=10, completion_tokens=5)  # $0.02 a call; its worst case about $0.05
    extra = "budget: {usd: 0.1}" if cap == "case" else ""
    spec = load_spec(write_agent(tmp_path, KEEPS_CALLING, model=model_yaml(fake_llm), extra=extra))
    pool = BatchPool(cap=0.09 if cap == "batch" else None)
    result = run(spec.path, recorder, budget=CaseBudget(spec.budget, pool), spec=spec)
    assert (result.status, result.stop_reason) == ("failed", "budget_usd" if cap == "case" else "budget_total_usd")
    spent = sum(c.cost_usd for c in recorder.calls)
    assert spent <= (0.1 if cap == "case" else 0.09)
    assert len(recorder.calls) >= 2 and all(c.role == "agent" and c.error is None for c in recorder.calls)
    assert fake_llm.count == len(recorder.calls)  # the refused request never reached the provider
    assert [e.kind for e in recorder.events] == ["budget_stop"]
    assert result.cost_usd == pytest.approx(spent)
    assert recorder.iterations == []  # the stop ends the run in the middle of its iteration: no checking of half a job


def test_an_agent_whose_first_request_the_batch_budget_refuses_leaves_no_run_and_no_folder(fake_llm, tmp_path, recorder):
    spec = load_spec(write_agent(tmp_path, KEEPS_CALLING, model=model_yaml(fake_llm)))
    budget = CaseBudget(spec.budget, BatchPool(cap=0.01))  # below one call's worst case (about $0.05)
    with pytest.raises(BatchBudgetRefused):
        asyncio.run(run_case(spec, Case("c1", {}), clients=ModelPool().client, recorder=recorder, budget=budget, run_id="r1"))
    assert (recorder.started, recorder.calls, fake_llm.count) == ([], [], 0)
    assert not (agents_root() / "r1").exists()


# --- the endpoint itself -------------------------------------------------------------------


def _post(url: str, body: dict, token: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def _serve(fake: FakeLLM, budget: Budget, *requests: tuple[dict, str]) -> tuple[Meter, list[tuple[int, dict, dict]]]:
    """Serve one Meter and send it `requests` (body, token) in order, from a thread as an agent would."""
    ref = ModelRef.model_validate({"id": "openai/agent-model", "api_base": fake.base_url, "params": {"max_tokens": 20},
                                   "price": {"input_per_mtok": 1000, "output_per_mtok": 2000}})
    tally = SimpleNamespace(calls=[], events=[], cost=0.0, prompt_tokens=0, completion_tokens=0, latency_ms=0.0)

    async def main() -> tuple[Meter, list]:
        meter = Meter(MeterContext(ModelPool().client(ref), ref, dict(ref.params), CaseBudget(budget), tally, 1, {}, "t", 0), "sk-loopkit-token")
        server = await Server(meter.handle).start()
        url = f"http://127.0.0.1:{server.port}/v1"
        try:
            return meter, [await asyncio.to_thread(_post, url, body, token) for body, token in requests]
        finally:
            await server.close()

    return asyncio.run(main())


def test_the_endpoint_wants_the_runs_token_and_passes_on_only_chat_parameters(fake_llm):
    hello = [{"role": "user", "content": "hello"}]
    sneaky = {"messages": hello, "temperature": 0.25, "max_tokens": 5000, "api_base": "http://127.0.0.1:9/v1",
              "api_key": "sk-stolen-elsewhere-000", "mock_response": "not from the provider"}
    _, answers = _serve(fake_llm, Budget(), ({"messages": hello}, "sk-wrong"), (sneaky, "sk-loopkit-token"))
    (denied, _, error), (ok, _, reply) = answers
    assert denied == 401 and error["error"]["type"] == "authentication_error"
    assert ok == 200 and reply["choices"][0]["message"]["content"] == "ok"  # the provider's answer, not the mock
    (sent,) = fake_llm.requests  # the 401 never reached it; the other reached it and nothing else
    assert (sent["temperature"], sent["max_tokens"]) == (0.25, 20)  # the spec's max_tokens caps what the agent asks
    assert "mock_response" not in sent and "api_key" not in sent


def test_a_provider_error_reaches_the_agent_as_an_error_and_is_recorded_at_no_cost(fake_llm):
    fake_llm.queue(Reply("no such model here", status=404))
    stream = {"messages": [{"role": "user", "content": "hello"}], "stream": True}
    meter, [(status, _, body)] = _serve(fake_llm, Budget(usd=1), (stream, "sk-loopkit-token"))
    assert status == 502 and "no such model here" in body["error"]["message"]
    (call,) = meter.ctx.tally.calls
    assert (call.role, call.response, call.cost_usd) == ("agent", None, 0.0) and "no such model here" in call.error
    assert meter.ctx.budget.spent_usd == 0.0 and meter.stop is None  # not billed, and the agent may go on


def test_a_request_that_could_cross_a_cap_is_refused_with_an_error_saying_the_budget_is_spent(fake_llm):
    hello = {"messages": [{"role": "user", "content": "hello"}]}
    meter, answers = _serve(fake_llm, Budget(usd=0.01), (hello, "sk-loopkit-token"), (hello, "sk-loopkit-token"))
    for status, headers, body in answers:  # the worst case of one call (about $0.05) does not fit in $0.01
        assert status == 429 and headers["x-should-retry"] == "false"
        assert body["error"]["type"] == body["error"]["code"] == "insufficient_quota"
        assert "budget is spent" in body["error"]["message"] and "budget_usd" in body["error"]["message"]
    assert meter.stop is not None and meter.stop.reason == "budget_usd"
    assert fake_llm.count == 0


# --- the program: failures, timeouts, Ctrl-C, its folder, its environment -------------------


@pytest.mark.parametrize("body, what", [
    ('print("half done"); print("boom", file=sys.stderr); sys.exit(3)', "exited with code 3"),
    ("pass", "printed nothing"),
])
def test_an_agent_that_fails_is_an_iteration_whose_error_the_checkers_judge(tmp_path, recorder, body, what):
    seen = tmp_path / "checker-saw.txt"
    model = "{id: loopkit/scripted, price: {input_per_mtok: 1, output_per_mtok: 1}, replies: [x]}"
    checkers = f"[{{name: done, type: contains, expected: DONE}}, {{name: saw, type: command, run: 'cat > {seen}'}}]"
    result = run(write_agent(tmp_path, body, model=model, checkers=checkers, extra="stop: {max_iterations: 2}"), recorder)
    assert (result.status, result.stop_reason, result.iterations) == ("failed", "max_iterations", 2)  # not a crash, not error
    first = recorder.iterations[0]
    assert first.output.startswith("[loopkit] the agent did not finish") and what in first.output
    assert seen.read_text() == recorder.iterations[1].output  # the checkers judged the error text
    assert "done: the answer must contain 'DONE'" in first.feedback
    assert [e.kind for e in recorder.events] == ["agent_error", "agent_error"]
    if "code 3" in what:
        assert "half done" in first.output and "boom" in first.output
        assert (recorder.events[0].detail["exit_code"], recorder.events[0].detail["stderr"]) == (3, "boom")


def test_an_agent_past_its_timeout_is_killed_with_everything_it_started(tmp_path, recorder):
    pids = tmp_path / "pids.json"
    body = '''
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
child = subprocess.Popen(sleeper)
escapee = subprocess.Popen(sleeper, start_new_session=True)  # left the process group
json.dump([os.getpid(), child.pid, escapee.pid], open(CASE["pids"], "w"))
print("partial work", flush=True)
time.sleep(600)
'''
    model = "{id: loopkit/scripted, price: {input_per_mtok: 1, output_per_mtok: 1}, replies: [x]}"
    spec = write_agent(tmp_path, body, model=model, worker=", timeout: 2", checkers="[{name: done, type: contains, expected: DONE}]")
    result = run(spec, recorder, {"pids": str(pids)})
    assert (result.status, result.stop_reason) == ("failed", "max_iterations")
    output = recorder.iterations[0].output
    assert "ran past its 2s timeout and was killed" in output and "partial work" in output
    assert not [pid for pid in json.loads(pids.read_text()) if alive(pid)]


def test_ctrl_c_kills_the_agent_and_records_its_call_in_flight_at_its_worst_case(fake_llm, tmp_path, recorder):
    pids = tmp_path / "pids.json"
    body = '''
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
json.dump([os.getpid(), child.pid], open(CASE["pids"], "w"))
ask("this call is in flight when Ctrl-C comes")
'''
    spec = load_spec(write_agent(tmp_path, body, model=model_yaml(fake_llm), extra="budget: {usd: 1}"))
    arrived, release = threading.Event(), threading.Event()

    def hold(body: dict) -> Reply:
        arrived.set()
        release.wait(30)
        return Reply("too late")

    fake_llm.responder = hold

    async def main() -> None:
        task = asyncio.ensure_future(run_case(spec, Case("c1", {"pids": str(pids)}), clients=ModelPool().client,
                                              recorder=recorder, budget=CaseBudget(spec.budget)))
        await asyncio.to_thread(arrived.wait, 30)
        task.cancel()  # what the batch does on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert not [pid for pid in json.loads(pids.read_text()) if alive(pid)]
    assert recorder.results[-1].status == "interrupted"
    (call,) = recorder.calls
    assert call.role == "agent" and call.error.startswith("cut off in flight") and call.cost_usd > 0  # its reserved worst case
    assert recorder.results[-1].cost_usd == pytest.approx(call.cost_usd)
    assert (agents_root() / recorder.started[0].id / "work").is_dir()  # kept: a resume continues there
    import shutil

    shutil.rmtree(agents_root() / recorder.started[0].id)


def test_iterations_share_a_copy_of_the_folder_and_the_answer_file_is_read_afresh_each_time(tmp_path, recorder):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "count.txt").write_text("0")
    log = tmp_path / "log.jsonl"
    body = '''
n = int(open("count.txt").read()) + 1
open("count.txt", "w").write(str(n))
with open(CASE["log"], "a") as fh:
    fh.write(json.dumps({"count": n, "cwd": os.getcwd(), "workdir": os.environ["LOOPKIT_WORKDIR"]}) + "\\n")
if os.environ["LOOPKIT_ITERATION"] == "1":
    open("answer.txt", "w").write(f"count {n}")
'''
    model = "{id: loopkit/scripted, price: {input_per_mtok: 1, output_per_mtok: 1}, replies: [x]}"
    spec = write_agent(tmp_path, body, model=model, worker=", workdir: {copy: repo}, output: {file: answer.txt}",
                       checkers="[{name: never, type: contains, expected: never}]", extra="stop: {max_iterations: 2}")
    run(spec, recorder, {"log": str(log)})
    first, second = [json.loads(line) for line in log.read_text().splitlines()]
    assert (first["count"], second["count"]) == (1, 2)  # the second iteration continued in the first one's folder
    assert first["cwd"] == second["cwd"] == first["workdir"]
    assert [i.output for i in recorder.iterations][0] == "count 1"
    assert "wrote no answer.txt" in recorder.iterations[1].output  # not the first iteration's answer again
    assert (tmp_path / "repo" / "count.txt").read_text() == "0"  # a copy was worked on, not the folder itself
    assert not Path(first["workdir"]).exists()  # removed once the run ended


def test_the_agent_never_sees_a_provider_key_only_the_runs_token(fake_llm, tmp_path, recorder, monkeypatch):
    secrets = {"OPENAI_API_KEY": "sk-provider-real-key-0123456789", "ANTHROPIC_API_KEY": "sk-ant-real-key-0123456789",
               "FAKE_PROVIDER_KEY": "the-spec-models-own-key-42", "GITHUB_TOKEN": "ghp_notforagents0123456789"}
    for name, value in {**secrets, "SEARCH_SERVICE_TOKEN": "passed-on-by-env-list-7"}.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "env.json"
    body = 'json.dump(dict(os.environ), open(CASE["env"], "w")); print(ask("hi"))'
    model = model_yaml(fake_llm).replace("params:", "api_key_env: FAKE_PROVIDER_KEY, params:")
    result = run(write_agent(tmp_path, body, model=model, worker=", env: [SEARCH_SERVICE_TOKEN]"), recorder, {"env": str(dump)})
    env = json.loads(dump.read_text())
    assert not [name for name, value in env.items() if value in secrets.values()]
    assert env["OPENAI_API_KEY"].startswith("sk-loopkit-") and env["OPENAI_API_KEY"] not in secrets.values()
    assert env["OPENAI_BASE_URL"] == env["OPENAI_API_BASE"] and env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:")
    assert env["SEARCH_SERVICE_TOKEN"] == "passed-on-by-env-list-7"  # named in `env:`, so passed on
    assert "127.0.0.1" in env["NO_PROXY"].split(",")  # a proxy the user has set must not carry the local calls
    assert result.output.strip() == "ok" and len(recorder.calls) == 1  # through the endpoint
    assert scrub(f"token {env['OPENAI_API_KEY']}") == f"token {MASK}"  # printed by an agent, the ledger hides it


# --- the spec ------------------------------------------------------------------------------


def test_check_refuses_case_data_in_the_command_a_missing_folder_and_a_models_key(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("""
model: {id: anthropic/claude-3-5-haiku-latest, price: {input_per_mtok: 1, output_per_mtok: 1}}
task: {prompt: fix it}
worker:
  type: command
  run: my-agent --task {{ task_file }} --about {{ case.title }}
  workdir: {copy: no-such-folder}
  env: [ANTHROPIC_API_KEY, SEARCH_API_KEY]
""")
    done = cli("check", str(tmp_path / "bad.yaml"))
    assert done.returncode == 2
    problems = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(problems) == 3, done.stderr
    assert "worker.run: bad template: `case` is not defined here" in problems[0]
    assert "worker.workdir.copy: found 'no-such-folder'" in problems[1]
    assert "worker.env.0: found 'ANTHROPIC_API_KEY', which holds a model's key" in problems[2]


# --- the shipped loop ----------------------------------------------------------------------


def test_the_agent_fix_code_loop_fixes_its_repository_through_the_metered_endpoint(fake_llm, recorder):
    spec_path = ROOT / "loops" / "agent-fix-code.yaml"
    scripted = load_spec(spec_path)
    buggy, fixed = scripted.model.replies
    fake_llm.queue(Reply(buggy, prompt_tokens=300, completion_tokens=60), Reply(fixed, prompt_tokens=700, completion_tokens=80))
    spec = scripted.with_model(ModelRef(id="openai/gpt-4o-mini", api_base=fake_llm.base_url))
    source = (ROOT / "loops" / "agent-fix-code" / "repo" / "median.py").read_text()
    result = run(spec_path, recorder, {"report": "median is wrong"}, spec=spec)
    assert (result.status, result.iterations) == ("passed", 2)  # "changed median.py" twice is no plateau: the tests decide
    assert [(c.role, c.prompt_tokens, c.completion_tokens) for c in recorder.calls] == [("agent", 300, 60), ("agent", 700, 80)]
    assert result.cost_usd == pytest.approx((1000 * 0.15 + 140 * 0.60) / 1e6)  # gpt-4o-mini's price
    first, second = recorder.iterations
    assert "FAILED" in first.feedback and first.checks[0].passed is False and second.checks[0].passed is True
    assert "Your last change did not pass the tests" in fake_llm.requests[1]["messages"][1]["content"]  # the feedback reached it
    assert (ROOT / "loops" / "agent-fix-code" / "repo" / "median.py").read_text() == source  # its copy was fixed, not the fixture
