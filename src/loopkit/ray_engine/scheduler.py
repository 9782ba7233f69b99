"""The Ray engine's scheduler: a bounded window of cases over an executor, each step committed once.

Kept apart from Ray (it imports none) so it is tested on a fake executor. An executor runs one case
somewhere and streams back the steps its worker's recorder handed over; the scheduler commits each
step as it arrives (the driver is the ledger's only writer), remembers where every case stands, and:

- a worker lost mid-case (a node gone, an actor killed): its reservations are charged and freed, and
  the case runs again elsewhere from its last step that arrived, under the same run id, so nothing
  is recorded twice and nothing committed is paid twice;
- the batch budget refused a case's first call: no case starts after it (as the asyncio engine);
- Ctrl-C (the drive cancelled): every worker is told to stop its cases, their last steps are drained
  for a few seconds, and every run still without a final step is marked `interrupted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ..inputs import Case
from ..records import CallRecord, EventRecord, IterationRecord, RunInfo, RunResult, RunState
from ..status import RunStatus, StopReason
from ..timewindow import utcnow_iso

MAX_WORKER_LOSSES = 3  # a case whose worker died this often is recorded as an error, not retried forever
DRAIN_SECONDS = 5.0  # after Ctrl-C, how long the last steps of the cases in flight may take to arrive
REFUSED = "refused"  # what an executor streams when the batch budget refused a case's first call


@dataclass
class Shipped:
    """One step of a run as a worker's recorder handed it over: the arguments of `Recorder.commit`."""

    result: RunResult
    iteration: IterationRecord | None
    calls: list[CallRecord]
    events: list[EventRecord]
    start: RunInfo | None


@dataclass
class CaseTask:
    """One case × repeat and where its run stands: `state` is None until its first step is committed."""

    case: Case
    repeat: int
    run_id: str
    state: RunState | None = None
    variant: str | None = None  # an A/B test's "A" or "B"; None in a `run` batch
    key: str | None = None  # which of the workers' specs runs it (a fleet's loop); None: the variant's
    result: RunResult | None = None  # of the last committed step
    refused: bool = False  # the budget refused its first call: nothing of it was written
    losses: int = 0  # workers lost while running it

    @property
    def spec_key(self) -> str | None:
        """Which of the job's specs runs it: the fleet loop's `key`, else the variant's (None in a `run` batch)."""
        return self.variant if self.key is None else self.key

    @property
    def status(self) -> RunStatus | None:
        return None if self.result is None else self.result.status

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status != RunStatus.RUNNING


class Executor(Protocol):
    """Where cases run (Ray actors; a fake in the tests)."""

    def run(self, task: CaseTask) -> AsyncIterator[list[Shipped] | str]:
        """Run the case from `task.state` (or from the start); stream its steps in order, or REFUSED."""

    def lost(self, exc: BaseException) -> bool:
        """Whether `exc` (raised by a stream) means the worker is gone, so the case may run elsewhere."""

    async def release(self, task: CaseTask) -> None:
        """A lost case's reservations: charged at their worst case (the provider may bill them) and freed."""

    async def interrupt(self) -> None:
        """Ask every worker to stop its cases now; their last steps still arrive through the streams."""


def stopped(task: CaseTask, status: RunStatus, reason: StopReason, message: str | None = None) -> RunResult:
    """The run as it stood at its last committed step, ended by the driver (interrupted, or lost for good)."""
    s = task.state or RunState()
    return RunResult(task.run_id, status, reason, False, s.best_reward, s.iterations, s.best_iteration, s.best_output,
                     s.cost_usd, s.prompt_tokens, s.completion_tokens, s, ended_at=utcnow_iso(), message=message)


