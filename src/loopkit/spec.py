"""Turn a YAML loop spec into a validated `LoopSpec`, or a list of problems located by file:line:col.

Nothing else in loopkit parses spec YAML. Every error names where it is, the key, what was found
and what was expected, so `loopkit check` can report all problems at once.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .errors import SpecError
from .templates import template_problem

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


class ModelRef(_Strict):
    """A model as the spec names it: a litellm model string plus connection and price details."""

    id: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    price: Price | None = None
    params: Params = Field(default_factory=dict)
    replies: list[str] | None = None
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
CHECKER_TYPES = ("equals", "contains", "number", "regex", "json", "python", "command", "judge")


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


class Escalation(_Strict):
    when: When
    model: ModelSpec | None = None
    human: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Escalation:
        if self.model is not None and self.human is not None:
            raise ValueError("found both `model:` and `human:`, expected one of them (an escalation takes one action)")
        if self.model is None and self.human is None:
            raise ValueError("found neither `model:` nor `human:`, expected one of them (the escalation's action)")
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
    params: Params = Field(default_factory=dict)
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
Path_ = tuple[Any, ...]


class _Located:
    """The YAML document's nodes by key path, so every problem can name its line and column (1-based)."""

    def __init__(self, root: yaml.Node | None, loader: yaml.SafeLoader) -> None:
        self.values: dict[Path_, yaml.Node] = {}
        self.keys: dict[Path_, yaml.Node] = {}
        self.duplicates: list[tuple[Path_, yaml.Node, yaml.Node]] = []
        if root is not None:
            self._walk(root, (), loader, set())

    def _walk(self, node: yaml.Node, path: Path_, loader: yaml.SafeLoader, stack: set[int]) -> None:
        self.values[path] = node
        if id(node) in stack:  # a recursive alias (&a [*a]): nothing more to locate
            return
        stack = stack | {id(node)}
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else key_node.value
                try:
                    first = self.keys.get(path + (key,))
                except TypeError:  # an unhashable key; the YAML constructor reports it
                    continue
                if first is not None and key != "<<":
                    self.duplicates.append((path + (key,), key_node, first))
                self.keys[path + (key,)] = key_node
                self._walk(value_node, path + (key,), loader, stack)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,), loader, stack)

    @staticmethod
    def _pos(node: yaml.Node) -> Position:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def value_at(self, path: Path_) -> Position:
        """Where the value at `path` starts; the nearest enclosing value when `path` is not in the file."""
        while path not in self.values and path:
            path = path[:-1]
        node = self.values.get(path)
        return self._pos(node) if node is not None else (1, 1)

    def key_at(self, path: Path_) -> Position:
        """Where the key of `path` is written; else where its value is."""
        node = self.keys.get(path)
        return self._pos(node) if node is not None else self.value_at(path)

    def locate(self, loc: tuple[Any, ...]) -> Path_:
        """The deepest path in the file along a pydantic error location (which may hold union tags)."""
        path: Path_ = ()
        for part in loc:
            if path + (part,) in self.values:
                path = path + (part,)
        return path


