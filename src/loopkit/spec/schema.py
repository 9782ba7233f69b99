"""The spec's shape as pydantic models: what every key means, its type and its default.

`loopkit schema` prints these models as JSON Schema; `load` reads YAML into them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import UsageError

SCRIPTED = "loopkit/scripted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Price(_Strict):
    """USD per million tokens; overrides litellm's price table for this model."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    """`max_tokens` bounds every budget's worst case, so it must be a real positive integer."""
    value = params.get("max_tokens")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"`max_tokens` must be a positive integer, found {value!r}")
    return params


# Call parameters passed through to the model (temperature, max_tokens, ...).
Params = Annotated[dict[str, Any], AfterValidator(_check_params)]


class ScriptedToolCall(_Strict):
    """A scripted model's step that calls a tool (`tools:`) instead of answering; string arguments are templates."""

    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


# A scripted reply: a template answering the iteration, or the iteration's steps (tool calls, then a
# template), step k for the iteration's k-th model call, the last repeated.
ScriptedReply = Union[str, list[Union[str, ScriptedToolCall]]]


class ModelRef(_Strict):
    """A model as the spec names it: a litellm model string plus connection and price details."""

    id: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    price: Price | None = None
    params: Params = Field(default_factory=dict)
    replies: list[ScriptedReply] | None = None
    name: str | None = None  # a display name (ledger, show, escalation events); defaults to `id`

    @model_validator(mode="after")
    def _replies_only_for_scripted(self) -> ModelRef:
        if self.id == SCRIPTED and not self.replies:
            raise ValueError("the loopkit/scripted model needs a non-empty `replies:` list (reply k answers iteration k)")
        if self.id != SCRIPTED and self.replies is not None:
            raise ValueError(f"found `replies:` on {self.id}; replies are only for the {SCRIPTED} model")
        return self

    @property
    def scripted(self) -> bool:
        return self.id == SCRIPTED

    @property
    def label(self) -> str:
        """How the ledger and `show` name this model: `name:` when given (two scripted models differ)."""
        return self.name or self.id


def _model_from_string(value: Any) -> Any:
    return {"id": value} if isinstance(value, str) else value


# A model may be written as a plain litellm string or as a mapping.
ModelSpec = Annotated[ModelRef, BeforeValidator(_model_from_string, json_schema_input_type=Union[str, ModelRef])]


class Task(_Strict):
    system: str | None = None
    prompt: str
    feedback: str = "{{ feedback }}"
    memory: Literal["conversation", "last"] = "conversation"


class _CheckerBase(_Strict):
    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)
    required: bool = False
    audit: bool = False


class EqualsChecker(_CheckerBase):
    type: Literal["equals"]
    expected: Any


class ContainsChecker(_CheckerBase):
    type: Literal["contains"]
    expected: Any


class NumberChecker(_CheckerBase):
    type: Literal["number"]
    expected: Any
    tolerance: float = Field(default=0.0, ge=0)


class RegexChecker(_CheckerBase):
    type: Literal["regex"]
    pattern: str


class JsonChecker(_CheckerBase):
    type: Literal["json"]
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")


class PythonChecker(_CheckerBase):
    type: Literal["python"]
    function: str = Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(default=60, gt=0)  # seconds; the checker's process is killed past it


class CommandChecker(_CheckerBase):
    type: Literal["command"]
    run: str
    timeout: float = Field(default=60, gt=0)
    env: list[str] = Field(default_factory=list)  # secret-named variables to pass through (others are dropped)


class JudgeChecker(_CheckerBase):
    type: Literal["judge"]
    rubric: str
    model: ModelSpec | None = None


Checker = Annotated[
    Union[
        EqualsChecker,
        ContainsChecker,
        NumberChecker,
        RegexChecker,
        JsonChecker,
        PythonChecker,
        CommandChecker,
        JudgeChecker,
    ],
    Field(discriminator="type"),
]
CHECKER_TYPES = ("equals", "contains", "number", "regex", "json", "python", "command", "judge")


_TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # what providers accept as a function name