class Scheduler:
    """Streams tasks through an executor, at most `window` at once. `commit` gets every step, once, in order."""

    def __init__(self, executor: Executor, *, window: int, commit: Callable[[Shipped], None],
                 info: Callable[[CaseTask], RunInfo], drain_seconds: float = DRAIN_SECONDS,
                 max_losses: int = MAX_WORKER_LOSSES, on_refused: Callable[[CaseTask], None] | None = None) -> None:
        self.executor = executor
        self.window = max(1, window)
        self.commit = commit
        self.info = info  # the run's fixed facts, for a run the driver must write itself
        self.on_refused = on_refused or (lambda task: None)  # a case the batch budget refused (no row written)
        self.drain_seconds = drain_seconds
        self.max_losses = max_losses
        self.refused = 0
        self.crash: BaseException | None = None
        self.stopping = False
        self.running: dict[asyncio.Task[None], CaseTask] = {}

    async def drive(self, tasks: Iterable[CaseTask]) -> None:
        """Run every task; the next task is drawn from `tasks` only once the window has room for it, never
        before, so a generator decides what to run next (an A/B test's early stop) as late as it can."""
        gate = asyncio.Semaphore(self.window)
        pending = iter(tasks)
        try:
            while True:
                await gate.acquire()
                task = next(pending, None)
                if task is None:
                    gate.release()
                    break
                if self.refused or self.crash:  # once the batch budget refused a case, start no more
                    gate.release()
                    if self.refused:
                        self.refused += 1
                        self.on_refused(task)
                    continue
                runner = asyncio.create_task(self._one(task))
                self.running[runner] = task
                runner.add_done_callback(lambda done: (self.running.pop(done, None), gate.release()))
            while self.running:  # asyncio.wait, not gather: cancelling this wait must not cancel the cases
                await asyncio.wait(list(self.running))
        except asyncio.CancelledError:
            await self.interrupt()
            raise
        if self.crash is not None:
            raise self.crash

    async def run(self, task: CaseTask) -> None:
        """One task the caller admitted itself (a fleet picks each next case by its own limits), committed as
        `drive` commits; `interrupt` stops it with the rest."""
        runner = asyncio.current_task()
        assert runner is not None
        self.running[runner] = task
        try:
            await self._one(task)
        finally:
            self.running.pop(runner, None)
        if self.crash is not None:
            raise self.crash

    def _record(self, task: CaseTask, shipped: Shipped) -> None:
        self.commit(shipped)
        task.state = shipped.result.state
        task.result = shipped.result

    async def _one(self, task: CaseTask) -> None:
        while True:
            try:
                async for item in self.executor.run(task):
                    if item == REFUSED:
                        task.refused = True
                        self.refused += 1
                        self.on_refused(task)
                        return
                    for shipped in item:
                        self._record(task, shipped)
                if not task.finished and not self.stopping:
                    raise RuntimeError(f"case {task.case.id!r}: its worker ended it without a result")
                self._settle_stopped(task)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost worker is retried; anything else stops the batch
                if not self.executor.lost(exc):
                    self.crash = self.crash or exc
                    return
                await self.executor.release(task)
                if task.finished or self.stopping:
                    self._settle_stopped(task)
                    return
                task.losses += 1
                if task.losses >= self.max_losses:
                    self._give_up(task, exc)
                    return

    def _give_up(self, task: CaseTask, exc: BaseException) -> None:
        message = f"its worker was lost {task.losses} times (last: {type(exc).__name__}); not retried again"
        result = stopped(task, RunStatus.ERROR, StopReason.ERROR, message)
        start = self.info(task) if task.state is None else None
        self._record(task, Shipped(result, None, [], [EventRecord("error", {"message": message, "worker_losses": task.losses})],
                                   start))

    def _settle_stopped(self, task: CaseTask) -> None:
        """Once the batch is stopping, a run whose final step will not arrive is marked `interrupted` (one
        never started has no row: resume runs it from the start)."""
        if self.stopping and task.state is not None and not task.finished:
            self._record(task, Shipped(stopped(task, RunStatus.INTERRUPTED, StopReason.INTERRUPTED), None, [], [], None))

    async def interrupt(self) -> None:
        """Stop every worker's cases, drain their last steps (a second Ctrl-C cuts this short), and mark
        each run still without a final step `interrupted`."""
        self.stopping = True
        try:
            await self.executor.interrupt()
            if self.running:
                await asyncio.wait(list(self.running), timeout=self.drain_seconds)
        finally:
            for runner, task in list(self.running.items()):
                runner.cancel()
                self._settle_stopped(task)
            if self.running:
                await asyncio.wait(list(self.running), timeout=self.drain_seconds)
