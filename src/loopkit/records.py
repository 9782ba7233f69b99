"""The records the engine emits and the ledger stores: calls, tool calls, iterations, checks, events,
and a run's state. The engine writes them, the ledger persists them; neither imports the other."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from pydantic import TypeAdapter

from .spec import ModelRef
from .status import RunStatus, StopReason
from .timewindow import utcnow_iso as now_iso

Messages = list[dict[str, Any]]  # chat messages; a tool step's carry `tool_calls` / `tool_call_id`


# Ids come from a generator seeded from os.urandom (reseeded in a forked child): uuid4 reads os.urandom
# for every id, three times per scripted iteration; the ids keep uuid4's form (version and variant bits).
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def new_id() -> str:
    """A random uuid4, as 32 hex digits."""
    return f"{_ids.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48) | (4 << 76) | (0x8000 << 48):032x}"


@dataclass
class CallRecord:
    id: str
    iteration: int
    role: str
    model: str
    messages: Messages
    response: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    cached: bool
    error: str | None
    call_key: str  # identifies the call (spec, model, messages, params, repeat): what --replay matches
    cache_key: str | None  # the same key when this call may answer later ones; None under --no-cache
    api_base: str | None
    created_at: str = field(default_factory=now_iso)
    tool_calls: list[dict[str, Any]] | None = None  # the tool calls the reply asked for (OpenAI format)
    tools_run: list[ToolCallRecord] = field(default_factory=list)  # what running them returned, in order


@dataclass
class ToolCallRecord:
    """One tool call the worker model asked for and loopkit ran (SPEC.md §5 `tool_calls`)."""

    iteration: int
    step: int  # the tool round within the iteration, from 1
    tool: str
    arguments: str  # as the model sent them (JSON text)
    result: str | None
    error: str | None  # what the model was told instead of a result
    latency_ms: float
    call_id: str  # the model call that asked for it
    tool_call_id: str | None  # the provider's id for it
    created_at: str = field(default_factory=now_iso)

    def public(self) -> dict[str, Any]:
        """As checkers see it: the arguments parsed when they are JSON."""
        try:
            arguments = json.loads(self.arguments) if self.arguments else {}
        except ValueError:
            arguments = self.arguments
        return {"step": self.step, "tool": self.tool, "arguments": arguments, "result": self.result, "error": self.error}


@dataclass
class CheckRecord:
    checker: str
    score: float
    passed: bool
    feedback: str
    audit: bool
    weight: float


@dataclass
class EventRecord:
    kind: str
    detail: dict[str, Any]
    created_at: str = field(default_factory=now_iso)


@dataclass
class IterationRecord:
    n: int
    model: str
    output: str
    reward: float
    passed: bool
    feedback: str
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    checks: list[CheckRecord]
    created_at: str = field(default_factory=now_iso)


@dataclass
class RunState:
    """Everything needed to continue a run later (resume, review), saved with every iteration. A dataclass
    read and written through pydantic (`to_json`, `from_json`), not a pydantic model: the engine sets a
    dozen fields per iteration, and a model's `__setattr__` cost about 1.5 % of a scripted run."""

    iterations: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    model: ModelRef | None = None
    fired: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    last_output: str | None = None
    last_feedback: str = ""
    best_iteration: int = 0
    best_reward: float = 0.0
    best_output: str = ""
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_seconds: float = 0.0
    max_iterations: int | None = None

    def to_json(self) -> str:
        return _state_adapter().dump_json(self).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> RunState:
        """A saved state, checked: a ledger edited by hand or written by another loopkit fails here, clearly."""
        return _state_adapter().validate_json(text)


@cache
def _state_adapter() -> TypeAdapter[RunState]:
    return TypeAdapter(RunState)


@dataclass
class RunInfo:
    """The fixed facts of a run, written when it starts."""

    id: str
    batch_id: str | None
    spec_hash: str
    spec_name: str
    case_id: str
    case: dict[str, Any]
    repeat: int = 0
    variant: str | None = None
    started_at: str = field(default_factory=now_iso)


@dataclass
class RunResult:
    """A run's outcome as it stands after its latest commit."""

    run_id: str
    status: RunStatus
    stop_reason: StopReason | None
    success: bool
    reward: float
    iterations: int
    best_iteration: int
    output: str
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    state: RunState
    ended_at: str | None = None
    message: str | None = None
    suspect: str | None = None


class Recorder(Protocol):
    """Where runs go. The ledger is one; tests use an in-memory one."""

    def commit(self, result: RunResult, iteration: IterationRecord | None, calls: list[CallRecord],
               events: list[EventRecord], *, start: RunInfo | None = None) -> None:
        """Write one step of a run atomically: its iteration (if any), calls, events and run row;
        `start` on a run's first step, so a run is written together with what it did first."""