class PythonTool(_Strict):
    """A Python function the model may call; its JSON schema comes from its type hints and docstring."""

    name: str = Field(pattern=_TOOL_NAME)
    type: Literal["python"]
    function: str = Field(pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
    description: str | None = None  # default: the function's docstring
    timeout: float = Field(default=60, gt=0)


class CommandTool(_Strict):
    """A shell command the model may call: arguments arrive as JSON on stdin and `LOOPKIT_ARG_<NAME>`."""

    name: str = Field(pattern=_TOOL_NAME)
    type: Literal["command"]
    run: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout: float = Field(default=60, gt=0)
    env: list[str] = Field(default_factory=list)  # secret-named variables to pass through (others are dropped)


class McpTools(_Strict):
    """Every tool an MCP server lists: a command started over stdio, or a streamable HTTP `url`."""

    name: str = Field(min_length=1)
    type: Literal["mcp"]
    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=60, gt=0)  # per tool call

    @model_validator(mode="after")
    def _one_transport(self) -> McpTools:
        if (self.command is None) == (self.url is None):
            raise ValueError("an mcp tool needs exactly one of `command:` (stdio) or `url:` (streamable HTTP)")
        return self


Tool = Annotated[Union[PythonTool, CommandTool, McpTools], Field(discriminator="type")]


class Agent(_Strict):
    max_steps: int = Field(default=10, ge=1)  # tool rounds per iteration


class Reward(_Strict):
    combine: Literal["weighted_mean", "min"] = "weighted_mean"
    pass_: float = Field(default=1.0, alias="pass", ge=0, le=1)


class Stop(_Strict):
    max_iterations: int = Field(default=3, ge=1)
    plateau: int | None = Field(default=None, ge=1)


class When(_Strict):
    iterations: int | None = Field(default=None, ge=1)
    reward_below: float | None = None
    failed: str | None = None
    plateau: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _not_empty(self) -> When:
        if all(v is None for v in (self.iterations, self.reward_below, self.failed, self.plateau)):
            raise ValueError("found no condition, expected at least one of: iterations, reward_below, failed, plateau")
        return self


class HumanStep(_Strict):
    """A hand-off to a person: what they are told, and how long a review is expected to take (priced by
    `human_rate`, weighed by `cheapest:` and `loopkit plan`)."""

    note: str = ""
    minutes: float | None = Field(default=None, gt=0)


HUMAN = "human"  # the person, as a `cheapest:` option

# A `cheapest:` option: a model (string or mapping), or `human` (a person, described by the entry's `human:`).
CheapestOption = Union[Literal["human"], ModelSpec]


class Escalation(_Strict):
    when: When
    model: ModelSpec | None = None
    human: str | HumanStep | None = None  # the note for the person, or {note, minutes}
    cheapest: list[CheapestOption] | None = None  # chosen per run by expected cost per success

    @model_validator(mode="after")
    def _one_action(self) -> Escalation:
        if self.cheapest is not None:
            people = sum(o == HUMAN for o in self.cheapest)
            if len(self.cheapest) < 2:
                raise ValueError("`cheapest:` needs at least two options to choose between (models, or `human`)")
            if self.model is not None:
                raise ValueError("found both `model:` and `cheapest:`, expected one of them (list the model under `cheapest:`)")
            if people > 1:
                raise ValueError("`cheapest:` lists `human` more than once")
            if self.human is not None and not people:
                raise ValueError("found `human:` beside a `cheapest:` list without `human`; add `human` to the list or drop `human:`")
            return self
        if self.model is not None and self.human is not None:
            raise ValueError("found both `model:` and `human:`, expected one of them (an escalation takes one action)")
        if self.model is None and self.human is None:
            raise ValueError("found none of `model:`, `human:`, `cheapest:`, expected one of them (the escalation's action)")
        return self

    @property
    def human_note(self) -> str:
        """What the person is told when the run is parked for them."""
        return self.human.note if isinstance(self.human, HumanStep) else (self.human or "")

    @property
    def human_minutes(self) -> float | None:
        """How long the spec expects the person's review to take (None: not said)."""
        return self.human.minutes if isinstance(self.human, HumanStep) else None

    @property
    def models(self) -> list[ModelRef]:
        """The models this entry may switch to: its `model:`, or the models among its `cheapest:` options."""
        if self.cheapest is not None:
            return [o for o in self.cheapest if isinstance(o, ModelRef)]
        return [self.model] if self.model is not None else []


class HumanRate(_Strict):
    """What a person's time costs: reviews are priced at it and kept apart from model spend."""

    usd_per_hour: float = Field(ge=0)


class Budget(_Strict):
    usd: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=None, gt=0)
    total_usd: float | None = Field(default=None, gt=0)

    @property
    def needs_prices(self) -> bool:
        return self.usd is not None or self.total_usd is not None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.usd, self.tokens, self.seconds, self.total_usd))


