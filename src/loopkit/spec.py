"""Turn a YAML loop spec into a validated `LoopSpec`, or a list of problems located by file:line:col.

Nothing else in loopkit parses spec YAML. Every error names where it is, the key, what was found
and what was expected, so `loopkit check` can report all problems at once.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import SpecError
from .templates import template_problem

SCRIPTED = "loopkit/scripted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Price(_Strict):
    """USD per million tokens; overrides litellm's price table for this model."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class ModelRef(_Strict):
    """A model as the spec names it: a litellm model string plus connection and price details."""

    id: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    price: Price | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    replies: list[str] | None = None

    @model_validator(mode="after")
    def _replies_only_for_scripted(self) -> ModelRef:
        if self.id == SCRIPTED and not self.replies:
            raise ValueError("the loopkit/scripted model needs a non-empty `replies:` list")
        if self.id != SCRIPTED and self.replies is not None:
            raise ValueError("`replies:` is only for the loopkit/scripted model")
        return self

    @property
    def scripted(self) -> bool:
        return self.id == SCRIPTED

    @property
    def label(self) -> str:
        return self.id


def _model_from_string(value: Any) -> Any:
    return {"id": value} if isinstance(value, str) else value


# A model may be written as a plain litellm string or as a mapping.
ModelSpec = Annotated[ModelRef, BeforeValidator(_model_from_string)]


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


class CommandChecker(_CheckerBase):
    type: Literal["command"]
    run: str
    timeout: float = Field(default=60, gt=0)


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
            raise ValueError("`when:` needs at least one of iterations, reward_below, failed, plateau")
        return self


class Escalation(_Strict):
    when: When
    model: ModelSpec | None = None
    human: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Escalation:
        if (self.model is None) == (self.human is None):
            raise ValueError("an escalation takes exactly one action: `model:` or `human:`")
        return self


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


class LoopSpec(_Strict):
    version: Literal[1] = 1
    name: str = ""
    description: str = ""
    model: ModelSpec
    params: dict[str, Any] = Field(default_factory=dict)
    task: Task
    inputs: str | list[dict[str, Any]] | None = None
    checkers: list[Checker] = Field(default_factory=list)
    reward: Reward = Field(default_factory=Reward)
    stop: Stop = Field(default_factory=Stop)
    escalate: list[Escalation] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)

    # Not from YAML: where the spec came from, for relative paths and the ledger.
    path: Path | None = Field(default=None, exclude=True)
    source: str = Field(default="", exclude=True)

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
        found += [
            (f"checkers.{i}.model", c.model or self.model)
            for i, c in enumerate(self.checkers)
            if isinstance(c, JudgeChecker)
        ]
        return found

    def with_model(self, model: str | ModelRef) -> LoopSpec:
        """The same spec on another worker model (`loopkit run --model`)."""
        ref = ModelRef(id=model) if isinstance(model, str) else model
        return self.model_copy(update={"model": ref})


# --- YAML with positions -------------------------------------------------------------------

Position = tuple[int, int]


def _positions(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], Position]) -> None:
    """Map every key path to the (line, col) of its value node, 1-based."""
    out[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key, "__key__")] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _positions(value_node, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, path + (i,), out)


def _locate(loc: tuple[Any, ...], positions: dict[tuple[Any, ...], Position]) -> tuple[tuple[Any, ...], Position]:
    """Find the deepest YAML position for a pydantic error location (which may hold union tags)."""
    path: tuple[Any, ...] = ()
    for part in loc:
        if path + (part,) in positions:
            path = path + (part,)
    return path, positions.get(path, (1, 1))


_FIELD_ALIASES = {"pass_": "pass", "json_schema": "schema"}


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name not in ("path", "source")]


