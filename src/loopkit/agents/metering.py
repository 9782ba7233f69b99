"""The metering endpoint: an OpenAI-compatible chat API that an outside agent reaches models through.

Every request is, in this order: authenticated (the run's bearer token), scrubbed of secrets, reserved
against the case and batch budgets (budget.py: its worst case from the prompt and `max_tokens`),
forwarded through the run's model client (litellm, or the scripted model), settled, and recorded as a
`calls` row with role `agent`. A request that could cross a cap is refused with HTTP 429 and an
`insufficient_quota` error saying the budget is spent (`x-should-retry: false`, so OpenAI clients do
not retry it); from then on every request is refused, and the worker ends the agent with the stop.

Requests are served one at a time per agent: the per-case caps count what is spent, so two requests
reserved side by side would each see the same room.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from ..budget import BudgetStop, CaseBudget, Prompt, Reservation
from ..cache import cache_key
from ..models import Completion, ModelCallError, ModelClient
from ..records import CallRecord, EventRecord, new_id
from ..redact import scrubber
from ..spec import ModelRef
from ..redact import safe_text
from .http import Request, Response

# What an agent's request may set besides `messages`; anything else (`api_base`, `api_key`, headers,
# litellm's own keywords) is dropped, so a request can never redirect the call or its key elsewhere.
FORWARDED = frozenset({"temperature", "top_p", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
                       "top_logprobs", "response_format", "seed", "tools", "tool_choice", "parallel_tool_calls", "user",
                       "reasoning_effort", "functions", "function_call"})
IMAGE_TOKENS = 1_600  # one image part, as a reservation counts it (providers bill a large one about 1,100-1,600)
BUDGET_SPENT = 429


class Tally(Protocol):
    """Where an iteration's calls and spend are gathered (the engine's iteration)."""

    calls: list[CallRecord]
    events: list[EventRecord]
    cost: float
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float


@dataclass
class MeterContext:
    """What the endpoint needs of the run for one iteration."""

    client: ModelClient
    model: ModelRef
    params: dict[str, Any]  # the spec's parameters for the model (its `max_tokens` caps every request)
    budget: CaseBudget
    tally: Tally
    iteration: int
    variables: dict[str, Any]  # what the scripted model renders its replies from
    spec_name: str
    repeat: int


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> None:
        self.status, self.kind, self.code = status, kind, code
        super().__init__(message)


def _error(exc: RequestError) -> dict[str, Any]:
    return {"error": {"message": str(exc), "type": exc.kind, "param": None, "code": exc.code}}


def _scrubbed(value: Any, clean: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [_scrubbed(v, clean) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v, clean) for k, v in value.items()}
    return value


def flat_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The messages as plain text (text parts joined, tool calls as JSON): what the scripted model answers,
    and what a request's prompt is counted on."""
    flat = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
        text = content if isinstance(content, str) else ""
        if m.get("tool_calls"):
            text += json.dumps(m["tool_calls"], ensure_ascii=False)
        flat.append({"role": str(m.get("role") or "user"), "content": text})
    return flat


def _images(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if isinstance(m.get("content"), list)
               for p in m["content"] if isinstance(p, dict) and "image" in str(p.get("type")))


def prompt_size(client: ModelClient, messages: list[dict[str, Any]], tools: Any) -> Prompt:
    """A request's prompt as the budget sizes it: its text (and its tools' schemas), plus IMAGE_TOKENS per image."""
    counted = flat_messages(messages) + ([{"role": "system", "content": json.dumps(tools)}] if tools else [])
    return Prompt.of(counted, client.count_tokens, extra=IMAGE_TOKENS * _images(messages))


def _max_tokens(body: dict[str, Any], cap: int | None) -> int | None:
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
        raise RequestError(400, f"max_tokens must be a positive integer, found {asked!r}")
    return min(cap, asked) if cap and asked else (cap or asked)


