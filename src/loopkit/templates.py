"""Jinja2 rendering for prompts, feedback, expected values and scripted replies.

Sandboxed and strict: case data is only ever a value passed in, never compiled as a template, and a
misspelt variable is an error rather than an empty string.

Templates are compiled once per source. Inside `case_templates(case)` (the engine opens one per run), a
template that can only depend on the case (a prompt, a system message, a checker's expected value, a
scripted reply naming nothing else) is rendered once and its text reused on every later iteration;
one that names `iteration`, `feedback`, `output` or any other variable is rendered every time.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .redact import safe_text

# Immutable: a template cannot change the case (or any list or dict) it is given, so one render
# never leaks into the next (the case is shared by the prompt, the checkers and every iteration).
_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


class TemplateError(Exception):
    """A template failed to render (e.g. it names a variable the case does not have)."""


@lru_cache(maxsize=1024)
def _compile(text: str) -> Template:
    template = _env.from_string(text)
    # A template's globals are a ChainMap over the environment's, which every render copies entry by entry
    # (two thirds of a small render's CPU); ours never change after start-up, so one flat dict serves.
    template.globals = dict(template.globals)
    return template


# A filter or global whose result is random: a template using one is never reused.
_UNSTABLE_FILTERS = frozenset({"random"})
_UNSTABLE_GLOBALS = frozenset({"lipsum"})


@lru_cache(maxsize=1024)
def _case_only(text: str) -> bool:
    """True when rendering `text` can only depend on `case`: it names no other variable and uses no
    filter or global with a random result (`random`, `lipsum`)."""
    try:
        tree = _env.parse(text)
    except TemplateSyntaxError:
        return False
    if meta.find_undeclared_variables(tree) - {"case"}:
        return False
    return not (any(f.name in _UNSTABLE_FILTERS for f in tree.find_all(nodes.Filter))
                or any(n.name in _UNSTABLE_GLOBALS for n in tree.find_all(nodes.Name)))


class _CaseRenders:
    """The case-only templates already rendered for one case, by source."""

    def __init__(self, case: Any) -> None:
        self.case = case
        self.texts: dict[str, str] = {}


_current: ContextVar[_CaseRenders | None] = ContextVar("loopkit_case_renders", default=None)


@contextmanager
def case_templates(case: Any) -> Iterator[None]:
    """Within this block (one run of one case, in its own task), templates that depend only on this very
    `case` object are rendered once and reused; a render with another case object renders afresh."""
    token = _current.set(_CaseRenders(case))
    try:
        yield
    finally:
        _current.reset(token)


def render(text: str, **variables: Any) -> str:
    """Render a spec template with the given variables."""
    renders = _current.get()
    if renders is None or variables.get("case") is not renders.case or not _case_only(text):
        return _render(text, variables)
    done = renders.texts.get(text)
    if done is None:
        done = renders.texts[text] = _render(text, variables)
    return done


def _render(text: str, variables: dict[str, Any]) -> str:
    """Render with Jinja2, every time (the one place that does; tests count its calls). A template can
    make a lone surrogate (`{{ '\\udc80' }}`) that no prompt, ledger row or byte count could encode: it
    comes out escaped, as a model's reply does."""
    try:
        return safe_text(_compile(text).render(**variables))
    except UndefinedError as exc:
        raise TemplateError(f"template uses an undefined value: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - any render failure is the template's, reported as such
        raise TemplateError(f"template failed: {exc}") from None


def template_problem(text: str, variables: Iterable[str] | None = None) -> tuple[int, str] | None:
    """The (line within the template, message) of the first problem, or None when the template is fine.

    A problem is a syntax error or, when `variables` is given, a variable that will not be defined
    when the template is rendered (e.g. `{{ cas.x }}` where only `case` exists).
    """
    try:
        _compile(text)
    except TemplateSyntaxError as exc:
        return exc.lineno or 1, f"bad template: {exc.message}"
    if variables is None:
        return None
    allowed = sorted(variables)
    tree = _env.parse(text)
    # Jinja counts a name `{% set %}` inside an `if` or a loop as undeclared; such a name is the
    # template's own, so only names it never assigns are reported.
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    unknown = sorted(meta.find_undeclared_variables(tree) - set(allowed) - assigned)
    if not unknown:
        return None
    name = unknown[0]
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    match = re.search(rf"(?<![\w.]){re.escape(name)}\b", text)
    line = text.count("\n", 0, match.start()) + 1 if match else 1
    return line, f"bad template: `{name}` is not defined here (available: {', '.join(allowed)}){hint}"
