"""The process that runs users' `python` checkers (python.py starts it and calls `main`).

User code runs here rather than in the engine's process so that a checker that loops forever, calls
`sys.exit` or crashes the interpreter can be killed or outlived: the engine kills this process on a
timeout or Ctrl-C and starts a fresh one. It answers one request at a time over its stdin/stdout pipes,
each message as pipe.py frames it. A checker's own prints go to stderr, so they never corrupt the replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .pipe import READY, Request, Reply, read_message, write_message

_functions: dict[tuple[str, str], Callable[..., Any]] = {}


def load_function(reference: str, base_dir: Path) -> Callable[..., Any]:
    """Import `file.py:function` relative to the spec's folder (once per process)."""
    rel, name = reference.split(":")
    path = (base_dir / rel).resolve()
    key = (str(path), name)
    if key not in _functions:
        module_name = f"loopkit_user_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            # The file may import its neighbours (`from helpers import ...`), as a script would.
            sys.path.insert(0, str(path.parent))
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(str(path.parent))
        fn = getattr(module, name, None)
        if not callable(fn):
            raise ImportError(f"{path} has no function {name!r}")
        _functions[key] = fn
    return _functions[key]


def _takes_tool_calls(fn: Callable[..., Any]) -> bool:
    """Whether a checker asks for the iteration's tool calls: `def check(output, case, tool_calls)`."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "tool_calls" or p.kind == p.VAR_KEYWORD for p in params)


async def _awaited(value: Any) -> Any:
    return await value


def answer(request: Request) -> Reply:
    """Run one checker call; whatever the user's code does, a reply."""
    from .base import as_result

    function, base_dir, output, case, threshold, tool_calls = request
    try:
        fn = load_function(function, Path(base_dir))
        value = fn(output, case, tool_calls=tool_calls) if _takes_tool_calls(fn) else fn(output, case)
        if inspect.isawaitable(value):
            value = asyncio.run(_awaited(value))
        result = as_result(value, threshold)
        return True, (result.score, result.passed, result.feedback)
    except SystemExit as exc:
        return False, f"called sys.exit({exc.code!r})"
    except BaseException as exc:  # noqa: BLE001 - the user's code broke: say how, and carry on
        try:
            return False, f"raised {type(exc).__name__}: {exc}"
        except Exception:  # noqa: BLE001 - an exception whose own str() fails
            return False, f"raised {type(exc).__name__}"


def _exit_with_parent(parent: int) -> None:
    """Leave when the engine's process is gone (killed outright, so it could not stop this one)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's: it kills this process
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # a checker reading stdin gets EOF, not our requests
    os.dup2(2, 1)  # a checker's prints go to stderr, not into our replies
    import loopkit.checkers.base  # noqa: F401 - what every answer needs, loaded before saying ready

    write_message(replies, READY)
    while (request := read_message(requests)) is not None:
        write_message(replies, answer(request))
