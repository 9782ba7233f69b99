"""Model clients: litellm for real against the local fake server, and the scripted model."""

from __future__ import annotations

import asyncio

import pytest

from fake_llm import Reply
from loopkit.errors import MissingKeyError
from loopkit.models import AdaptiveLimit, LiteLLMClient, ModelCallError, RetryPolicy, ScriptedClient
from loopkit.spec import ModelRef

MESSAGES = [{"role": "user", "content": "Say hi"}]
FAST = RetryPolicy(attempts=6, base_seconds=0.001, max_seconds=0.01)


def client(fake, **ref) -> LiteLLMClient:
    return LiteLLMClient(ModelRef(id=ref.pop("id", "openai/gpt-4o-mini"), api_base=fake.base_url, **ref), retry=FAST)


def complete(c, params=None):
    return asyncio.run(c.complete(MESSAGES, params or {}, {}))


def test_a_call_records_what_the_response_says_tokens_and_litellm_cost(fake_llm):
    fake_llm.queue(Reply("hi there", prompt_tokens=1000, completion_tokens=2000))
    done = complete(client(fake_llm))
    assert (done.text, done.prompt_tokens, done.completion_tokens) == ("hi there", 1000, 2000)
    # gpt-4o-mini from litellm's bundled price map: $0.15 / $0.60 per million tokens
    assert done.cost_usd == pytest.approx(1000 * 0.15e-6 + 2000 * 0.60e-6)
    assert fake_llm.count == 1
    assert fake_llm.requests[0]["messages"] == MESSAGES


def test_a_spec_price_overrides_litellms(fake_llm):
    fake_llm.queue(Reply("ok", prompt_tokens=10, completion_tokens=20))
    done = complete(client(fake_llm, id="openai/my-local-model", price={"input_per_mtok": 1, "output_per_mtok": 2}))
    assert done.cost_usd == pytest.approx(10e-6 + 40e-6)


def test_two_rate_limits_then_success_is_retried_honouring_retry_after(fake_llm):
    fake_llm.queue(Reply(status=429, retry_after=0), Reply(status=429, retry_after=0), Reply("finally"))
    done = complete(client(fake_llm))
    assert done.text == "finally" and fake_llm.count == 3


def test_retry_after_is_read_from_the_error_and_capped():
    from loopkit.models import RETRY_AFTER_CAP, _retry_after

    class Err(Exception):
        litellm_response_headers = {"retry-after": "3600"}

    assert _retry_after(Err()) == RETRY_AFTER_CAP
    Err.litellm_response_headers = {"retry-after": "1.5"}
    assert _retry_after(Err()) == 1.5


def test_server_errors_that_outlast_the_retries_become_a_model_call_error(fake_llm):
    fake_llm.default = Reply(status=500)
    c = LiteLLMClient(ModelRef(id="openai/gpt-4o-mini", api_base=fake_llm.base_url), retry=RetryPolicy(3, 0.001, 0.01))
    with pytest.raises(ModelCallError) as info:
        complete(c)
    assert info.value.attempts == 3 and fake_llm.count == 3
    assert "InternalServerError" in str(info.value)


def test_client_errors_are_not_retried(fake_llm):
    fake_llm.default = Reply(status=400)
    with pytest.raises(ModelCallError):
        complete(client(fake_llm))
    assert fake_llm.count == 1


