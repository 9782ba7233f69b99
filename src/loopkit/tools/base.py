"""What every tool shares: its schema as the model sees it, the call, and the failure returned to the model.

A tool's failure (it raised, timed out, got bad arguments, does not exist) is the model's to see: it
goes back as the tool result and is recorded, it never crashes the run. Only the case's own limits
(its time budget, Ctrl-C) end an iteration from inside a tool.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..budget import BudgetStop
from ..redact import safe_text
from ..status import StopReason

RESULT_CHARS = 20_000  # the most of one result the model is sent: a tool's output must not fill its context


@dataclass(frozen=True)
class ToolSchema:
    """A tool as the model is told about it (OpenAI function-calling format)."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class ToolFailure(Exception):
    """The tool could not give a result; the message is what the model is told."""


class Tool(Protocol):
    schema: ToolSchema
    timeout: float

    async def call(self, arguments: dict[str, Any]) -> str:
        """The result as text for the model, or raise ToolFailure (any other exception is reported the same way)."""


@dataclass(frozen=True)
class Outcome:
    """What one tool call returned: `result` or `error`, and how long it took."""

    result: str | None
    error: str | None
    latency_ms: float

    @property
    def message(self) -> str:
        """The tool message's content: the result, or the error as the model should read it."""
        return self.result if self.error is None else f"error: {self.error}"


def as_text(value: Any) -> str:
    """A tool's return value as the text the model reads: a str as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def clipped(text: str) -> str:
    if len(text) <= RESULT_CHARS:
        return text
    return text[:RESULT_CHARS] + f"\n[... {len(text) - RESULT_CHARS:,} more characters not shown]"


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """The model's arguments (a JSON object as text) as a dict, or a ToolFailure saying what was wrong."""
    if isinstance(raw, dict):
        return raw
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ToolFailure(f"the arguments are not valid JSON ({exc.msg}): {raw[:200]!r}") from None
    if not isinstance(value, dict):
        raise ToolFailure(f"the arguments must be a JSON object, not {type(value).__name__}")
    return value


async def run_tool(tool: Tool | None, name: str, raw_arguments: str | dict[str, Any] | None,
                   time_left: float | None, known: list[str]) -> Outcome:
    """Call one tool within its timeout, cut short by the case's time budget (a BudgetStop then)."""
    started = time.perf_counter()

    def done(result: str | None, error: str | None) -> Outcome:
        # a tool's text goes back to the model: a lone surrogate in it is escaped, as in a model's reply
        return Outcome(None if result is None else clipped(safe_text(result)), None if error is None else safe_text(error),
                       (time.perf_counter() - started) * 1000)

    if tool is None:
        return done(None, f"there is no tool named {name!r}; the tools are: {', '.join(known) or 'none'}")
    try:
        arguments = parse_arguments(raw_arguments)
    except ToolFailure as exc:
        return done(None, str(exc))
    by_budget = time_left is not None and time_left < tool.timeout
    seconds = time_left if by_budget else tool.timeout
    try:
        return done(await asyncio.wait_for(tool.call(arguments), seconds), None)
    except TimeoutError:
        if by_budget:
            raise BudgetStop(StopReason.BUDGET_SECONDS, f"the case's time budget ran out while tool {name} ran") from None
        return done(None, f"timed out after {tool.timeout:g}s")
    except ToolFailure as exc:
        return done(None, str(exc))
    except BudgetStop:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken tool is the model's to see, not a crash of the run
        return done(None, f"{type(exc).__name__}: {exc}")