class WorkdirCopy(_Strict):
    copy_: str = Field(alias="copy", min_length=1)  # a folder, relative to the spec: each run works in its own copy of it


class OutputFile(_Strict):
    file: str = Field(min_length=1)  # a file the agent writes, relative to its work directory


class CommandWorker(_Strict):
    """An outside agent program as the worker: loopkit writes the task to a file, runs the program in its
    work directory and checks what it printed (or wrote); its model calls go through a metering endpoint."""

    type: Literal["command"]
    run: str = Field(min_length=1)  # a template: {{ task_file }}, {{ workdir }}, {{ spec_dir }} (shell-quoted), {{ iteration }}
    workdir: Literal["fresh"] | WorkdirCopy = "fresh"  # iterations of one run share it
    output: Literal["stdout"] | OutputFile = "stdout"
    timeout: float = Field(default=600, gt=0)  # seconds per iteration; the program's process group is killed past it
    env: list[str] = Field(default_factory=list)  # secret-named variables to pass through (never a model's key)


class LoopSpec(_Strict):
    version: Literal[1] = 1
    name: str = ""
    description: str = ""
    model: ModelSpec
    params: Params = Field(default_factory=dict)
    task: Task
    inputs: str | list[dict[str, Any]] | None = None
    checkers: list[Checker] = Field(default_factory=list)
    reward: Reward = Field(default_factory=Reward)
    stop: Stop = Field(default_factory=Stop)
    escalate: list[Escalation] = Field(default_factory=list)
    human_rate: HumanRate | None = None  # prices a person's minutes (reviews), kept apart from model spend
    budget: Budget = Field(default_factory=Budget)
    tools: list[Tool] = Field(default_factory=list)
    agent: Agent = Field(default_factory=Agent)
    worker: CommandWorker | None = None  # an outside agent instead of one model call per iteration

    # Not from YAML (NOT_FROM_YAML): where the spec came from, for relative paths and the ledger.
    path: Path | None = Field(default=None, exclude=True)
    source: str = Field(default="", exclude=True)
    # What the ledger said of this spec's `cheapest:` options before the batch started (human.Estimates,
    # set by the batch layer: the engine reads the ledger through nothing else).
    estimates: Any = Field(default=None, exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def hash(self) -> str:
        """Content hash of the spec text: a spec version in the ledger."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def params_for(self, model: ModelRef) -> dict[str, Any]:
        """Call parameters: the spec's, overridden by the model mapping's own."""
        return {**self.params, **model.params}

    def models(self) -> list[tuple[str, ModelRef]]:
        """Every model the spec may call, with where it is named (for validation)."""
        found: list[tuple[str, ModelRef]] = [("model", self.model)]
        found += [(f"escalate.{i}.model", e.model) for i, e in enumerate(self.escalate) if e.model]
        found += [(f"escalate.{i}.cheapest.{j}", o) for i, e in enumerate(self.escalate) for j, o in enumerate(e.cheapest or [])
                  if isinstance(o, ModelRef)]
        found += [
            (f"checkers.{i}.model", c.model or self.model)
            for i, c in enumerate(self.checkers)
            if isinstance(c, JudgeChecker)
        ]
        return found

    def with_model(self, model: str | ModelRef) -> LoopSpec:
        """The same spec on another worker model (`loopkit run --model`); a name the spec gives one of its
        models (its `name:`, else its `id`) means that model, mapping and all."""
        if isinstance(model, str):
            named = {m.label: m for _, m in reversed(self.models())}
            model = named.get(model, model)
        if isinstance(model, str):
            try:
                model = ModelRef(id=model)
            except ValidationError as exc:  # e.g. loopkit/scripted, which needs replies no option can give
                reason = "; ".join(str(e.get("ctx", {}).get("error") or e["msg"]) for e in exc.errors())
                raise UsageError(f"--model {model}: {reason}; set it in the spec instead") from None
        return self.model_copy(update={"model": model})


NOT_FROM_YAML = ("path", "source", "estimates")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file as written: YAML keys (`pass`, `schema`), no internal fields.

    Generated from the models, so it cannot drift from what `load_spec` accepts; checks that need
    more than one key (a budget needs `max_tokens`, `failed:` names a checker) are `loopkit check`'s.
    """
    schema = LoopSpec.model_json_schema(by_alias=True)
    for name in NOT_FROM_YAML:
        del schema["properties"][name]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "loopkit loop spec"}
