"""Model clients: one protocol, two implementations (litellm and the offline scripted model).

This is the only module that imports litellm, and only when a real model is first called, so the
query commands and the scripted model never pay its multi-second import.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Protocol


from .cache import canonical_json
from .errors import MissingKeyError, UsageError
from .prices import TokenPrice, known_price, litellm_price, model_problem
from .redact import register_secret, scrub
from .records import Messages
from .spec import ModelRef
from .templates import render

RETRY_AFTER_CAP = 60.0


@dataclass(frozen=True)
class Completion:
    """What one model call produced, as the response reported it."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    cached: bool = False
    recorded_cost_usd: float = 0.0  # for a cached answer: what the original call cost (replays budget with it)
    tool_calls: list[dict[str, Any]] | None = None  # the tools the reply asks to call (OpenAI format), if any


class ModelCallError(Exception):
    """A call failed for good (retries spent, or an error not worth retrying); the run becomes `error`."""

    def __init__(self, message: str, *, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(message)


class ModelClient(Protocol):
    ref: ModelRef
    price: TokenPrice | None

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens of `messages`, as the budget estimates them."""

    async def complete(self, messages: Messages, params: dict[str, Any], variables: dict[str, Any]) -> Completion:
        """One chat completion. `variables` feed the scripted model's reply templates."""

    def cache_salt(self, variables: dict[str, Any]) -> str | None:
        """What the reply depends on besides the messages (see cache.py); None for a real model."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of rate limits, timeouts, 5xx and connection errors: exponential backoff with jitter."""

    attempts: int = 6
    base_seconds: float = float(os.environ.get("LOOPKIT_RETRY_BASE_SECONDS", "0.5"))
    max_seconds: float = 30.0


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def count_tokens(ref: ModelRef, messages: Messages) -> int:
    """Prompt tokens as the budget estimates them: litellm's counter, a character estimate for scripted."""
    if not ref.scripted:
        try:
            return int(litellm().token_counter(model=ref.id, messages=messages))
        except Exception:  # noqa: BLE001 - an unknown tokenizer falls back to the character estimate
            pass
    return sum(_estimate_tokens(m.get("content") or "") + 4 for m in messages)


class ScriptedClient:
    """`loopkit/scripted`: reply k for iteration k (the last repeated), rendered from the spec's templates."""

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.price = known_price(ref)

    def count_tokens(self, messages: Messages) -> int:
        return count_tokens(self.ref, messages)

    def cache_salt(self, variables: dict[str, Any]) -> str | None:
        """Replies are rendered from the case, iteration and feedback, not only from the messages."""
        return canonical_json([self.ref.replies, variables])

    async def complete(self, messages: Messages, params: dict[str, Any], variables: dict[str, Any]) -> Completion:
        replies = self.ref.replies or [""]
        iteration = int(variables.get("iteration", 1))
        reply = replies[min(iteration, len(replies)) - 1]
        if isinstance(reply, list):  # the iteration's steps: step k answers its k-th call (a tool loop's), the last repeated
            reply = reply[min(int(variables.get("step", 1)), len(reply)) - 1] if reply else ""
        tool_calls = None
        if isinstance(reply, str):
            text = render(reply, **variables)
        else:  # a tool call: its string arguments are templates
            arguments = {k: render(v, **variables) if isinstance(v, str) else v for k, v in reply.arguments.items()}
            text = ""
            tool_calls = [{"id": f"call_{iteration}_{variables.get('step', 1)}", "type": "function",
                           "function": {"name": reply.tool, "arguments": json.dumps(arguments, ensure_ascii=False)}}]
        max_tokens = params.get("max_tokens")
        completion_tokens = _estimate_tokens(text + (json.dumps(tool_calls) if tool_calls else ""))
        if max_tokens:
            completion_tokens = min(completion_tokens, int(max_tokens))
        prompt_tokens = self.count_tokens(messages)
        assert self.price is not None
        return Completion(text, prompt_tokens, completion_tokens, self.price.cost(prompt_tokens, completion_tokens), 0.0,
                          tool_calls=tool_calls)


_litellm_module: Any = None


def litellm() -> Any:
    """Import litellm once, offline-safe: bundled price map, no debug prints, no tokenizer downloads."""
    global _litellm_module
    if _litellm_module is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import litellm as module

        module.suppress_debug_info = True
        module.disable_hf_tokenizer_download = True
        module.telemetry = False
        # litellm.acompletion builds the provider's request coroutine in a thread, then awaits it; a call
        # cancelled (Ctrl-C) in between leaves that coroutine unstarted: nothing was sent, but Python
        # would print "never awaited" over the user's clean interrupt message.
        warnings.filterwarnings("ignore", message=r"coroutine '\w+\.acompletion' was never awaited",
                                category=RuntimeWarning)
        _litellm_module = module
    return _litellm_module


def _retryable(exc: BaseException) -> bool:
    lm = litellm()
    return isinstance(
        exc,
        (lm.RateLimitError, lm.Timeout, lm.APIConnectionError, lm.InternalServerError, lm.ServiceUnavailableError),
    )


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from the error's response headers."""
    sources = [getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None)]
    for headers in sources:
        if not headers:
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value is None:
            continue
        try:
            return min(max(float(value), 0.0), RETRY_AFTER_CAP)
        except ValueError:
            continue
    return None


