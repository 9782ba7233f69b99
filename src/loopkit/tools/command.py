"""`type: command` tools: a shell command the model may run with arguments.

The command line is the spec's, as written: the model's arguments never become part of it. They
arrive as one JSON object on stdin and as `LOOPKIT_ARG_<NAME>` variables (a string as it is, anything
else as JSON), so a model cannot inject shell syntax. The command runs in the spec's folder without
the caller's secrets (as a `command` checker does), and it and everything it started is killed when
it ends, times out or the run is interrupted.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema

from ..checkers.command import TAG, clean_environment, kill_group, kill_tagged
from ..spec.schema import CommandTool
from .base import ToolFailure, ToolSchema

OUTPUT_BYTES = 1_000_000  # read at most this much of a command's output
MAX_VARIABLE = 100_000  # bytes; Linux refuses one environment string over 128 KiB


def argument_variables(arguments: dict[str, Any]) -> dict[str, str]:
    """`LOOPKIT_ARG_<NAME>` for each argument whose value fits in a variable (all are on stdin)."""
    found = {}
    for name, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text = text.replace("\0", "")
        if len(text.encode()) <= MAX_VARIABLE:
            found["LOOPKIT_ARG_" + re.sub(r"[^A-Za-z0-9_]", "_", str(name)).upper()] = text
    return found


class CommandLineTool:
    """The spec's command, run once per call."""

    def __init__(self, config: CommandTool, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir
        self.timeout = config.timeout
        self.schema = ToolSchema(config.name, config.description or f"Run `{config.run}`", config.parameters)
        self._validator = jsonschema.Draft202012Validator(config.parameters)

    def _environment(self, arguments: dict[str, Any], tag: str) -> dict[str, str]:
        env = {k: v for k, v in clean_environment(self.config.env).items() if not k.startswith("LOOPKIT_ARG_")}
        return {**env, **argument_variables(arguments), TAG: tag}

    async def call(self, arguments: dict[str, Any]) -> str:
        problems = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if problems:
            raise ToolFailure("invalid arguments: " + "; ".join(
                f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}" for e in problems))
        tag = uuid.uuid4().hex
        try:
            proc = await asyncio.create_subprocess_shell(
                self.config.run, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                cwd=self.base_dir, env=self._environment(arguments, tag), start_new_session=True)
        except OSError as exc:
            raise ToolFailure(f"`{self.config.run}` could not start: {exc.strerror or exc}") from None
        try:
            out, _ = await proc.communicate(json.dumps(arguments, ensure_ascii=False).encode())
        finally:  # done, timed out (cancelled by the caller) or interrupted: nothing it started lives on
            if proc.returncode is None:
                kill_group(proc)
            await asyncio.shield(asyncio.to_thread(kill_tagged, tag))
        text = out[:OUTPUT_BYTES].decode(errors="replace")  # run_tool escapes what goes back to the model
        if proc.returncode != 0:
            raise ToolFailure(f"`{self.config.run}` exited {proc.returncode}" + (f":\n{text.strip()}" if text.strip() else ""))
        return text
