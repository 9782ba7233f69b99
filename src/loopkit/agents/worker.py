"""An outside agent program as a run's worker (SPEC.md §5 `worker: {type: command}`).

Each iteration: the task (the rendered prompt, and the feedback of the previous iteration) is written to
a file, the program runs in the run's work directory with a metering endpoint for its model calls, and
what it printed (or wrote to `output: {file: ...}`) is the iteration's answer for the checkers.

An agent that exits non-zero, runs past its `timeout` or prints nothing does not crash the run: its
answer is a text saying what went wrong (with the ends of its output and stderr), which the checkers
judge and the next task file carries as feedback, and an `agent_error` event records it.

Where things live: `$TMPDIR/loopkit-agents-<uid>/<run id>/` holds `task.md` and `work/` (an empty folder,
or a copy of `workdir: {copy: DIR}`). Later iterations, a resumed run and a run continued by review
continue in the same `work/`. It is removed when the run ends, and kept while the run may continue
(interrupted, or waiting for review).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ..budget import BudgetStop, CaseBudget
from ..checkers.command import TAG, clean_environment, kill_group, kill_tagged
from ..models import ModelCallError, ModelClient
from ..records import EventRecord, RunInfo
from ..spec import LoopSpec, ModelRef
from ..spec.schema import CommandWorker, OutputFile, WorkdirCopy
from ..status import StopReason
from ..redact import safe_text
from ..templates import render
from .http import Server
from .metering import Meter, MeterContext, Tally

TAIL = 2_000  # characters of an agent's output and stderr quoted when it fails
REAP_SECONDS = 5.0  # how long to wait for the pipes of a killed agent to close


class AgentSetupError(ModelCallError):
    """The agent could not be started (its folder to copy is missing, its command cannot run): the run is `error`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, attempts=0)


def agents_root() -> Path:
    return Path(tempfile.gettempdir()) / f"loopkit-agents-{os.getuid()}"


def task_text(messages: list[dict[str, Any]], feedback_message: str | None) -> str:
    """What the agent is asked: the spec's system text and prompt, then the feedback on its last attempt."""
    parts = [str(m.get("content") or "") for m in messages if m.get("role") in ("system", "user")]
    if feedback_message:
        parts.append(feedback_message)
    return "\n\n".join(p for p in parts if p) + "\n"


def _tail(data: bytes) -> str:
    return safe_text(data.decode(errors="replace"))[-TAIL:].strip()


