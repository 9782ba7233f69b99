"""`type: python` tools: a function in a file next to the spec. Its JSON schema comes from its type hints
(pydantic's `TypeAdapter`) and its docstring (the summary, and each parameter's line under `Args:` or
`:param x:`), so the schema cannot drift from the code; `validate_call` checks the model's arguments
before the function runs.

The function runs in this process: a sync one on a daemon thread (a call past its timeout is
abandoned there, and never holds up exit), an async one on the loop. Like a `python` checker, it is
code from the spec and runs with the user's permissions.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError, validate_call

from ..checkers.python_worker import load_function
from ..errors import UsageError
from ..spec.schema import PythonTool
from .base import ToolFailure, ToolSchema, as_text

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:?\s*$")
_GOOGLE_ARG = re.compile(r"^\s+\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")
_SPHINX_ARG = re.compile(r"^\s*:param\s+(?:[\w\[\], |]+\s+)?(\w+)\s*:\s*(.+)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or Sphinx-style docstring."""
    text = inspect.cleandoc(doc or "")
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    last: str | None = None
    for line in text.splitlines():
        if (m := _SPHINX_ARG.match(line)) is not None:
            params[m.group(1)] = m.group(2).strip()
            last, section = m.group(1), "sphinx"
            continue
        if (m := _SECTION.match(line)) is not None:
            section, last = m.group(1).lower(), None
            continue
        if section is None:
            if line.strip().startswith(":"):
                section = "sphinx"
            else:
                summary.append(line)
            continue
        if section in ("args", "arguments", "parameters"):
            if (m := _GOOGLE_ARG.match(line)) is not None:
                params[m.group(1)] = m.group(2).strip()
                last = m.group(1)
            elif last is not None and line.strip():
                params[last] += " " + line.strip()
        elif section == "sphinx" and last is not None and line.startswith((" ", "\t")) and line.strip():
            params[last] += " " + line.strip()
    return "\n".join(summary).strip(), params


def function_schema(name: str, fn: Callable[..., Any], description: str | None = None) -> ToolSchema:
    """The tool's schema from the function's signature and docstring."""
    summary, described = parse_docstring(fn.__doc__)
    parameters = TypeAdapter(fn).json_schema()
    parameters.pop("title", None)
    properties = parameters.setdefault("properties", {})
    for param, text in described.items():
        if param in properties:
            properties[param].setdefault("description", text)
    for prop in properties.values():
        prop.pop("title", None)
    return ToolSchema(name, description or summary or name, parameters)


def _in_thread(fn: Callable[..., Any], arguments: dict[str, Any]) -> asyncio.Future[Any]:
    """Run `fn(**arguments)` on a daemon thread; the future settles on the loop when it returns."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # abandoned (timed out, interrupted)
            return
        future.set_result(value) if ok else future.set_exception(value)

    def work() -> None:
        try:
            value, ok = fn(**arguments), True
        except BaseException as exc:  # noqa: BLE001 - SystemExit and all: reported to the model
            value, ok = exc, False
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop closed while the tool ran
            pass

    threading.Thread(target=work, name="loopkit-tool", daemon=True).start()
    return future


class PythonFunctionTool:
    """A user's function, validated and called with the model's arguments."""

    def __init__(self, config: PythonTool, base_dir: Path) -> None:
        self.config = config
        self.timeout = config.timeout
        try:
            fn = load_function(config.function, base_dir)
        except Exception as exc:  # noqa: BLE001 - the user's file failed to import
            raise UsageError(f"tool {config.name}: {config.function} could not be loaded: {type(exc).__name__}: {exc}") from None
        try:
            self.schema = function_schema(config.name, fn, config.description)
            self._validated = validate_call(fn)
        except Exception as exc:  # noqa: BLE001 - e.g. a type hint pydantic cannot make a schema of
            raise UsageError(f"tool {config.name}: no JSON schema for {config.function}: {exc}") from None
        self._async = inspect.iscoroutinefunction(fn)

    async def call(self, arguments: dict[str, Any]) -> str:
        try:
            if self._async:
                value = await self._validated(**arguments)
            else:
                value = await _in_thread(self._validated, arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ToolFailure(f"invalid arguments: {problems}") from None
        except SystemExit as exc:
            raise ToolFailure(f"called sys.exit({exc.code!r})") from None
        return "" if value is None else as_text(value)