def _model_at(path: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at `path`, for did-you-mean suggestions."""
    model: Any = LoopSpec
    node = data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        node = node.get(part) if isinstance(node, dict) else None
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        ann = field.annotation
        model = _resolve_model(ann, node)
        if model is None:
            return None
    return model


def _resolve_model(ann: Any, node: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        if typing.get_origin(arg) is list:
            return _resolve_model(typing.get_args(arg)[0], node)
        if typing.get_origin(arg) is Annotated or typing.get_origin(arg) is Union:
            found = _resolve_model(arg, node)
            if found:
                return found
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            type_field = arg.model_fields.get("type")
            if type_field is None:
                return arg
            if isinstance(node, dict) and node.get("type") in typing.get_args(type_field.annotation):
                return arg
    return None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(file: str, pos: Position, key: str, message: str) -> str:
    return f"{file}:{pos[0]}:{pos[1]}: {key}: {message}"


def _pydantic_problems(err: ValidationError, data: Any, positions: dict, file: str) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path, pos = _locate(loc, positions)
        key = ".".join(str(p) for p in path) or "(top level)"
        kind = e["type"]
        if kind == "extra_forbidden":
            bad = loc[-1]
            key_path = path if path and path[-1] == bad else path + (bad,)
            pos = positions.get(key_path + ("__key__",), pos)
            parent = _model_at(key_path[:-1], data)
            allowed = _allowed_keys(parent) if parent else []
            close = difflib.get_close_matches(str(bad), allowed, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            expected = f" (expected one of: {', '.join(allowed)})" if allowed else ""
            problems.append(_problem(file, pos, ".".join(map(str, key_path)), f"unknown key{hint}{expected}"))
            continue
        if kind == "missing":
            missing = loc[-1]
            problems.append(_problem(file, pos, key, f"missing required key `{_FIELD_ALIASES.get(missing, missing)}`"))
            continue
        if kind == "union_tag_invalid":
            ctx = e.get("ctx", {})
            problems.append(
                _problem(file, pos, key + ".type", f"found {ctx.get('tag')!r}, expected one of {ctx.get('expected_tags')}")
            )
            continue
        if kind == "union_tag_not_found":
            problems.append(_problem(file, pos, key, "missing required key `type`"))
            continue
        found = f"found {_describe(e['input'])}, " if "input" in e and not isinstance(e["input"], dict) else ""
        message = e["msg"].removeprefix("Value error, ")
        problems.append(_problem(file, pos, key, f"{found}expected: {message}"))
    return problems


def _semantic_problems(spec: LoopSpec, positions: dict, file: str) -> list[str]:
    """Problems pydantic cannot see: cross references, templates, budget requirements."""
    problems: list[str] = []

    def at(*path: Any) -> Position:
        return positions.get(tuple(path), positions.get((), (1, 1)))

    names = [c.name for c in spec.checkers]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(_problem(file, at("checkers", i, "name"), f"checkers.{i}.name", f"duplicate checker name {name!r}"))
    for i, esc in enumerate(spec.escalate):
        if esc.when.failed is not None and esc.when.failed not in names:
            close = difflib.get_close_matches(esc.when.failed, names, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            problems.append(
                _problem(file, at("escalate", i, "when", "failed"), f"escalate.{i}.when.failed",
                         f"found {esc.when.failed!r}, expected a checker name ({', '.join(names) or 'none defined'}){hint}")
            )
    templates: list[tuple[tuple[Any, ...], str]] = [(("task", "prompt"), spec.task.prompt), (("task", "feedback"), spec.task.feedback)]
    if spec.task.system:
        templates.append((("task", "system"), spec.task.system))
    for i, c in enumerate(spec.checkers):
        if isinstance(c, (EqualsChecker, ContainsChecker, NumberChecker)) and isinstance(c.expected, str):
            templates.append((("checkers", i, "expected"), c.expected))
    for path, model in spec.models():
        for j, reply in enumerate(model.replies or []):
            base = tuple(int(p) if p.isdigit() else p for p in path.split("."))
            templates.append((base + ("replies", j), reply))
    for path, text in templates:
        problem = template_problem(text)
        if problem:
            line, col = at(*path)
            # a block scalar's text starts on the line after its indicator
            offset = problem[0] - 1 + (1 if "\n" in text.rstrip("\n") or text.endswith("\n") else 0)
            problems.append(_problem(file, (line + offset, col if offset == 0 else 1), ".".join(map(str, path)), problem[1]))
    for i, c in enumerate(spec.checkers):
        if isinstance(c, PythonChecker):
            rel = c.function.split(":")[0]
            if not (spec.base_dir / rel).is_file():
                problems.append(_problem(file, at("checkers", i, "function"), f"checkers.{i}.function",
                                         f"found {c.function!r}, but {spec.base_dir / rel} does not exist"))
    if isinstance(spec.inputs, str) and not (spec.base_dir / spec.inputs).is_file():
        problems.append(_problem(file, at("inputs"), "inputs", f"found {spec.inputs!r}, but {spec.base_dir / spec.inputs} does not exist"))
    if spec.budget.any:
        problems += _budget_problems(spec, positions, file)
    return problems


def _budget_problems(spec: LoopSpec, positions: dict, file: str) -> list[str]:
    from .prices import known_price

    problems = []
    seen: set[str] = set()
    for path, model in spec.models():
        where = tuple(int(p) if p.isdigit() else p for p in path.split("."))
        pos = positions.get(where, positions.get(("budget",), (1, 1)))
        if path in seen:
            continue
        seen.add(path)
        if spec.budget.tokens is not None or spec.budget.needs_prices:
            if not spec.params_for(model).get("max_tokens"):
                problems.append(_problem(file, pos, path, f"a budget is set, so {model.id} needs `max_tokens` in `params:` "
                                         "(the worst case of a call is its prompt plus max_tokens)"))
        if spec.budget.needs_prices and known_price(model) is None:
            problems.append(_problem(file, pos, path, f"a budget is set but the price of {model.id} is unknown; add "
                                     "`price: {input_per_mtok: ..., output_per_mtok: ...}` to its mapping"))
    return problems


def parse_spec(text: str, *, path: Path | None = None, display: str | None = None) -> LoopSpec:
    """Validate spec text; raise SpecError listing every problem with file:line:col."""
    file = display or (str(path) if path else "<spec>")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError([_problem(file, pos, "(yaml)", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{file}:1:1: (top level): found {_describe(data)}, expected a mapping of spec keys (task, model, checkers, ...)"])
    positions: dict[tuple[Any, ...], Position] = {}
    _positions(node, (), positions)
    data.setdefault("name", path.stem if path else "spec")
    try:
        spec = LoopSpec.model_validate({**data, "path": path, "source": text})
    except ValidationError as err:
        raise SpecError(_pydantic_problems(err, data, positions, file)) from None
    problems = _semantic_problems(spec, positions, file)
    if problems:
        raise SpecError(problems)
    return spec


def load_spec(path: str | Path) -> LoopSpec:
    """Read and validate a spec file (see SPEC.md §1)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{p}: no such spec file"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise SpecError([f"{p}: cannot read: {exc.strerror}"]) from None
    return parse_spec(text, path=p.resolve(), display=str(p))
