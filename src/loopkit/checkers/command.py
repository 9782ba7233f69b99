"""The `command` checker: a shell command judges the output (exit 0 = pass), often by running code the
model wrote. So it runs without the caller's secrets, within its timeout, and leaves nothing behind.

Nothing behind: every process the command starts carries a unique `LOOPKIT_CHECK_ID` in its
environment, and when the command ends (or times out, or the run is interrupted) every process in
/proc whose environment holds that tag is killed, including those that left the process group with
`setsid` or a double fork. Only a process that replaces its whole environment (`env -i ...`) hides
from this; for hostile code, run the command in a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from ..redact import is_secret_name
from ..spec import CommandChecker
from ..redact import safe_text
from .base import CheckContext, CheckerError, CheckResult, TimeLimit, verdict

FEEDBACK_TAIL = 2000
MAX_ENV_OUTPUT = 100_000  # bytes; Linux refuses one environment string over 128 KiB
TAG = "LOOPKIT_CHECK_ID"
_PROC = Path("/proc")
_SWEEP_SECONDS = 5.0  # how long the sweep keeps killing a tree that keeps forking


def clean_environment(allowed: Iterable[str] = ()) -> dict[str, str]:
    """The caller's environment without its secrets (`*_KEY`, `*_TOKEN`, ...), except the names in `allowed`."""
    keep = set(allowed)
    return {k: v for k, v in os.environ.items() if k in keep or not is_secret_name(k)}


def command_environment(checker: CommandChecker) -> dict[str, str]:
    """The caller's environment without its secrets, except those the checker's `env:` names."""
    return clean_environment(checker.env)


def tagged_processes(tag: str) -> list[int]:
    """Every process whose environment carries `LOOPKIT_CHECK_ID=tag` (an exited one no longer shows it)."""
    needle = f"\0{TAG}={tag}\0".encode()
    found = []
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            environ = (_PROC / entry.name / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in b"\0" + environ + b"\0":
            found.append(int(entry.name))
    return found


def kill_tagged(tag: str) -> None:
    """Kill every process carrying the tag, until none is left (a tree may fork while it is killed)."""
    if not _PROC.is_dir():  # no /proc (macOS): the process group kill is all there is
        return
    deadline = time.monotonic() + _SWEEP_SECONDS
    quiet = 0  # scans in a row that found none: two, since a process in the middle of exec shows no environment
    while quiet < 2 and time.monotonic() < deadline:
        pids = tagged_processes(tag)
        quiet = 0 if pids else quiet + 1
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)  # let the kernel finish the kills (and any exec) before looking again


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the command and everything still in its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def check_command(checker: CommandChecker, output: str, ctx: CheckContext) -> CheckResult:
    output = safe_text(output)
    data = output.encode()
    tag = uuid.uuid4().hex
    env = {**command_environment(checker), "LOOPKIT_CASE": json.dumps(ctx.case, default=str), TAG: tag}
    if ctx.workdir is not None:  # an outside agent's work directory (`worker:`), where its work is to be checked
        env["LOOPKIT_WORKDIR"] = str(ctx.workdir)
    note = ""
    if len(data) <= MAX_ENV_OUTPUT:
        env["LOOPKIT_OUTPUT"] = output.replace("\0", "")  # a variable cannot hold a NUL byte; stdin can
    else:  # the kernel refuses larger variables (E2BIG): stdin only
        env.pop("LOOPKIT_OUTPUT", None)
        note = f"\n(the answer, {len(data):,} bytes, is too long for $LOOPKIT_OUTPUT; it was given on stdin only)"
    limit = TimeLimit.of(checker.timeout, ctx)
    try:
        proc = await asyncio.create_subprocess_shell(
            checker.run, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=ctx.base_dir, env=env, start_new_session=True,
        )
    except OSError as exc:  # e.g. a missing folder, or a case too long for an environment variable (E2BIG)
        raise CheckerError(checker.name, f"`{checker.run}` could not start: {exc.strerror or exc}") from None
    out, timed_out = b"", False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), timeout=limit.seconds)
    except asyncio.TimeoutError:
        timed_out = True
    finally:  # timed out, interrupted (Ctrl-C) or done: nothing the command started lives on
        if proc.returncode is None:
            kill_group(proc)
        kill_tagged(tag)
    if timed_out:
        # asyncio's wait() also waits for the pipes to close; a process that hid from the sweep may hold them
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), _SWEEP_SECONDS)
        if limit.by_budget:
            raise limit.expired(checker.name)
        return CheckResult(0.0, False, f"`{checker.run}` timed out after {checker.timeout:g}s{note}")
    tail = out.decode(errors="replace")[-FEEDBACK_TAIL:].strip()
    ok = proc.returncode == 0
    return verdict(ok, (f"`{checker.run}` exited {proc.returncode}:\n{tail}" if tail else f"`{checker.run}` exited {proc.returncode}") + note)
