"""The worker's turn when the spec has `tools:` (SPEC.md §5): model call → tool calls → model call … until
the model answers without calling a tool, or `agent.max_steps` tool rounds are spent.

Every model call of every step goes through the engine's `_call`, so each is reserved against the
budgets at its worst case before it is made (a step that could cross a cap ends the iteration with
the budget stop), cached and replayed one by one, and recorded in `calls`. Every tool call is recorded
with the model call that asked for it (`CallRecord.tools_run`), also when it failed or was cut off.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .budget import BudgetStop
from .records import CallRecord, EventRecord, Messages, ToolCallRecord

if TYPE_CHECKING:
    from .engine import Loop, _Iteration
    from .spec import LoopSpec, ModelRef
    from .tools import Toolbox


@contextlib.asynccontextmanager
async def tools_for(spec: LoopSpec, toolbox: Toolbox | None) -> AsyncIterator[Toolbox | None]:
    """The toolbox a run uses: the batch's (its MCP servers already started), else one of its own."""
    if toolbox is not None or not spec.tools:
        yield toolbox
        return
    from .tools import Toolbox

    async with Toolbox.load(spec) as own:
        yield own


def countable(messages: Messages, tools: list[dict[str, Any]] | None) -> Messages:
    """The messages as plain text for counting a prompt's tokens: the tool definitions and the tool calls
    in them are billed as prompt tokens too, so they count towards the reserved worst case."""
    if not tools and not any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
        return messages
    flat = [{"role": "system", "content": json.dumps(tools, ensure_ascii=False)}] if tools else []
    for m in messages:
        calls = json.dumps(m["tool_calls"], ensure_ascii=False) if m.get("tool_calls") else ""
        role = "user" if m.get("role") == "tool" else m.get("role", "user")
        flat.append({"role": role, "content": (m.get("content") or "") + calls})
    return flat


def trajectory(calls: list[CallRecord]) -> list[dict[str, Any]]:
    """The worker's tool calls of one iteration, in order, as checkers and judges see them."""
    return [t.public() for c in calls if c.role == "worker" for t in c.tools_run]


async def worker_turn(loop: Loop, step: _Iteration, model: ModelRef, messages: Messages,
                      variables: dict[str, Any]) -> tuple[str, Messages]:
    """The iteration's output, and the tool steps that led to it (assistant tool calls and tool results)."""
    toolbox = loop.toolbox
    if toolbox is None:
        return await loop._call(step, "worker", model, messages, variables), []
    schemas = toolbox.schemas()
    max_steps = loop.spec.agent.max_steps
    iteration = loop.state.iterations + 1
    turns: Messages = []
    k = 0
    while True:
        k += 1
        text = await loop._call(step, "worker", model, messages + turns, {**variables, "step": k}, tools=schemas)
        call = step.calls[-1]  # the record `_call` just made
        if not call.tool_calls:
            return text, turns
        if k > max_steps:  # the last reply still asks for tools: they are not run, its text is the output
            step.events.append(EventRecord("max_steps", {"iteration": iteration, "max_steps": max_steps,
                                                         "not_run": [c.get("function", {}).get("name") for c in call.tool_calls]}))
            return text, turns
        turns.append({"role": "assistant", "content": text or None, "tool_calls": call.tool_calls})
        for requested in call.tool_calls:
            turns.append(await _run_one(loop, toolbox, call, requested, iteration, k))


async def _run_one(loop: Loop, toolbox: Toolbox, call: CallRecord, requested: dict[str, Any], iteration: int,
                   k: int) -> dict[str, Any]:
    """Run one requested tool call, record it, and return the tool message for the model."""
    function = requested.get("function") or {}
    name, raw = str(function.get("name") or ""), function.get("arguments")
    arguments = raw if isinstance(raw, str) else json.dumps(raw or {}, ensure_ascii=False)
    started = time.perf_counter()

    def record(result: str | None, error: str | None, latency_ms: float) -> None:
        call.tools_run.append(ToolCallRecord(iteration, k, name, arguments, result, error, latency_ms, call.id, requested.get("id")))

    try:
        outcome = await toolbox.call(name, arguments, loop.budget.time_left())
    except BaseException as exc:  # the case's time ran out, or Ctrl-C: the call is recorded as cut off
        record(None, exc.detail if isinstance(exc, BudgetStop) else "interrupted while the tool ran",
               (time.perf_counter() - started) * 1000)
        raise
    record(outcome.result, outcome.error, outcome.latency_ms)
    return {"role": "tool", "tool_call_id": requested.get("id"), "content": outcome.message}
