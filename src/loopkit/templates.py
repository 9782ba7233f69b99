"""Jinja2 rendering for prompts, feedback, expected values and scripted replies.

Sandboxed and strict: case data is only ever a value passed in, never compiled as a template, and a
misspelt variable is an error rather than an empty string.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

_env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


class TemplateError(Exception):
    """A template failed to render (e.g. it names a variable the case does not have)."""


@lru_cache(maxsize=1024)
def _compile(text: str) -> Template:
    return _env.from_string(text)


def render(text: str, **variables: Any) -> str:
    """Render a spec template with the given variables."""
    try:
        return _compile(text).render(**variables)
    except UndefinedError as exc:
        raise TemplateError(f"template uses an undefined value: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - any render failure is the template's, reported as such
        raise TemplateError(f"template failed: {exc}") from None


def template_problem(text: str) -> tuple[int, str] | None:
    """The (line within the template, message) of a syntax error, or None when it compiles."""
    try:
        _compile(text)
    except TemplateSyntaxError as exc:
        return exc.lineno or 1, f"bad template: {exc.message}"
    return None