class Meter:
    """Serves one agent process: `handle` is the HTTP handler; `stop` is set once a budget stop ended it."""

    def __init__(self, ctx: MeterContext, token: str) -> None:
        self.ctx = ctx
        self.token = token
        self.stop: BudgetStop | None = None
        self.stopped = asyncio.Event()
        self._one_at_a_time = asyncio.Lock()

    # -- HTTP --

    async def handle(self, request: Request, response: Response) -> None:
        try:
            try:
                await self._route(request, response)
            except (RequestError, ConnectionError):
                raise
            except Exception as exc:  # noqa: BLE001 - a request loopkit could not serve is the agent's error to see, not a crash
                raise RequestError(500, f"loopkit's metering endpoint failed: {type(exc).__name__}: {exc}", "api_error") from None
        except RequestError as exc:
            headers = {"x-should-retry": "false"} if exc.status == BUDGET_SPENT else {}
            if not response.started:
                await response.json(exc.status, _error(exc), headers)
            else:
                await response.event(_error(exc))

    async def _route(self, request: Request, response: Response) -> None:
        path = request.path.rstrip("/")
        path = path[3:] if path.startswith("/v1") else path
        if path not in ("/chat/completions", "/models"):
            raise RequestError(404, f"loopkit's metering endpoint serves /v1/chat/completions and /v1/models, not {request.path}")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise RequestError(401, "the metering endpoint needs the run's token as `Authorization: Bearer $OPENAI_API_KEY`",
                               "authentication_error", "invalid_api_key")
        if path == "/models":
            await response.json(200, {"object": "list", "data": [{"id": self.ctx.model.label, "object": "model", "created": 0,
                                                                  "owned_by": "loopkit"}]})
            return
        if request.method != "POST":
            raise RequestError(405, f"{request.method} {request.path}: use POST")
        try:
            body = request.json()
        except ValueError:
            raise RequestError(400, "the request body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            raise RequestError(400, "a chat completion needs a non-empty `messages` list")
        if (body.get("n") or 1) != 1:
            raise RequestError(400, "the metering endpoint answers one choice per request (n: 1)")
        await self._chat(body, response)

    # -- one chat completion --

    def _refusal(self) -> RequestError:
        assert self.stop is not None
        return RequestError(BUDGET_SPENT, f"loopkit: the budget is spent ({self.stop.detail}); the run ends with "
                                          f"{self.stop.reason}", "insufficient_quota", "insufficient_quota")

    def _stopping(self, stop: BudgetStop) -> RequestError:
        self.stop = self.stop or stop
        self.stopped.set()
        return self._refusal()

    async def _chat(self, body: dict[str, Any], response: Response) -> None:
        if self.stop is not None:
            raise self._refusal()
        ctx = self.ctx
        clean = scrubber()
        messages = _scrubbed(body["messages"], clean)  # no key the agent came across reaches a provider
        params = {**ctx.params, **{k: v for k, v in body.items() if k in FORWARDED}}
        max_tokens = _max_tokens(body, ctx.params.get("max_tokens"))
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        async with self._one_at_a_time:
            if self.stop is not None:
                raise self._refusal()
            try:
                prompt = prompt_size(ctx.client, messages, params.get("tools")) if ctx.budget.capped else 0
                reservation = await ctx.budget.reserve(ctx.client.price, prompt, max_tokens, model=ctx.model.label)
            except BudgetStop as stop:
                raise self._stopping(stop) from None
            sent = flat_messages(messages) if ctx.model.scripted else messages
            key = cache_key(ctx.spec_name, ctx.model, sent, params, ctx.repeat)
            if body.get("stream") and hasattr(ctx.client, "open_stream"):
                await self._relay(sent, params, reservation, key, response, _usage_wanted(body))
                return
            completion = await self._forward(sent, params, reservation, key)
            if body.get("stream"):  # a client that cannot stream (the scripted model): its answer as one chunk
                await response.events()
                for chunk in _chunks(completion, ctx.model.label, _usage_wanted(body)):
                    await response.event(chunk)
                await response.event("[DONE]")
            else:
                await response.json(200, _chat_completion(completion, ctx.model.label))

    async def _forward(self, sent: list[dict[str, Any]], params: dict[str, Any], reservation: Reservation, key: str) -> Completion:
        """One call through the run's client, settled and recorded whatever happens."""
        try:
            completion = await self.ctx.client.complete(sent, params, self.ctx.variables)
        except BaseException as exc:
            error = self._failed(sent, reservation, key, exc, began=False)
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                raise
            raise RequestError(502, f"loopkit could not reach {self.ctx.model.label}: {error}", "api_error") from None
        self._settled(sent, completion, reservation, key)
        return completion

    async def _relay(self, sent: list[dict[str, Any]], params: dict[str, Any], reservation: Reservation, key: str,
                     response: Response, usage_wanted: bool) -> None:
        """A streamed call: each chunk passed on as it arrives, then settled and recorded from what they said."""
        client: Any = self.ctx.client
        started = time.perf_counter()
        chunks: list[Any] = []
        try:
            stream = await client.open_stream(sent, params)
            await response.events()
            async for chunk in stream:
                chunks.append(chunk)
                data = chunk.model_dump(exclude_none=True)
                if data.get("choices") or usage_wanted:  # the usage chunk only for an agent that asked for it
                    await response.event(data)
            completion = client.streamed(chunks, sent, (time.perf_counter() - started) * 1000)
        except BaseException as exc:
            error = self._failed(sent, reservation, key, exc, began=bool(chunks))
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, ConnectionError)):
                raise
            raise RequestError(502, f"loopkit could not reach {self.ctx.model.label}: {error}", "api_error") from None
        self._settled(sent, completion, reservation, key)
        await response.event("[DONE]")

    def _settled(self, sent: list[dict[str, Any]], completion: Completion, reservation: Reservation, key: str) -> None:
        self._record(sent, completion, completion, key, None)
        try:
            self.ctx.budget.settle(reservation, completion.cost_usd, completion.prompt_tokens + completion.completion_tokens)
        except BudgetStop as stop:  # billed above its reservation: recorded, and the run and the batch stop
            raise self._stopping(stop) from None

    def _failed(self, sent: list[dict[str, Any]], reservation: Reservation, key: str, exc: BaseException, *, began: bool) -> str:
        """Settle and record a call that failed; return what went wrong. A call cut off in flight (the agent ended or
        went away, Ctrl-C) or a stream broken after it began may still be billed, so it is charged its worst case."""
        cut_off = began or isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
        charged = reservation.usd if cut_off else 0.0
        self.ctx.budget.settle(reservation, charged, 0)
        self.ctx.tally.cost += charged
        if not cut_off:
            error = str(exc) if isinstance(exc, ModelCallError) else f"{type(exc).__name__}: {exc}"
        else:
            why = "the agent ended or the run was interrupted" if not began or isinstance(exc, asyncio.CancelledError) \
                else f"the stream broke: {type(exc).__name__}: {exc}"
            error = f"cut off in flight ({why}); charged its worst case, ${charged:.6f}, as the provider may bill it"
        self._record(sent, None, Completion("", 0, 0, charged, 0.0), key, error)
        return error

    def _record(self, messages: list[dict[str, Any]], reply: Completion | None, paid: Completion, key: str,
                error: str | None) -> None:
        ctx, tally = self.ctx, self.ctx.tally
        tool_calls = getattr(reply, "tool_calls", None)
        text = None if reply is None else safe_text(reply.text) if not tool_calls else json.dumps(
            {"content": reply.text, "tool_calls": tool_calls}, ensure_ascii=False)
        tally.calls.append(CallRecord(new_id(), ctx.iteration, "agent", ctx.model.label, messages, text, paid.prompt_tokens,
                                      paid.completion_tokens, paid.cost_usd, paid.latency_ms, False, error, key, None,
                                      ctx.model.api_base))
        if reply is not None:
            tally.cost += paid.cost_usd
            tally.prompt_tokens += paid.prompt_tokens
            tally.completion_tokens += paid.completion_tokens
            tally.latency_ms += paid.latency_ms


def _usage_wanted(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _message(completion: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    tool_calls = getattr(completion, "tool_calls", None)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _usage(completion: Completion) -> dict[str, int]:
    return {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def _finish_reason(completion: Completion) -> str:
    return "tool_calls" if getattr(completion, "tool_calls", None) else "stop"


def _chat_completion(completion: Completion, model: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": _message(completion), "logprobs": None, "finish_reason": _finish_reason(completion)}],
            "usage": _usage(completion)}


def _chunks(completion: Completion, model: str, usage: bool) -> list[dict[str, Any]]:
    """A reply as `chat.completion.chunk`s: the message in one delta, the finish reason, the usage when asked."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    delta = _message(completion)
    if "tool_calls" in delta:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
    chunks = [{**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish_reason(completion)}]}]
    if usage:
        chunks.append({**base, "choices": [], "usage": _usage(completion)})
    return chunks