class AdaptiveLimit:
    """Concurrency for one model that halves on a rate limit and creeps back up as calls succeed."""

    def __init__(self, limit: int) -> None:
        self.max = max(1, limit)
        self.limit = float(self.max)
        self._in_flight = 0
        self._waiting = 0
        self._cond = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimit:
        if not self._waiting and self._in_flight < int(self.limit):  # room and no queue: no lock, no await
            self._in_flight += 1
            return self
        async with self._cond:
            self._waiting += 1
            try:
                await self._cond.wait_for(lambda: self._in_flight < int(self.limit))
            finally:
                self._waiting -= 1
            self._in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._in_flight -= 1
        if self._waiting:
            async with self._cond:
                self._cond.notify_all()

    def rate_limited(self) -> None:
        self.limit = max(1.0, self.limit / 2)

    def succeeded(self) -> None:
        self.limit = min(float(self.max), self.limit + 1.0 / max(1.0, self.limit))


class LiteLLMClient:
    """Any litellm model, called with the SDK's own retries off and ours (tenacity) on."""

    def __init__(self, ref: ModelRef, *, retry: RetryPolicy | None = None, limit: AdaptiveLimit | None = None) -> None:
        from tenacity import wait_exponential_jitter  # loaded with the first real model: a scripted run never retries

        self.ref = ref
        self.price = known_price(ref)
        self.retry = retry or RetryPolicy()
        self.limit = limit
        self._backoff = wait_exponential_jitter(multiplier=self.retry.base_seconds, max=self.retry.max_seconds, jitter=self.retry.base_seconds)
        problem = model_problem(ref)
        if problem is not None and problem.error:
            raise UsageError(problem.message)
        litellm()  # loaded now, before any case's clock starts
        self._api_key = self._resolve_key()

    def cache_salt(self, variables: dict[str, Any]) -> str | None:
        return None

    def _resolve_key(self) -> str | None:
        if self.ref.api_key_env:
            key = os.environ.get(self.ref.api_key_env)
            if not key:
                raise MissingKeyError(f"model {self.ref.id} needs an API key: set the environment variable {self.ref.api_key_env}")
            register_secret(key)  # whatever the variable is called, the key is scrubbed everywhere
            return key
        if self.ref.api_base:
            return None
        check = litellm().validate_environment(model=self.ref.id)
        # a base URL is no key: Ollama's defaults to localhost, and Ollama needs none
        missing = [name for name in check.get("missing_keys") or [] if not name.endswith("_API_BASE")]
        if not check.get("keys_in_environment", True) and missing:
            raise MissingKeyError(f"model {self.ref.id} needs an API key: set the environment variable {', '.join(missing)}")
        return None

    def count_tokens(self, messages: Messages) -> int:
        return count_tokens(self.ref, messages)

    def _kwargs(self, messages: Messages, params: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.ref.id, "messages": messages, "max_retries": 0, **params}
        if self.ref.api_base:
            kwargs["api_base"] = self.ref.api_base
            kwargs.setdefault("api_key", self._api_key or "not-needed")
        elif self._api_key:
            kwargs["api_key"] = self._api_key
        return kwargs

    def _wait(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = _retry_after(exc) if exc else None
        if after is not None:
            return after
        return self._backoff(state)

    async def _attempt(self, kwargs: dict[str, Any]) -> Any:
        lm = litellm()
        if self.limit is None:
            return await lm.acompletion(**kwargs)
        async with self.limit:
            try:
                response = await lm.acompletion(**kwargs)
            except lm.RateLimitError:
                self.limit.rate_limited()
                raise
            self.limit.succeeded()
            return response

    async def _with_retries(self, kwargs: dict[str, Any]) -> Any:
        """The provider's response, retried on rate limits, timeouts, 5xx and lost connections; ModelCallError
        once it failed for good.

        The first attempt runs on its own: tenacity's bookkeeping around a call that succeeds cost about
        0.08 ms, a fifth of what loopkit adds to a call. A failure is handed to tenacity as its first
        attempt, so whether to retry, how long to wait and when to give up stay tenacity's decisions."""
        try:
            return await self._attempt(kwargs)
        except Exception as exc:  # noqa: BLE001 - replayed below; CancelledError is not an Exception and propagates
            failed: BaseException | None = exc
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.retry.attempts),
                wait=self._wait,
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    if failed is not None:
                        replayed, failed = failed, None
                        raise replayed
                    response = await self._attempt(kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider failure becomes a recorded run error
            message = f"{type(exc).__name__}: {exc}"
            raise ModelCallError(scrub(message, self._api_key or "") or "", attempts=attempts) from None
        return response

    async def complete(self, messages: Messages, params: dict[str, Any], variables: dict[str, Any]) -> Completion:
        started = time.perf_counter()
        response = await self._with_retries(self._kwargs(messages, params))
        return self._completion(response, (time.perf_counter() - started) * 1000)

    async def open_stream(self, messages: Messages, params: dict[str, Any]) -> Any:
        """A streamed call, for an outside agent that asked for one (agents/metering.py): litellm's async iterator
        of chunks, opened with the same retries as `complete` (a stream broken after it began is not retried).
        The provider is asked for the usage in a last chunk."""
        return await self._with_retries(self._kwargs(messages, {**params, "stream": True, "stream_options": {"include_usage": True}}))

    def streamed(self, chunks: list[Any], messages: Messages, latency_ms: float) -> Completion:
        """What a finished stream said and cost: its chunks rebuilt into one response by litellm, which counts the
        usage itself when the provider sent none."""
        return self._completion(litellm().stream_chunk_builder(chunks, messages=messages), latency_ms)

    def _completion(self, response: Any, latency_ms: float) -> Completion:
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        message = response.choices[0].message
        text = message.content or ""
        tool_calls = [{"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments or ""}}
                      for c in getattr(message, "tool_calls", None) or []] or None
        if self.ref.price is not None:
            cost = self.price.cost(prompt_tokens, completion_tokens) if self.price else 0.0
        else:
            reported = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
            fallback = litellm_price(self.ref.id)
            cost = float(reported) if reported is not None else (fallback.cost(prompt_tokens, completion_tokens) if fallback else 0.0)
        return Completion(text, prompt_tokens, completion_tokens, cost, latency_ms, tool_calls=tool_calls)


class ModelPool:
    """Hands out one client per distinct model, sharing adaptive limits across a batch's cases."""

    def __init__(self, *, retry: RetryPolicy | None = None, concurrency: int = 16) -> None:
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self._clients: dict[str, ModelClient] = {}

    def client(self, ref: ModelRef) -> ModelClient:
        key = ref.model_dump_json()
        if key not in self._clients:
            if ref.scripted:
                self._clients[key] = ScriptedClient(ref)
            else:
                self._clients[key] = LiteLLMClient(ref, retry=self.retry, limit=self.limit_for(ref, key))  # type: ignore[arg-type]
        return self._clients[key]

    def limit_for(self, ref: ModelRef, key: str) -> Any:
        """The concurrency limit a model's calls share: here one `AdaptiveLimit` per model. A fleet shares one
        per provider, the Ray engine one per model (or provider) across the cluster."""
        return AdaptiveLimit(self.concurrency)
