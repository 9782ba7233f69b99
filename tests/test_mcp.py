"""MCP servers as tools (SPEC.md §5 `type: mcp`): every tool a server lists is offered to the model; the
server starts once per batch and is stopped at its end. The server here is a tiny one written with the
official SDK and started over stdio; the model is litellm against the fake OpenAI server."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from fake_llm import FakeLLM, Reply

pytest.importorskip("mcp", reason="the `mcp` package (loopkit[mcp]) is not installed")

KEY = "test-key-not-secret"

SERVER = '''
import os
import pathlib

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

pathlib.Path("starts.log").open("a").write(f"{os.getpid()}\\n")
server = MCPServer("rates")


@server.tool()
def rate(code: str) -> str:
    """The exchange rate of a currency to USD."""
    return {"EUR": "1.08", "GBP": "1.27"}.get(code, "unknown")


@server.tool()
def outage(code: str) -> str:
    """Always fails."""
    raise ToolError("the rate service is down")


if __name__ == "__main__":
    server.run()
'''


def spec_text(base_url: str) -> str:
    return f"""\
version: 1
name: rates
model: {{id: openai/test-model, api_base: "{base_url}", api_key_env: TEST_KEY, price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 50}}
task: {{prompt: "What is the USD rate of {{{{ case.code }}}}?"}}
inputs: [{{id: eur, code: EUR, rate: "1.08"}}, {{id: gbp, code: GBP, rate: "1.27"}}, {{id: eur2, code: EUR, rate: "1.08"}}]
tools:
  - {{name: rates, type: mcp, command: [{json.dumps(sys.executable)}, rates_server.py]}}
checkers:
  - {{name: rate, type: equals, expected: "{{{{ case.rate }}}}"}}