class AgentWorker:
    """One run's outside agent: its work directory, its token, and one process per iteration."""

    def __init__(self, spec: LoopSpec, info: RunInfo) -> None:
        assert spec.worker is not None
        self.spec = spec
        self.worker: CommandWorker = spec.worker
        self.info = info
        self.home = agents_root() / info.id
        self.workdir = self.home / "work"
        self.task_file = self.home / "task.md"
        # Shaped like a provider key (sk-...), so the ledger scrubs it wherever an agent prints it.
        self.token = f"sk-loopkit-{secrets.token_hex(24)}"

    # -- the work directory --

    def _prepare(self) -> None:
        try:
            self.home.parent.mkdir(mode=0o700, exist_ok=True)
            self.home.mkdir(mode=0o700, exist_ok=True)
            if self.workdir.is_dir():
                return  # a later iteration, a resumed or reviewed run: the agent continues where it was
            if isinstance(self.worker.workdir, WorkdirCopy):
                source = self.spec.base_dir / self.worker.workdir.copy_
                if not source.is_dir():
                    raise AgentSetupError(f"worker.workdir.copy: {source} is not a folder")
                shutil.copytree(source, self.workdir, symlinks=True)
            else:
                self.workdir.mkdir()
        except OSError as exc:
            raise AgentSetupError(f"the agent's work directory {self.workdir} could not be made: {exc}") from None

    def close(self, *, keep: bool) -> None:
        """Remove the run's folder, unless the run may continue (`keep`)."""
        if not keep:
            shutil.rmtree(self.home, ignore_errors=True)

    # -- one iteration --

    def _environment(self, base_url: str, model: ModelRef, iteration: int, tag: str) -> dict[str, str]:
        env = clean_environment(self.worker.env)  # no secret-named variable, so no provider key
        no_proxy = ",".join(filter(None, ["127.0.0.1", "localhost", env.get("NO_PROXY") or env.get("no_proxy")]))
        env.update({
            "OPENAI_BASE_URL": base_url, "OPENAI_API_BASE": base_url, "OPENAI_API_KEY": self.token,
            "NO_PROXY": no_proxy, "no_proxy": no_proxy,  # a proxy in the environment must not carry the local calls
            "LOOPKIT_MODEL": model.label, "LOOPKIT_TASK_FILE": str(self.task_file), "LOOPKIT_WORKDIR": str(self.workdir),
            "LOOPKIT_ITERATION": str(iteration), "LOOPKIT_CASE": json.dumps(self.info.case, default=str), TAG: tag,
        })
        return env

    def _output_file(self) -> Path | None:
        output = self.worker.output
        return self.workdir / output.file if isinstance(output, OutputFile) else None

    async def turn(self, tally: Tally, client: ModelClient, model: ModelRef, budget: CaseBudget, messages: list[dict[str, Any]],
                   feedback_message: str | None, iteration: int, variables: dict[str, Any]) -> str:
        """Run the agent once and return its answer; raise BudgetStop when a cap ended it."""
        self._prepare()
        self.task_file.write_text(task_text(messages, feedback_message), encoding="utf-8")
        answer_file = self._output_file()
        if answer_file is not None:
            answer_file.unlink(missing_ok=True)  # the last iteration's answer is not this one's
        command = render(self.worker.run, task_file=shlex.quote(str(self.task_file)), workdir=shlex.quote(str(self.workdir)),
                         spec_dir=shlex.quote(str(self.spec.base_dir.resolve())), iteration=iteration)
        meter = Meter(MeterContext(client, model, self.spec.params_for(model), budget, tally, iteration, variables,
                                   self.spec.name, self.info.repeat), self.token)
        left = budget.time_left()
        by_budget = left is not None and left < self.worker.timeout
        limit = left if by_budget else self.worker.timeout
        tag = uuid.uuid4().hex
        server = await Server(meter.handle).start()
        try:
            env = self._environment(f"http://127.0.0.1:{server.port}/v1", model, iteration, tag)
            try:
                proc = await asyncio.create_subprocess_shell(
                    command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                    cwd=self.workdir, env=env, start_new_session=True)
            except OSError as exc:
                raise AgentSetupError(f"`{command}` could not start: {exc.strerror or exc}") from None
            out, err, ended = await self._wait(proc, meter, limit, tag)
        finally:
            await server.close()  # requests still in flight are cut off (and charged their worst case)
        if meter.stop is not None:
            raise meter.stop
        if ended == "timeout" and by_budget:
            raise BudgetStop(StopReason.BUDGET_SECONDS, f"the {budget.budget.seconds:g}s per-case budget ran out while the agent ran")
        if ended == "timeout":
            return self._failed(tally, iteration, command, f"ran past its {self.worker.timeout:g}s timeout and was killed", out, err)
        if proc.returncode != 0:
            return self._failed(tally, iteration, command, f"exited with code {proc.returncode}", out, err, proc.returncode)
        if answer_file is None:
            answer = safe_text(out.decode(errors="replace"))
        elif answer_file.is_file():
            answer = safe_text(answer_file.read_text(encoding="utf-8", errors="replace"))
        else:
            return self._failed(tally, iteration, command, f"wrote no {os.path.relpath(answer_file, self.workdir)}", out, err, 0)
        if not answer.strip():
            what = "printed nothing" if answer_file is None else f"left {os.path.relpath(answer_file, self.workdir)} empty"
            return self._failed(tally, iteration, command, what, out, err, 0)
        return answer

    async def _wait(self, proc: asyncio.subprocess.Process, meter: Meter, limit: float,
                    tag: str) -> tuple[bytes, bytes, str | None]:
        """The agent's stdout and stderr, and why it was ended early: "timeout", "budget" or None (it exited).
        Whatever ends it (its timeout, a budget stop, Ctrl-C), nothing it started lives on."""
        talk = asyncio.ensure_future(proc.communicate())
        stop = asyncio.ensure_future(meter.stopped.wait())
        ended = None
        try:
            done, _ = await asyncio.wait({talk, stop}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            if talk not in done:
                ended = "budget" if stop in done else "timeout"
        finally:
            stop.cancel()
            if proc.returncode is None:
                kill_group(proc)
            kill_tagged(tag)  # also what left the process group (setsid, a double fork)
            if not talk.done():  # its pipes close once everything holding them is gone
                await asyncio.wait({talk}, timeout=REAP_SECONDS)
            if not talk.done():
                talk.cancel()
        if talk.cancelled() or talk.exception() is not None:
            return b"", b"", ended
        out, err = talk.result()
        return out, err, ended

    def _failed(self, tally: Tally, iteration: int, command: str, what: str, out: bytes, err: bytes,
                code: int | None = None) -> str:
        """The answer of an agent that did not finish its work: what happened, for the checkers and the feedback."""
        stdout, stderr = _tail(out), _tail(err)
        tally.events.append(EventRecord("agent_error", {"iteration": iteration, "error": what, "exit_code": code,
                                                        "stderr": stderr}))
        text = f"[loopkit] the agent did not finish: `{command}` {what}."
        if stdout:
            text += f"\n\nIts output (the end):\n{stdout}"
        if stderr:
            text += f"\n\nIts stderr (the end):\n{stderr}"
        return text
