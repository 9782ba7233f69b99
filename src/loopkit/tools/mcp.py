"""`type: mcp` tools: every tool an MCP server lists, through the official `mcp` SDK (`loopkit[mcp]`).

A server is started (stdio) or connected to (streamable HTTP) once per batch, when its toolbox
opens, and stopped when the toolbox closes: at the batch's end, on Ctrl-C, on a crash. The SDK is
imported only here and only then, so a spec without MCP never pays for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..redact import is_secret_name, register_secret
from ..spec.schema import McpTools
from .base import ToolFailure, ToolSchema, as_text

EXTRA = "loopkit[mcp]"
STDERR_TAIL = 500  # characters of a failed server's stderr quoted in the error


def _sdk() -> Any:
    try:
        import mcp
        import mcp.client.stdio  # noqa: F401 - the submodules the client side needs
    except ImportError:
        raise UsageError(f"tools of type mcp need the `mcp` package: pip install '{EXTRA}'") from None
    return mcp


def _environment(config: McpTools) -> dict[str, str]:
    """The spec's `env:` with `$VAR` / `${VAR}` taken from the caller's environment (keys stay out of the spec).
    The SDK adds only a safe few of the caller's own variables (PATH, HOME, ...): no provider key."""
    env = {}
    for name, value in config.env.items():
        expanded = os.path.expandvars(value)
        if expanded != value or is_secret_name(name):
            register_secret(expanded)  # scrubbed wherever it shows up
        env[name] = expanded
    return env


def result_text(result: Any) -> str:
    """A CallToolResult as the text the model reads: its text blocks, else its structured content."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and getattr(block.resource, "text", None) is not None:
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind or 'content'} not shown]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(as_text(result.structured_content))
    return "\n".join(parts)


class McpTool:
    """One tool of an open MCP session."""

    def __init__(self, session: Any, listed: Any, timeout: float) -> None:
        self.session = session
        self.timeout = timeout
        self.schema = ToolSchema(listed.name, listed.description or listed.name, dict(listed.input_schema or {"type": "object"}))

    async def call(self, arguments: dict[str, Any]) -> str:
        result = await self.session.call_tool(self.schema.name, arguments)
        text = result_text(result)
        if result.is_error:
            raise ToolFailure(text or "the tool reported an error")
        return text


async def open_server(config: McpTools, base_dir: Path, stack: contextlib.AsyncExitStack) -> list[McpTool]:
    """Start (or connect to) the server, list its tools; the stack stops it when it closes."""
    mcp = _sdk()
    where = " ".join(config.command) if config.command else config.url
    # The server's stderr (its logs, a tool's traceback) would garble the progress display: it is kept
    # in a file, and its tail explains a server that did not start.
    errlog = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))
    try:
        if config.command:
            params = mcp.StdioServerParameters(command=config.command[0], args=config.command[1:], env=_environment(config),
                                               cwd=str(base_dir))
            read, write = await stack.enter_async_context(mcp.client.stdio.stdio_client(params, errlog=errlog))
        else:
            from mcp.client.streamable_http import streamable_http_client

            read, write = (await stack.enter_async_context(streamable_http_client(config.url)))[:2]
        session = await stack.enter_async_context(mcp.ClientSession(read, write))
        await session.initialize()
        listed, cursor = [], None
        while True:
            page = await session.list_tools(params=mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            listed += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a server that does not start or answer is the user's to fix
        errlog.seek(0)
        said = " ".join(errlog.read()[-STDERR_TAIL:].split())
        raise UsageError(f"tool {config.name}: the MCP server `{where}` did not start or list its tools: "
                         f"{type(exc).__name__}: {exc}" + (f"; its stderr ends: {said}" if said else "")) from None
    return [McpTool(session, t, config.timeout) for t in listed]