def test_a_missing_key_names_the_variable_to_set(fake_llm, monkeypatch):
    monkeypatch.delenv("MY_TEST_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="set the environment variable MY_TEST_KEY"):
        client(fake_llm, api_key_env="MY_TEST_KEY")


def test_a_model_without_a_base_and_without_its_provider_key_is_refused(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="OPENAI_API_KEY"):
        LiteLLMClient(ModelRef(id="gpt-4o-mini"))


def test_the_key_from_api_key_env_is_sent_to_the_server(fake_llm, monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-1234567890abcdef")
    complete(client(fake_llm, api_key_env="MY_TEST_KEY"))
    assert fake_llm.count == 1


def test_scripted_replies_follow_the_iteration_and_repeat_the_last():
    c = ScriptedClient(ModelRef(id="loopkit/scripted", replies=["one {{ case.n }}", "two"]))
    texts = [asyncio.run(c.complete(MESSAGES, {}, {"case": {"n": 7}, "iteration": i})).text for i in (1, 2, 3)]
    assert texts == ["one 7", "two", "two"]


def test_adaptive_limit_halves_on_rate_limits_and_recovers():
    limit = AdaptiveLimit(16)
    limit.rate_limited()
    limit.rate_limited()
    assert int(limit.limit) == 4
    for _ in range(200):
        limit.succeeded()
    assert int(limit.limit) == 16


def test_the_adaptive_limit_holds_calls_beyond_it_and_lets_them_in_first_come_first_served():
    async def scenario() -> tuple[int, list[int]]:
        limit, inside, most, entered = AdaptiveLimit(2), 0, 0, []
        gates = [asyncio.Event() for _ in range(5)]

        async def call(i: int) -> None:
            nonlocal inside, most
            async with limit:
                entered.append(i)
                inside += 1
                most = max(most, inside)
                await gates[i].wait()
                inside -= 1

        tasks = [asyncio.create_task(call(i)) for i in range(5)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert entered == [0, 1]  # the others wait
        limit.rate_limited()  # 2 → 1: one call out lets nobody in, two out let one in
        gates[0].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert entered == [0, 1]
        for i in range(1, 5):
            gates[i].set()
        await asyncio.gather(*tasks)
        return most, entered

    most, entered = asyncio.run(scenario())
    assert most == 2 and entered == [0, 1, 2, 3, 4]


def test_rate_limits_lower_the_models_concurrency_and_successes_raise_it_again(fake_llm):
    limit = AdaptiveLimit(8)
    c = LiteLLMClient(ModelRef(id="openai/gpt-4o-mini", api_base=fake_llm.base_url), retry=FAST, limit=limit)
    fake_llm.queue(Reply(status=429, retry_after=0), Reply(status=429, retry_after=0), Reply("ok"))
    complete(c)
    assert limit.limit < 8
    lowered = limit.limit
    for _ in range(20):
        complete(c)
    assert limit.limit > lowered


def test_running_a_loop_on_the_scripted_model_imports_neither_litellm_nor_the_retry_nor_an_unused_regex_package(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    spec = Path(__file__).resolve().parent.parent / "examples" / "taxes" / "taxes.yaml"
    code = (
        "import sys, io, contextlib\n"
        f"sys.argv = ['loopkit', '--ledger', {str(tmp_path / 'l.db')!r}, 'run', {str(spec)!r}, '--json']\n"
        "from loopkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "print(sorted({'litellm', 'openai', 'regex', 'tenacity', 'loopkit.agents'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_ollama_needs_no_key_and_an_unroutable_model_is_refused_before_any_call(monkeypatch):
    from loopkit.errors import UsageError

    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    assert LiteLLMClient(ModelRef(id="ollama/llama3")).ref.id == "ollama/llama3"  # localhost by default, no key
    with pytest.raises(UsageError, match="did you mean `gpt-4o-mini`"):
        LiteLLMClient(ModelRef(id="gpt-4o-mimi"))


def test_a_provider_request_litellm_built_but_a_cancel_never_sent_is_not_reported_as_never_awaited():
    """Ctrl-C between litellm building a provider's request coroutine and awaiting it left a warning on stderr."""
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from loopkit.models import litellm\n"
        "litellm()\n"
        "class OpenAIChatCompletion:\n    async def acompletion(self): pass\n"
        "class Mine:\n    async def work(self): pass\n"
        "OpenAIChatCompletion().acompletion(); Mine().work(); gc.collect()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "'OpenAIChatCompletion.acompletion' was never awaited" not in done.stderr
    assert "'Mine.work' was never awaited" in done.stderr  # our own bugs still show
