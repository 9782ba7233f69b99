"""A tiny OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks.

Standard library only. Use it as a context manager (or via the `fake_llm` fixture)::

    with FakeLLM() as fake:
        fake.queue("first answer", Reply(status=429, retry_after=2), "third answer")
        litellm.completion(model="openai/gpt-4o-mini", api_base=fake.base_url, ...)

Replies come from the FIFO queue first, then from `responder(body)` if set, else `default`.
A reply may call tools: `Reply(tool_calls=[{"name": "add", "arguments": {"a": 1}}])` answers with
OpenAI-style `tool_calls` (ids `call_<request number>_<index>` unless given) and finish_reason `tool_calls`.
A request with `"stream": true` is answered as server-sent events (the content in a few chunks, then
the finish reason; a usage chunk when `stream_options.include_usage` asks for one), as OpenAI does.
Run standalone for benchmarks: `python tests/fake_llm.py --port 0 --latency 0.05` prints the
base URL on the first line of stdout and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLLM", "Reply"]


@dataclass
class Reply:
    """What the server answers to one chat completion request."""

    content: str = "ok"
    prompt_tokens: int | None = None  # None: estimated from the request's message text
    completion_tokens: int | None = None  # None: max(1, len(content) // 4)
    status: int = 200  # e.g. 429, 500 or 503 for faults
    retry_after: float | None = None  # sent as a Retry-After header when set
    latency: float = 0.0  # seconds to wait before answering
    tool_calls: list[dict[str, Any]] | None = None  # [{"name", "arguments" (dict or JSON text), "id" (optional)}]
    chunks: int = 3  # how many pieces a streamed answer's content comes in


Responder = Callable[[dict], "Reply | str"]

_ERROR_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    503: ("server_error", "service_unavailable"),
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # listen backlog: benchmarks open hundreds of connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-reply (kill -9, Ctrl-C) is the point of the fault tests, not a server error;
        printing its traceback would mix into the stderr the tests read."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _as_reply(value: Reply | str) -> Reply:
    return Reply(content=value) if isinstance(value, str) else value


def _message_text(body: dict) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "".join(parts)


def _tool_calls(reply: Reply, request: int) -> list[dict[str, Any]] | None:
    """The reply's tool calls in OpenAI format (arguments as JSON text)."""
    if not reply.tool_calls:
        return None
    found = []
    for i, call in enumerate(reply.tool_calls):
        arguments = call.get("arguments", {})
        found.append({"id": call.get("id") or f"call_{request}_{i}", "type": "function",
                      "function": {"name": call["name"],
                                   "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})
    return found


def _format_retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


class FakeLLM:
    """An OpenAI-compatible server answering from a queue of `Reply`s; see the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, default: Reply | None = None) -> None:
        self.host = host
        self.port = port
        self.default: Reply = default if default is not None else Reply()
        self.responder: Responder | None = None
        self.requests: list[dict] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeLLM is not started")
        return f"http://{self.host}:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        """Number of chat completion requests received so far."""
        with self._lock:
            return len(self.requests)

    def queue(self, *replies: Reply | str) -> None:
        """The next requests get these replies, in order (a str is `Reply(content=str)`)."""
        with self._lock:
            self._queue.extend(_as_reply(r) for r in replies)

    def start(self) -> FakeLLM:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self._handler_class())
        # A short poll interval keeps stop() fast (shutdown waits for one poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the standalone mode)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # -- internals -------------------------------------------------------------------------

    def _record_and_pick(self, body: dict) -> Reply:
        with self._lock:
            self.requests.append(body)
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        if responder is not None:
            return _as_reply(responder(body))
        return self.default

    def _completion(self, body: dict, reply: Reply) -> dict[str, Any]:
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = max(1, len(_message_text(body)) // 4)
        tool_calls = _tool_calls(reply, self.count)
        completion = reply.completion_tokens
        if completion is None:
            completion = max(1, (len(reply.content) + len(json.dumps(tool_calls or ""))) // 4)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if tool_calls:
            message = {"role": "assistant", "content": reply.content if reply.content != "ok" else None, "tool_calls": tool_calls}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def _chunks(self, body: dict, reply: Reply) -> list[dict[str, Any]]:
        """The streamed form of `_completion`: one `chat.completion.chunk` per piece of the content."""
        whole = self._completion(body, reply)
        base = {k: whole[k] for k in ("id", "created", "model", "system_fingerprint")} | {"object": "chat.completion.chunk"}
        text, n = reply.content, max(1, reply.chunks)
        size = -(-len(text) // n) or 1
        pieces = [text[i:i + size] for i in range(0, len(text), size)] or [""]
        deltas = [{"role": "assistant", "content": pieces[0]}] + [{"content": p} for p in pieces[1:]]
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": whole["usage"]})
        return chunks

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like a real API

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
                kind, code = _ERROR_TYPES.get(status, fallback)
                error = {"message": message, "type": kind, "param": None, "code": code}
                self._send_json(status, {"error": error}, headers)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                if path.endswith("/models"):
                    models = [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake-llm"}]
                    self._send_json(200, {"object": "list", "data": models})
                else:
                    self._error(404, f"no route GET {self.path}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0].rstrip("/")
                if not path.endswith("/chat/completions"):
                    self._error(404, f"no route POST {self.path}")
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._error(400, "request body is not JSON")
                    return
                reply = fake._record_and_pick(body)
                if reply.latency > 0:
                    time.sleep(reply.latency)
                headers = {}
                if reply.retry_after is not None:
                    headers["Retry-After"] = _format_retry_after(reply.retry_after)
                if reply.status != 200:
                    message = reply.content if reply.content != "ok" else f"fake error {reply.status}"
                    self._error(reply.status, message, headers)
                    return
                if body.get("stream"):
                    self._send_events(fake._chunks(body, reply), headers)
                    return
                self._send_json(200, fake._completion(body, reply), headers)

            def _send_events(self, chunks: list[dict[str, Any]], headers: dict[str, str]) -> None:
                """Server-sent events, one `data:` line per chunk and `[DONE]`; the connection closes after."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible chat API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--content", default="ok", help="the reply content")
    args = parser.parse_args(argv)
    fake = FakeLLM(port=args.port, default=Reply(content=args.content, latency=args.latency)).start()
    print(fake.base_url, flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
