"""The fake OpenAI-compatible server, driven through litellm's real HTTP path.

Findings, litellm 1.110.2 against tests/fake_llm.py (the tests below pin all but the default retries):
- `litellm.completion(..., api_base=fake.base_url, api_key="sk-test", max_retries=0)` sends one
  request per call; the body has only `model` (provider prefix stripped: "gpt-4o-mini") and
  `messages`. Without `max_retries=0` the openai SDK retries a 500 twice (3 requests in all).
- `litellm.acompletion` works the same way against the same server (under `asyncio.run`).
- Errors: 429 -> `litellm.RateLimitError`, 500 -> `litellm.InternalServerError`,
  503 -> `litellm.ServiceUnavailableError` (all with `.status_code`). Retry-After is readable as
  `exc.response.headers.get("retry-after")` (an httpx.Response) and as
  `exc.litellm_response_headers.get("retry-after")` (httpx.Headers); `RateLimitError.headers` is None.
  ServiceUnavailableError is not a subclass of InternalServerError: list both when retrying.
  Without the header both give None.
- Cost: for "openai/gpt-4o-mini" with api_base set, `response._hidden_params["response_cost"]`
  is the bundled gpt-4o-mini price ($0.15 / $0.60 per M tokens), and equals
  `litellm.completion_cost(completion_response=response)`.
- For an unknown model ("openai/my-local-model") `_hidden_params["response_cost"]` is None (no
  error), but `litellm.completion_cost(completion_response=response)` RAISES
  `litellm.ModelNotMappedError` (a plain Exception subclass: "This model isn't mapped yet") --
  so read `_hidden_params`, or catch that exception.
- Custom price per call: pass `input_cost_per_token=` / `output_cost_per_token=` to
  `completion`/`acompletion` (they are not sent to the server); `response_cost` then uses them,
  also overriding a known model's price. After the fact:
  `litellm.completion_cost(completion_response=r, custom_cost_per_token={"input_cost_per_token": x,
  "output_cost_per_token": y})`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # bundled prices, no network at import

import litellm  # noqa: E402

litellm.suppress_debug_info = True
if hasattr(litellm, "disable_hf_tokenizer_download"):
    litellm.disable_hf_tokenizer_download = True

from fake_llm import FakeLLM, Reply  # noqa: E402

# litellm's lazy pydantic models warn about TypedDict `ReadOnly` items on first use; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")

MESSAGES = [{"role": "user", "content": "Say hi, please."}]
MINI_IN, MINI_OUT = 0.15e-6, 0.60e-6  # gpt-4o-mini, USD per token


def call(fake: FakeLLM, model: str = "openai/gpt-4o-mini", **kwargs):
    return litellm.completion(
        model=model, api_base=fake.base_url, api_key="sk-test", messages=MESSAGES, max_retries=0, **kwargs
    )


# -- the server on its own -----------------------------------------------------------------


def post(fake: FakeLLM, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        fake.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.load(err)


def content(fake: FakeLLM) -> str:
    return post(fake, {"model": "m", "messages": MESSAGES})[2]["choices"][0]["message"]["content"]


def test_success_body_is_a_chat_completion(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply("hello", prompt_tokens=7, completion_tokens=3))
    status, _, body = post(fake_llm, {"model": "m1", "messages": MESSAGES})
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "m1" and body["id"]
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_estimated_usage(fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply("x" * 40)
    _, _, body = post(fake_llm, {"model": "m", "messages": [{"role": "user", "content": "y" * 100}]})
    assert body["usage"]["prompt_tokens"] == 25 and body["usage"]["completion_tokens"] == 10
    _, _, body = post(fake_llm, {"model": "m", "messages": [{"role": "user", "content": ""}]})
    assert body["usage"]["prompt_tokens"] == 1


def test_queue_then_responder_then_default(fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply("fallback")
    fake_llm.queue("one", Reply("two"))
    assert [content(fake_llm) for _ in range(3)] == ["one", "two", "fallback"]
    fake_llm.responder = lambda body: "echo: " + body["messages"][-1]["content"]
    assert content(fake_llm) == "echo: Say hi, please."
    assert fake_llm.count == 4 and len(fake_llm.requests) == 4


def test_error_body_and_retry_after(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply(status=429, retry_after=2))
    status, headers, body = post(fake_llm, {"model": "m", "messages": MESSAGES})
    assert status == 429 and headers["Retry-After"] == "2"
    assert set(body["error"]) >= {"message", "type", "code"}


def test_models_endpoint(fake_llm: FakeLLM) -> None:
    with urllib.request.urlopen(fake_llm.base_url + "/models", timeout=5) as response:
        assert json.load(response)["object"] == "list"


def test_standalone_prints_base_url() -> None:
    script = Path(__file__).with_name("fake_llm.py")
    argv = [sys.executable, str(script), "--port", "0", "--latency", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with urllib.request.urlopen(base_url + "/models", timeout=5) as response:
            assert response.status == 200
    finally:
        proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()


# -- through litellm -----------------------------------------------------------------------


def test_litellm_completion(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply("hi there", prompt_tokens=1000, completion_tokens=2000))
    response = call(fake_llm)
    assert response.choices[0].message.content == "hi there"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (1000, 2000)
    assert fake_llm.count == 1
    assert fake_llm.requests[0]["model"] == "gpt-4o-mini"
    assert fake_llm.requests[0]["messages"] == MESSAGES
    cost = response._hidden_params["response_cost"]
    assert cost == pytest.approx(1000 * MINI_IN + 2000 * MINI_OUT)
    assert litellm.completion_cost(completion_response=response) == pytest.approx(cost)


def test_litellm_acompletion(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply("async hi", prompt_tokens=10, completion_tokens=5))

    async def go():
        return await litellm.acompletion(
            model="openai/gpt-4o-mini",
            api_base=fake_llm.base_url,
            api_key="sk-test",
            messages=MESSAGES,
            max_retries=0,
        )

    response = asyncio.run(go())
    assert response.choices[0].message.content == "async hi"
    assert response.usage.total_tokens == 15
    assert response._hidden_params["response_cost"] == pytest.approx(10 * MINI_IN + 5 * MINI_OUT)


def test_unknown_model_cost_and_custom_price(fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply("x", prompt_tokens=1000, completion_tokens=2000)
    response = call(fake_llm, "openai/my-local-model")
    assert response.choices[0].message.content == "x"
    assert response._hidden_params["response_cost"] is None
    with pytest.raises(litellm.ModelNotMappedError):
        litellm.completion_cost(completion_response=response)
    price = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    after_the_fact = litellm.completion_cost(completion_response=response, custom_cost_per_token=price)
    assert after_the_fact == pytest.approx(0.005)
    priced = call(fake_llm, "openai/my-local-model", **price)
    assert priced._hidden_params["response_cost"] == pytest.approx(0.005)
    assert "input_cost_per_token" not in fake_llm.requests[-1]
    overridden = call(fake_llm, "openai/gpt-4o-mini", **price)  # a per-call price beats the bundled one
    assert overridden._hidden_params["response_cost"] == pytest.approx(0.005)


@pytest.mark.parametrize(
    "status, error",
    [
        (429, litellm.RateLimitError),
        (500, litellm.InternalServerError),
        (503, litellm.ServiceUnavailableError),
    ],
)
def test_litellm_error_mapping(fake_llm: FakeLLM, status: int, error: type[Exception]) -> None:
    fake_llm.queue(Reply(status=status, retry_after=7))
    with pytest.raises(error) as info:
        call(fake_llm)
    exc = info.value
    assert exc.status_code == status
    assert exc.response.headers.get("retry-after") == "7"
    assert exc.litellm_response_headers.get("retry-after") == "7"
    assert fake_llm.count == 1  # max_retries=0: no hidden SDK retries


def test_litellm_rate_limit_without_retry_after(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply(status=429, retry_after=0.5), Reply(status=429))
    with pytest.raises(litellm.RateLimitError) as info:
        call(fake_llm)
    assert float(info.value.response.headers["retry-after"]) == 0.5
    with pytest.raises(litellm.RateLimitError) as info:
        call(fake_llm)
    assert info.value.response.headers.get("retry-after") is None


def test_latency_is_applied(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply("slow", latency=0.05))
    start = time.perf_counter()
    assert call(fake_llm).choices[0].message.content == "slow"
    assert time.perf_counter() - start >= 0.05


def test_litellm_streaming_reads_the_chunks_and_the_usage(fake_llm: FakeLLM) -> None:
    fake_llm.queue(Reply("Hello there, streaming world", prompt_tokens=11, completion_tokens=7, chunks=3))

    async def stream() -> list:
        response = await litellm.acompletion(model="openai/gpt-4o-mini", api_base=fake_llm.base_url, api_key="sk-test",
                                             messages=MESSAGES, max_retries=0, stream=True, stream_options={"include_usage": True})
        return [chunk async for chunk in response]

    chunks = asyncio.run(stream())
    assert [c.choices[0].delta.content for c in chunks[:3]] == ["Hello ther", "e, streami", "ng world"]
    whole = litellm.stream_chunk_builder(chunks)
    assert whole.choices[0].message.content == "Hello there, streaming world"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (11, 7)
    assert fake_llm.requests[-1]["stream"] is True
