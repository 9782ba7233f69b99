"""Shared pytest fixtures for the loopkit test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fake_llm import FakeLLM


# -- fake model server --------------------------------------------------------------------


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A started OpenAI-compatible server on 127.0.0.1 (see tests/fake_llm.py); stopped after the test."""
    with FakeLLM() as fake:
        yield fake


# -- loopkit helpers ----------------------------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

# Retries in tests back off in milliseconds, not seconds; the policy itself is tested directly.
os.environ.setdefault("LOOPKIT_RETRY_BASE_SECONDS", "0.01")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# pytest-xdist's workers inherit COLUMNS=80/LINES=24 from execnet; tests that care about width set it.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


class MemoryRecorder:
    """The engine's Recorder, in memory: what a run wrote, without SQLite."""

    def __init__(self) -> None:
        self.started: list = []
        self.iterations: list = []
        self.calls: list = []
        self.events: list = []
        self.results: list = []

    def commit(self, result, iteration, calls, events, *, start=None) -> None:  # noqa: ANN001
        if start is not None:
            self.started.append(start)
        self.results.append(result)
        if iteration is not None:
            self.iterations.append(iteration)
        self.calls += calls
        self.events += events


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec (and optional side files) into tmp_path; returns the spec's path."""

    def write(text: str, name: str = "spec.yaml", **files: str) -> Path:
        for fname, content in files.items():
            (tmp_path / fname.replace("__", ".")).write_text(textwrap.dedent(content))
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def cli_proc(tmp_path: Path):
    """Run the installed `loopkit` console script in a real subprocess (ledger in tmp_path).

    For what only a process shows: signals, several writers, start-up imports. Each call that
    reaches a litellm model pays litellm's multi-second import, so prefer `cli` elsewhere."""
    exe = Path(sys.executable).with_name("loopkit")

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "LOOPKIT_LEDGER": str(tmp_path / "ledger.db"), **(env or {})}
        return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=tmp_path, **kw)

    return run


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    """Run `loopkit ARGS` in this process, exactly as the console script does (its `main()`), and
    return a CompletedProcess with the exit code, stdout and stderr. Ledger in tmp_path."""
    import contextlib
    import io

    from loopkit.cli import main

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as m:
            m.setenv("LOOPKIT_LEDGER", str(tmp_path / "ledger.db"))
            for key, value in (env or {}).items():
                m.setenv(key, value)
            m.chdir(tmp_path)
            m.setattr(sys, "argv", ["loopkit", *args])
            m.setattr(sys, "stdin", io.StringIO(input or ""))
            code = 0
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return subprocess.CompletedProcess(["loopkit", *args], code, out.getvalue(), err.getvalue())

    return run
