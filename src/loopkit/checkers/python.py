"""The `python` checker: a user's function `check(output, case)`, run in a worker process (see
python_worker.py) that is killed when it runs past its time limit or the run is interrupted.

Workers are kept between calls (starting Python and loopkit costs ~0.2 s and ~40 MB; a call costs
about a millisecond) and killed when this process exits. At most one per CPU runs at a time (more
would not check faster); other checks wait for a free one rather than start a process each.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pickle
import select
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from ..spec import PythonChecker
from .base import CheckContext, CheckerError, CheckResult, TimeLimit
from .pipe import HEADER, READY, Reply, Request, write_message

WORKERS = max(2, os.cpu_count() or 1)
STARTUP_SECONDS = 60.0  # for a worker to import loopkit; not counted against a checker's timeout
# loopkit's own folder goes last on the worker's path: found even when not installed, shadowing nothing.
_START = (f"import sys; sys.path.append({str(Path(__file__).resolve().parents[2])!r}); "
          "from loopkit.checkers.python_worker import main; main()")


class WorkerGone(Exception):
    """The worker process ended (os._exit, a crash, a kill) before it answered."""


class _Worker:
    """One worker process and the pipes to it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _START], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.ready = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self, n: int, deadline: float) -> bytes | None:
        """n bytes from the worker, or None when the deadline passes first."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        chunks, left = [], n
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                return None
            chunk = os.read(fd, left)
            if not chunk:
                raise WorkerGone(f"exit code {self.proc.wait()}")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _message(self, seconds: float) -> object | None:
        deadline = time.monotonic() + seconds
        header = self._read(HEADER.size, deadline)
        data = None if header is None else self._read(HEADER.unpack(header)[0], deadline)
        return None if data is None else pickle.loads(data)

    def ask(self, request: Request, seconds: float) -> Reply | None:
        """The worker's reply, or None when it took longer than `seconds`."""
        if not self.ready:
            if self._message(STARTUP_SECONDS) != READY:
                raise WorkerGone(f"did not start within {STARTUP_SECONDS:g}s")
            self.ready = True
        try:
            write_message(self.proc.stdin, request)  # type: ignore[arg-type]
        except BrokenPipeError:
            raise WorkerGone(f"exit code {self.proc.wait()}") from None
        return self._message(seconds)  # type: ignore[return-value]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class _Pool:
    """Idle workers, reused by the next check; a worker that timed out or was interrupted is killed."""

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()

    def take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._all.discard(worker)
            worker = _Worker()
            self._all.add(worker)
            return worker

    def give(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(worker)
                return
        self.discard(worker)

    def discard(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.kill()


pool = _Pool(max_idle=WORKERS)
atexit.register(pool.close)
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _turn() -> asyncio.Semaphore:
    """The running event loop's limit on python checks at a time (a semaphore belongs to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _turns:
        _turns[loop] = asyncio.Semaphore(WORKERS)
    return _turns[loop]


async def check_python(checker: PythonChecker, output: str, ctx: CheckContext) -> CheckResult:
    async with _turn():  # the wait for a free worker is not the checker's time
        return await _check(checker, output, ctx)


async def _check(checker: PythonChecker, output: str, ctx: CheckContext) -> CheckResult:
    limit = TimeLimit.of(checker.timeout, ctx)
    request: Request = (checker.function, str(ctx.base_dir), output, ctx.case, ctx.pass_threshold, ctx.tool_calls)
    worker = pool.take()
    try:
        reply = await asyncio.to_thread(worker.ask, request, limit.seconds)
    except WorkerGone as gone:
        pool.discard(worker)
        raise CheckerError(checker.name, f"{checker.function}: its process ended ({gone})") from None
    except Exception as exc:  # noqa: BLE001 - e.g. a case that cannot be sent to the worker
        pool.discard(worker)
        raise CheckerError(checker.name, f"{checker.function} could not be called: {type(exc).__name__}: {exc}") from None
    except BaseException:  # cancelled (Ctrl-C): the worker may be mid-call, so it goes
        pool.discard(worker)
        raise
    if reply is None:
        pool.discard(worker)
        raise limit.expired(checker.name)
    pool.give(worker)
    ok, value = reply
    if not ok:
        raise CheckerError(checker.name, f"{checker.function} {value}")
    return CheckResult(*value)
