"""Problems pydantic cannot see: references between keys, templates, regexes, schemas, files, budgets."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from ..templates import template_problem
from .messages import describe, did_you_mean
from .positions import Located, Path_, Position, Problems
from .schema import Budget, ModelSpec

PROMPT_VARIABLES = ("case",)
FEEDBACK_VARIABLES = ("case", "feedback", "reward", "iteration")
REPLY_VARIABLES = ("case", "iteration", "feedback", "output")
WORKER_VARIABLES = ("task_file", "workdir", "spec_dir", "iteration")  # not `case`: case data never reaches a shell string


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


def semantic_problems(data: dict[str, Any], base_dir: Path, where: Located, source: str, out: Problems) -> None:
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
                        f"({', '.join(names) or 'none defined'}){did_you_mean(failed, names)}")

    # Templates: syntax, and variables that will not exist when they are rendered.
    templates: list[tuple[Path_, Any, tuple[str, ...]]] = []
    task = data.get("task") if isinstance(data.get("task"), dict) else {}
    templates += [(("task", "system"), task.get("system"), PROMPT_VARIABLES),
                  (("task", "prompt"), task.get("prompt"), PROMPT_VARIABLES),
                  (("task", "feedback"), task.get("feedback"), FEEDBACK_VARIABLES)]
    worker = data.get("worker") if isinstance(data.get("worker"), dict) else {}
    templates.append((("worker", "run"), worker.get("run"), WORKER_VARIABLES))
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
                out.add(where.value_at(path), path, f"found {describe(c['pattern'])}, expected a regular expression: {exc}")
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
    _key_problems(data, checkers, where, out)
    _worker_problems(data, worker, checkers, base_dir, where, out)
    _tool_problems(data, base_dir, where, out)


_FUNCTION = re.compile(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")
INPUT_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".yaml", ".yml")


def _schema_problem(schema: dict[str, Any], path: Path_, where: Located, out: Problems) -> None:
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        at = "/".join(map(str, exc.path))
        out.add(where.value_at(path), path, f"not a valid JSON Schema{f' (at `{at}`)' if at else ''}: {exc.message}")


def _function_problem(reference: str, base_dir: Path, path: Path_, where: Located, out: Problems, kind: str = "checker") -> None:
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
        out.add(pos, path, f"{file}:{exc.lineno}: the {kind} file has a syntax error: {exc.msg}")
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
    out.add(pos, path, f"found {reference!r}, but {rel} defines no `{name}`{did_you_mean(name, functions)}")


def _model_mappings(data: dict[str, Any], checkers: list[tuple[int, dict[str, Any]]]) -> list[tuple[Path_, Any]]:
    """Every model the spec names, as written, with where: the worker, escalations, judges."""
    found: list[tuple[Path_, Any]] = [(("model",), data.get("model"))]
    found += [(("escalate", i, "model"), e["model"]) for i, e in _dicts(data.get("escalate")) if e.get("model") is not None]
    found += [(("escalate", i, "cheapest", j), o) for i, e in _dicts(data.get("escalate")) if isinstance(e.get("cheapest"), list)
              for j, o in enumerate(e["cheapest"]) if o != "human"]
    found += [(("checkers", i, "model"), c["model"]) for i, c in checkers
              if c.get("type") == "judge" and c.get("model") is not None]
    return found


_MODEL = TypeAdapter(ModelSpec)


def _budget_problems(data: dict[str, Any], checkers: list[tuple[int, dict[str, Any]]], where: Located, out: Problems) -> None:
    """budget.py decides what a cap needs of each model; this places its answers in the file."""
    from ..budget import model_budget_problems

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
        for problem in model_budget_problems(model, {**spec_params, **model.params}, budget):
            out.add(where.value_at(path), path, problem)


def _worker_problems(data: dict[str, Any], worker: dict[str, Any], checkers: list[tuple[int, dict[str, Any]]],
                     base_dir: Path, where: Located, out: Problems) -> None:
    """An outside agent's folder to copy must exist, and the agent is never handed a model's key."""
    workdir = worker.get("workdir")
    copy = workdir.get("copy") if isinstance(workdir, dict) else None
    if isinstance(copy, str) and not (base_dir / copy).is_dir():
        path: Path_ = ("worker", "workdir", "copy")
        out.add(where.value_at(path), path, f"found {copy!r}, but {base_dir / copy} is not a folder")
    keys = {"OPENAI_API_KEY"}  # the agent's is the run's token for the metering endpoint
    for _, model in _model_mappings(data, checkers):
        model_id = model.get("id") if isinstance(model, dict) else model
        if isinstance(model, dict) and isinstance(model.get("api_key_env"), str):
            keys.add(model["api_key_env"])
        elif isinstance(model_id, str) and "/" in model_id:
            keys.add(f"{model_id.split('/', 1)[0].upper()}_API_KEY")
    env = worker.get("env")
    for i, name in enumerate(env if isinstance(env, list) else []):
        if name in keys:
            path = ("worker", "env", i)
            out.add(where.value_at(path), path, f"found {name!r}, which holds a model's key: an outside agent reaches models "
                                                "only through loopkit's metering endpoint and is never given a model's key")


def _tool_problems(data: dict[str, Any], base_dir: Path, where: Located, out: Problems) -> None:
    """With `tools:`, a python tool's file must define its function, and every worker model (the spec's,
    an escalation's) must be one litellm's table says can call tools: else the run would fail at its first call."""
    from ..prices import tools_problem

    tools = _dicts(data.get("tools"))
    if not tools:
        return
    for i, t in tools:
        if t.get("type") == "python" and isinstance(t.get("function"), str) and _FUNCTION.match(t["function"]):
            _function_problem(t["function"], base_dir, ("tools", i, "function"), where, out, "tool")
    if isinstance(data.get("worker"), dict):  # an outside agent is the worker: no model call would be offered them
        out.add(where.value_at(("tools",)), ("tools",), "`tools:` are offered to the worker model, but `worker:` makes an "
                "outside agent the worker, which brings its own tools; drop one of the two")
        return
    workers = [(path, m) for path, m in _model_mappings(data, []) if path[0] != "checkers"]
    for path, model in workers:
        model_id = model.get("id") if isinstance(model, dict) else model
        if isinstance(model_id, str) and not (isinstance(model, dict) and model.get("api_base")):
            problem = tools_problem(model_id)
            if problem:
                out.add(where.value_at(path), path, problem)


_USE_ENV = ("; a spec is shared and committed, so keep keys out of it: put the key in an environment variable "
            "and name the variable with `api_key_env: VAR` in the model mapping")


def _strings(value: Any, path: Path_) -> list[tuple[Path_, str]]:
    """Every string in a nested value, with its path."""
    if isinstance(value, str):
        return [(path, value)]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [found for key, item in items for found in _strings(item, path + (key,))]


def _key_problems(data: dict[str, Any], checkers: list[tuple[int, dict[str, Any]]], where: Located, out: Problems) -> None:
    """A literal API key in `params:` or a model mapping: named like one (`api_key: ...`) or shaped like one."""
    from ..redact import is_secret_name, looks_like_key

    places = [(("params",), data.get("params"))] + [(path, m) for path, m in _model_mappings(data, checkers) if isinstance(m, dict)]
    for base, value in places:
        for path, text in _strings(value, base):
            name = path[-1] if isinstance(path[-1], str) else ""
            if text and path[-1] != "api_key_env" and is_secret_name(name.replace("-", "_")):
                out.add(where.value_at(path), path, f"found a literal key in `{name}`{_USE_ENV}")
            elif looks_like_key(text):
                out.add(where.value_at(path), path, f"found what looks like an API key{_USE_ENV}")