"""


def ask_the_rate(body: dict) -> Reply:
    """Call rate(code) with the code from the prompt; once the tool answered, reply with its result."""
    last = body["messages"][-1]
    if last["role"] == "tool":
        return Reply(content=last["content"])
    return Reply(tool_calls=[{"name": "rate", "arguments": {"code": body["messages"][0]["content"].split()[-1].rstrip("?")}}])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "rates_server.py").write_text(SERVER)
    return tmp_path


def test_the_model_calls_the_tools_an_mcp_server_lists_and_the_server_runs_once_per_batch(fake_llm: FakeLLM, project: Path, cli):
    fake_llm.responder = ask_the_rate
    (project / "spec.yaml").write_text(spec_text(fake_llm.base_url))
    done = cli("run", "spec.yaml", "--json", "--concurrency", "2", env={"TEST_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["passed"] == 3
    offered = sorted(t["function"]["name"] for t in fake_llm.requests[0]["tools"])
    assert offered == ["outage", "rate"]
    rate = next(t["function"] for t in fake_llm.requests[0]["tools"] if t["function"]["name"] == "rate")
    assert rate["description"] == "The exchange rate of a currency to USD." and rate["parameters"]["required"] == ["code"]
    conn = sqlite3.connect(project / "ledger.db")
    rows = conn.execute("SELECT tool, arguments, result, error FROM tool_calls ORDER BY arguments").fetchall()
    conn.close()
    assert rows == [("rate", '{"code": "EUR"}', "1.08", None)] * 2 + [("rate", '{"code": "GBP"}', "1.27", None)]
    [pid] = (project / "starts.log").read_text().split()  # one server for the three cases
    with pytest.raises(ProcessLookupError):  # and it was stopped when the batch ended
        os.kill(int(pid), 0)


def test_an_mcp_tool_that_fails_is_an_error_the_model_reads(fake_llm: FakeLLM, project: Path, cli):
    fake_llm.responder = lambda body: (Reply(content="1.08") if body["messages"][-1]["role"] == "tool"
                                       else Reply(tool_calls=[{"name": "outage", "arguments": {"code": "EUR"}}]))
    (project / "spec.yaml").write_text(spec_text(fake_llm.base_url))
    done = cli("run", "spec.yaml", "--json", env={"TEST_KEY": KEY})
    assert done.returncode == 0 and json.loads(done.stdout)["passed"] == 2  # gbp got the wrong answer, twice; no crash
    told = [r["messages"][-1]["content"] for r in fake_llm.requests if r["messages"][-1]["role"] == "tool"]
    assert len(told) == 4 and all(t.startswith("error: ") and "the rate service is down" in t for t in told)
    conn = sqlite3.connect(project / "ledger.db")
    errors = {r[0] for r in conn.execute("SELECT error FROM tool_calls")}
    conn.close()
    assert len(errors) == 1 and "the rate service is down" in errors.pop()


def test_without_the_mcp_package_the_error_names_the_extra(fake_llm: FakeLLM, project: Path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if it were not installed
    (project / "spec.yaml").write_text(spec_text(fake_llm.base_url))
    done = cli("run", "spec.yaml", env={"TEST_KEY": KEY})
    assert done.returncode == 2 and fake_llm.count == 0
    assert "pip install 'loopkit[mcp]'" in done.stderr and "Traceback" not in done.stderr


def test_a_server_that_does_not_start_is_one_line_exit_2_before_any_model_call(fake_llm: FakeLLM, project: Path, cli):
    (project / "rates_server.py").write_text("import sys\nsys.exit('no rates database here')\n")
    (project / "spec.yaml").write_text(spec_text(fake_llm.base_url))
    done = cli("run", "spec.yaml", env={"TEST_KEY": KEY})
    assert done.returncode == 2 and fake_llm.count == 0
    assert "the MCP server" in done.stderr and "did not start or list its tools" in done.stderr
    assert "no rates database here" in done.stderr  # what the server said on its way out


def test_ctrl_c_stops_the_mcp_server_and_marks_the_batch_interrupted(fake_llm: FakeLLM, project: Path, cli):
    import signal

    def interrupt(body: dict) -> Reply:
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers, while the batch waits for this model call
        return Reply(content="1.08", latency=0.2)

    fake_llm.responder = interrupt
    (project / "spec.yaml").write_text(spec_text(fake_llm.base_url))
    done = cli("run", "spec.yaml", "--concurrency", "1", env={"TEST_KEY": KEY})
    assert done.returncode == 130, done.stderr
    [pid] = (project / "starts.log").read_text().split()
    with pytest.raises(ProcessLookupError):  # the server did not outlive the interrupted batch
        os.kill(int(pid), 0)
    conn = sqlite3.connect(project / "ledger.db")
    assert conn.execute("SELECT status FROM batches").fetchall() == [("interrupted",)]
    conn.close()


@pytest.fixture
def http_server():
    """A streamable-HTTP MCP server in this process (uvicorn on a thread), on a socket that listens
    before the test goes on: a client that connects early waits in the backlog, no polling needed."""
    import asyncio
    import socket
    import threading

    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("rates-http")
    called: list[str] = []

    @server.tool()
    def rate(code: str) -> str:
        """The exchange rate of a currency to USD."""
        called.append(code)
        return {"EUR": "1.08", "GBP": "1.27"}.get(code, "unknown")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    web = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="error", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(web.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", called
    finally:
        web.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_model_calls_the_tools_of_a_streamable_http_mcp_server(fake_llm: FakeLLM, project: Path, cli, http_server):
    url, called = http_server
    fake_llm.responder = ask_the_rate
    text = spec_text(fake_llm.base_url).replace(f"command: [{json.dumps(sys.executable)}, rates_server.py]", f'url: "{url}"')
    (project / "spec.yaml").write_text(text)
    done = cli("run", "spec.yaml", "--json", env={"TEST_KEY": KEY})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["passed"] == 3
    assert [t["function"]["name"] for t in fake_llm.requests[0]["tools"]] == ["rate"]
    assert sorted(called) == ["EUR", "EUR", "GBP"]  # each case's call reached the server
    conn = sqlite3.connect(project / "ledger.db")
    assert sorted(conn.execute("SELECT tool, result FROM tool_calls").fetchall()) == [("rate", "1.08")] * 2 + [("rate", "1.27")]
    conn.close()