def _key(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


class _Problems:
    """Problems found so far, each at a position; reported in file order."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._found: list[tuple[Position, str]] = []

    def add(self, pos: Position, path: Path_ | str, message: str) -> None:
        key = path if isinstance(path, str) else _key(path)
        text = f"{self.file}:{pos[0]}:{pos[1]}: {key}: {message}"
        if all(text != seen for _, seen in self._found):
            self._found.append((pos, text))

    def __bool__(self) -> bool:
        return bool(self._found)

    def sorted(self) -> list[str]:
        return [text for _, text in sorted(self._found, key=lambda p: p[0])]


# --- pydantic errors, in the spec's words --------------------------------------------------

_FIELD_ALIASES = {"pass_": "pass", "json_schema": "schema"}
_NOT_FROM_YAML = ("path", "source")


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name not in _NOT_FROM_YAML]


def _unwrap(ann: Any) -> list[Any]:
    """The alternatives of an annotation: `A | B`, `Annotated[A, ...]` and `Optional[A]` flattened."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _unwrap(typing.get_args(ann)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(ann) for alt in _unwrap(arg)]
    return [ann]


def _model_for(ann: Any, node: Any) -> type[BaseModel] | None:
    """The pydantic model that reads `node` under annotation `ann` (a checker is chosen by its `type`)."""
    for alt in _unwrap(ann):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            tag = alt.model_fields.get("type")
            if tag is None or (isinstance(node, dict) and node.get("type") in typing.get_args(tag.annotation)):
                return alt
    return None


def _model_at(path: Path_, data: Any) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at `path`, for did-you-mean suggestions."""
    ann: Any = LoopSpec
    node = data
    for part in path:
        if isinstance(part, int):
            lists = [a for a in _unwrap(ann) if typing.get_origin(a) is list]
            if not lists:
                return None
            ann = typing.get_args(lists[0])[0]
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        model = _model_for(ann, node)
        if model is None:
            return None
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        ann = field.annotation
        node = node.get(part) if isinstance(node, dict) else None
    return _model_for(ann, node)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


_EXPECTED = {
    "dict_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _expected(e: dict[str, Any], path: Path_) -> str:
    kind = e["type"]
    if kind == "model_type":
        if e.get("ctx", {}).get("class_name") == "ModelRef":
            return "a litellm model name or a mapping with `id:`"
        return "a mapping"
    if kind == "string_pattern_mismatch" and path and path[-1] == "function":
        return "`file.py:function_name` (a Python file relative to the spec, a colon, a function name)"
    if kind == "literal_error":
        return f"{e['ctx']['expected']}"
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    return e["msg"].removeprefix("Input should be ")


def _pydantic_problems(err: ValidationError, data: Any, where: _Located, out: _Problems) -> None:
    mismatches: dict[Path_, tuple[Any, list[str]]] = {}
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path = where.locate(loc)
        kind = e["type"]
        if kind in ("extra_forbidden", "invalid_key"):
            bad = loc[-1]
            key_path = path if path and path[-1] == bad else path + (bad,)
            if kind == "invalid_key":
                out.add(where.key_at(key_path), key_path, f"found the key {bad!r}, expected a name (a string)")
                continue
            parent = _model_at(key_path[:-1], data)
            allowed = _allowed_keys(parent) if parent else []
            expected = f" (expected one of: {', '.join(allowed)})" if allowed else ""
            out.add(where.key_at(key_path), key_path, f"unknown key{_did_you_mean(str(bad), allowed)}{expected}")
        elif kind == "missing":
            name = _FIELD_ALIASES.get(loc[-1], loc[-1])
            out.add(where.value_at(path), path + (name,), "missing; this key is required")
        elif kind == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            found = ctx.get("tag")
            out.add(where.value_at(path + ("type",)), path + ("type",),
                    f"found {found!r}, expected one of: {', '.join(tags)}{_did_you_mean(str(found), tags)}")
        elif kind == "union_tag_not_found":
            out.add(where.value_at(path), path + ("type",), f"missing; this key is required (one of: {', '.join(CHECKER_TYPES)})")
        elif kind == "value_error":
            out.add(where.value_at(path), path, e["msg"].removeprefix("Value error, "))
        else:
            found, expected = mismatches.setdefault(path, (e.get("input"), []))
            text = _expected(e, path)
            if text not in expected:
                expected.append(text)
    for path, (found, expected) in mismatches.items():
        shown = "" if isinstance(found, dict) else f"found {_describe(found)}, "
        out.add(where.value_at(path), path, f"{shown}expected {' or '.join(expected)}")


# --- what pydantic cannot see: references, templates, files, budgets -----------------------

PROMPT_VARIABLES = ("case",)
FEEDBACK_VARIABLES = ("case", "feedback", "reward", "iteration")
REPLY_VARIABLES = ("case", "iteration", "feedback", "output")


def _dicts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _template_pos(node: yaml.Node | None, line: int, source: list[str]) -> Position:
    """Where line `line` (1-based) of a template written as YAML scalar `node` is in the file."""
    if node is None:
        return 1, 1
    start = node.start_mark.line  # 0-based
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        # A block scalar's text starts on the line after its `|` or `>` indicator; a literal block
        # keeps its lines, a folded one does not (there the first line is the best we know).
        last = node.end_mark.line - 1 if node.end_mark.column == 0 else node.end_mark.line
        row = min(start + (line if node.style == "|" else 1), max(last, start + 1))
        text = source[row] if row < len(source) else ""
        return row + 1, len(text) - len(text.lstrip(" ")) + 1
    return start + 1, node.start_mark.column + 1


def _semantic_problems(data: dict[str, Any], base_dir: Path, where: _Located, source: str, out: _Problems) -> None:
    lines = source.splitlines()
    checkers = _dicts(data.get("checkers"))
    names = [c.get("name") for _, c in checkers if isinstance(c.get("name"), str)]
    for n, (i, c) in enumerate(checkers):
        name = c.get("name")
        if isinstance(name, str) and name in names[:n]:
            out.add(where.value_at(("checkers", i, "name")), ("checkers", i, "name"), f"duplicate checker name {name!r}")
    if isinstance(data.get("checkers", []), list):
        for i, esc in _dicts(data.get("escalate")):
            failed = esc.get("when", {}).get("failed") if isinstance(esc.get("when"), dict) else None
            if isinstance(failed, str) and failed not in names:
                path = ("escalate", i, "when", "failed")
                out.add(where.value_at(path), path, f"found {failed!r}, expected the name of a checker "
                        f"({', '.join(names) or 'none defined'}){_did_you_mean(failed, names)}")

    # Templates: syntax, and variables that will not exist when they are rendered.
    templates: list[tuple[Path_, Any, tuple[str, ...]]] = []
    task = data.get("task") if isinstance(data.get("task"), dict) else {}
    templates += [(("task", "system"), task.get("system"), PROMPT_VARIABLES),
                  (("task", "prompt"), task.get("prompt"), PROMPT_VARIABLES),
                  (("task", "feedback"), task.get("feedback"), FEEDBACK_VARIABLES)]
    for i, c in checkers:
        if c.get("type") in ("equals", "contains", "number"):
            templates.append((("checkers", i, "expected"), c.get("expected"), PROMPT_VARIABLES))
    for path, model in _model_mappings(data, checkers):
        replies = model.get("replies") if isinstance(model, dict) else None
        if isinstance(replies, list):
            templates += [(path + ("replies", j), reply, REPLY_VARIABLES) for j, reply in enumerate(replies)]
    for path, text, variables in templates:
        if not isinstance(text, str):
            continue
        problem = template_problem(text, variables)
        if problem:
            out.add(_template_pos(where.values.get(path), problem[0], lines), path, problem[1])

    # Checkers whose settings can be checked before a run: patterns, schemas, files.
    for i, c in checkers:
        kind = c.get("type")
        if kind == "regex" and isinstance(c.get("pattern"), str):
            try:
                re.compile(c["pattern"])
            except re.error as exc:
                path = ("checkers", i, "pattern")
                out.add(where.value_at(path), path, f"found {_describe(c['pattern'])}, expected a regular expression: {exc}")
        elif kind == "json" and isinstance(c.get("schema"), dict):
            _schema_problem(c["schema"], ("checkers", i, "schema"), where, out)
        elif kind == "python" and isinstance(c.get("function"), str) and _FUNCTION.match(c["function"]):
            _function_problem(c["function"], base_dir, ("checkers", i, "function"), where, out)

    inputs = data.get("inputs")
    if isinstance(inputs, str):
        file = base_dir / inputs
        if Path(inputs).suffix.lower() not in INPUT_SUFFIXES:
            out.add(where.value_at(("inputs",)), ("inputs",),
                    f"found {inputs!r}, expected a {', '.join(INPUT_SUFFIXES)} file or an inline list of cases")
        elif not file.is_file():
            out.add(where.value_at(("inputs",)), ("inputs",), f"found {inputs!r}, but {file} does not exist")
    _budget_problems(data, checkers, where, out)


_FUNCTION = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
INPUT_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".yaml", ".yml")


def _schema_problem(schema: dict[str, Any], path: Path_, where: _Located, out: _Problems) -> None:
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        at = "/".join(map(str, exc.path))
        out.add(where.value_at(path), path, f"not a valid JSON Schema{f' (at `{at}`)' if at else ''}: {exc.message}")


def _function_problem(reference: str, base_dir: Path, path: Path_, where: _Located, out: _Problems) -> None:
    """The file must exist and, as far as reading it (not running it) tells, define the function."""
    rel, name = reference.split(":")
    file = base_dir / rel
    pos = where.value_at(path)
    if not file.is_file():
        out.add(pos, path, f"found {reference!r}, but {file} does not exist")
        return
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError as exc:
        out.add(pos, path, f"{file}:{exc.lineno}: the checker file has a syntax error: {exc.msg}")
        return
    except (OSError, ValueError):
        return  # unreadable here: the checker reports it when it runs
    defined: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in stmt.names):
                return  # names we cannot see without running it
            defined.update((alias.asname or alias.name).split(".")[0] for alias in stmt.names)
        else:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    defined.add(node.id)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defined.add(node.name)  # defined under an `if` or `try`
    if "__getattr__" in defined or name in defined:
        return
    functions = sorted(n for n in defined if not n.startswith("_"))
    out.add(pos, path, f"found {reference!r}, but {rel} defines no `{name}`{_did_you_mean(name, functions)}")


def _model_mappings(data: dict[str, Any], checkers: list[tuple[int, dict[str, Any]]]) -> list[tuple[Path_, Any]]:
    """Every model the spec names, as written, with where: the worker, escalations, judges."""
    found: list[tuple[Path_, Any]] = [(("model",), data.get("model"))]
    found += [(("escalate", i, "model"), e["model"]) for i, e in _dicts(data.get("escalate")) if e.get("model") is not None]
    found += [(("checkers", i, "model"), c["model"]) for i, c in checkers
              if c.get("type") == "judge" and c.get("model") is not None]
    return found


_MODEL = TypeAdapter(ModelSpec)


def _budget_problems(data: dict[str, Any], checkers: list[tuple[int, dict[str, Any]]], where: _Located, out: _Problems) -> None:
    from .prices import known_price

    try:
        budget = Budget.model_validate(data.get("budget") or {})
    except ValidationError:
        return  # reported with the other type errors
    if not budget.any:
        return
    spec_params = data.get("params") if isinstance(data.get("params"), dict) else {}
    for path, value in _model_mappings(data, checkers):
        try:
            model = _MODEL.validate_python(value)
        except ValidationError:
            continue
        pos = where.value_at(path)
        if (budget.tokens is not None or budget.needs_prices) and not {**spec_params, **model.params}.get("max_tokens"):
            out.add(pos, path, f"a budget is set, so {model.id} needs `max_tokens` in `params:` "
                    "(the worst case of a call is its prompt plus max_tokens)")
        if budget.needs_prices and known_price(model) is None:
            out.add(pos, path, f"a budget is set but the price of {model.id} is unknown; add "
                    "`price: {input_per_mtok: ..., output_per_mtok: ...}` to its mapping")


# --- entry points --------------------------------------------------------------------------


def _position_of_offset(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _compose(text: str, file: str) -> tuple[Any, _Located]:
    try:
        loader = yaml.SafeLoader(text)  # the reader already rejects control characters here
    except yaml.reader.ReaderError as exc:
        line, col = _position_of_offset(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise SpecError([f"{file}:{line}:{col}: (yaml): not valid YAML: the control character U+{code:04X} is not allowed"]) from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        return data, _Located(node, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError([f"{file}:{pos[0]}:{pos[1]}: (yaml): not valid YAML: {getattr(exc, 'problem', None) or exc}"]) from None
    finally:
        loader.dispose()


def parse_spec(text: str, *, path: Path | None = None, display: str | None = None) -> LoopSpec:
    """Validate spec text; raise SpecError listing every problem with file:line:col."""
    file = display or (str(path) if path else "<spec>")
    data, where = _compose(text, file)
    if data is None:
        raise SpecError([f"{file}:1:1: (top level): the spec is empty; expected a mapping of spec keys (model, task, checkers, ...)"])
    if not isinstance(data, dict):
        raise SpecError([f"{file}:1:1: (top level): found {_describe(data)}, expected a mapping of spec keys (model, task, checkers, ...)"])
    out = _Problems(file)
    for key_path, node, first in where.duplicates:
        out.add(_Located._pos(node), key_path, f"duplicate key (first at line {first.start_mark.line + 1}); "
                "YAML silently keeps only the last, so remove one")
    for reserved in _NOT_FROM_YAML:
        if reserved in data:
            data = {k: v for k, v in data.items() if k != reserved}
            allowed = _allowed_keys(LoopSpec)
            out.add(where.key_at((reserved,)), (reserved,), f"unknown key (expected one of: {', '.join(allowed)})")
    data.setdefault("name", path.stem if path else "spec")
    spec: LoopSpec | None = None
    try:
        spec = LoopSpec.model_validate({**data, "path": path, "source": text})
    except ValidationError as err:
        _pydantic_problems(err, data, where, out)
    base_dir = path.parent if path else Path.cwd()
    _semantic_problems(data, base_dir, where, text, out)
    if out or spec is None:
        raise SpecError(out.sorted())
    return spec


def load_spec(path: str | Path) -> LoopSpec:
    """Read and validate a spec file (see SPEC.md §1)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError([f"{p}: no such spec file"]) from None
    except IsADirectoryError:
        raise SpecError([f"{p}: is a directory, expected a spec file"]) from None
    except OSError as exc:
        raise SpecError([f"{p}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        data, start = exc.object, exc.start
        line = data.count(b"\n", 0, start) + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise SpecError([f"{p}:{line}:{col}: (file): not UTF-8 text ({exc.reason}: byte {data[start]:#04x}); "
                         "save the spec as UTF-8"]) from None
    return parse_spec(text, path=p.resolve(), display=str(p))
