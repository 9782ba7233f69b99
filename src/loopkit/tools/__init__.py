"""Tools the worker model may call (SPEC.md §5 `tools:`): python functions, shell commands, MCP servers.

A `Toolbox` holds a spec's tools. `Toolbox.load` builds the python and command tools (importing the
user's files, deriving schemas) before anything is paid for; `async with toolbox:` starts the MCP
servers, which then live until the block ends (a batch: once for all its cases). The engine asks
the toolbox for the schemas it offers the model and calls `toolbox.call` for each tool call.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..spec.schema import CommandTool, LoopSpec, McpTools, PythonTool
from .base import Outcome, Tool, ToolFailure, ToolSchema, run_tool

__all__ = ["Outcome", "Tool", "ToolFailure", "ToolSchema", "Toolbox"]


class Toolbox:
    """A spec's tools by name; open (`async with`) before the first call when it has MCP servers."""

    def __init__(self, tools: list[Tool], servers: list[McpTools], base_dir: Path) -> None:
        self.tools: dict[str, Tool] = {}
        self.servers = servers
        self.base_dir = base_dir
        self._stack: contextlib.AsyncExitStack | None = None
        self._opened = not servers
        for tool in tools:
            self._add(tool, "tools:")
        self._static = dict(self.tools)  # what stays when the servers stop

    @classmethod
    def load(cls, spec: LoopSpec) -> Toolbox:
        """The spec's python and command tools, ready; its MCP servers start when the toolbox opens."""
        from .command import CommandLineTool
        from .python import PythonFunctionTool

        tools: list[Tool] = []
        for config in spec.tools:
            if isinstance(config, PythonTool):
                tools.append(PythonFunctionTool(config, spec.base_dir))
            elif isinstance(config, CommandTool):
                tools.append(CommandLineTool(config, spec.base_dir))
        return cls(tools, [c for c in spec.tools if isinstance(c, McpTools)], spec.base_dir)

    def _add(self, tool: Tool, source: str) -> None:
        name = tool.schema.name
        if name in self.tools:
            raise UsageError(f"two tools are named {name!r} ({source}); tool names must be unique")
        self.tools[name] = tool

    async def __aenter__(self) -> Toolbox:
        if self.servers and self._stack is None:
            from .mcp import open_server

            self._stack = contextlib.AsyncExitStack()
            try:
                for server in self.servers:
                    for tool in await open_server(server, self.base_dir, self._stack):
                        self._add(tool, f"server {server.name}")
            except BaseException:
                await self.aclose()
                raise
            self._opened = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the MCP servers (their tools leave the box)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            self.tools = dict(self._static)
            self._opened = not self.servers
            await stack.aclose()

    def schemas(self) -> list[dict[str, Any]]:
        """The tools as offered to the model (OpenAI format), in the spec's order."""
        if not self._opened:
            raise RuntimeError("the toolbox's MCP servers are not started: use `async with toolbox:`")
        return [t.schema.openai() for t in self.tools.values()]

    async def call(self, name: str, arguments: str | dict[str, Any] | None, time_left: float | None) -> Outcome:
        """One tool call; a failure is in the outcome, only the case's time budget raises (BudgetStop)."""
        return await run_tool(self.tools.get(name), name, arguments, time_left, list(self.tools))
