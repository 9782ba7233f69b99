"""Option values that need no conversion skip typer's pydantic machinery.

typer 0.29 converts every parameter of the command being run, given or left at its default, through a
pydantic `TypeAdapter` it builds on first use: importing pydantic and building a schema per option was
a third of the CPU of `loopkit runs`. Here a parameter's converter is built only when a value needs
one; these values are returned as typer would return them, without it:

- None (an option not given): None, or () for a multiple one, exactly what typer's converter returns;
- a str for a `str` parameter (typer's converter returns `str(value)`, the same string);
- an int or float default of the parameter's own type within its min/max (no clamp, no parser);
- a non-empty str for a plain `Path` parameter: `Path(value)` handed to typer's own path checks
  (`coerce_cli_path`: exists, file_okay, readable, ...), which then need no pydantic either.

Any other value (a number typed on the command line, an enum, a list) takes typer's own path. Nothing is
patched when typer's internals are not the ones this was written against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class _LeanRuntimeParam:
    """Stands in for typer's RuntimeParam; builds the real one at the first value that needs it."""

    def __init__(self, param: Any, build: Any, coerce_path: Any) -> None:
        self._param = param
        self._build = build
        self._coerce_path = coerce_path
        self._real: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None
        if not multiple:
            desc = param.type_descriptor
            annotation, info = desc.annotation, desc.parameter_info
            if desc.file_annotation is None and info.parser is None:
                if annotation is str and type(value) is str:
                    return value
                if (annotation in (int, float) and type(value) is annotation and not info.clamp
                        and (info.min is None or value >= info.min) and (info.max is None or value <= info.max)):
                    return value
                if (annotation is Path and info.path_type is None and type(value) is str and value
                        and not info.allow_dash):
                    return self._coerce_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        if self._real is None:
            self._real = self._build(param.type_descriptor)
        return self._real.coerce(value, param=param, ctx=ctx)

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        return self.coerce(value, param, ctx)


def install() -> bool:
    """Make typer build a parameter's pydantic converter only when a value needs it; False if typer differs."""
    try:
        from typer import core
        from typer._coercion import build_runtime_param
        from typer._param_types import coerce_cli_path
    except ImportError:  # pragma: no cover - another typer: it keeps its own behaviour
        return False
    cls = getattr(core, "_TyperParameter", None)
    if cls is None or not hasattr(cls, "get_runtime_param") or getattr(cls, "_loopkit_lean", False):
        return bool(cls is not None and getattr(cls, "_loopkit_lean", False))

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            self._runtime_param = _LeanRuntimeParam(self, build_runtime_param, coerce_cli_path)
        return self._runtime_param

    cls.get_runtime_param = get_runtime_param
    cls._loopkit_lean = True
    return True
