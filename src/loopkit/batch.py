"""Many cases through one loop: concurrency, the shared batch budget, interrupts and resume."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .budget import BatchPool, CaseBudget, batch_cap, validate_budget
from .cache import KnownKeys, LedgerCache, ReplayMiss
from .engine import BatchBudgetRefused, run_case
from .errors import InputError, UsageError
from .history import with_history
from .human import with_rate
from .inputs import Case, Inputs
from .ledger import Ledger
from .ledger.writer import Writer
from .ledger.queries import batch_runs, batch_spend, batch_status_counts
from .models import ModelPool, RetryPolicy
from .records import RunResult, RunState
from .spec import LoopSpec, parse_spec
from .status import FINISHED, BatchStatus, RunStatus, StopReason, exit_code
from .templates import TemplateError, render
from .tools import Toolbox


@dataclass
class BatchOptions:
    """How a batch runs; saved with the batch so `resume` applies the same ones."""

    concurrency: int = 16
    repeat: int = 1
    max_usd: float | None = None
    no_cache: bool = False
    replay: str | None = None
    max_retries: int = 6
    fail_under: float | None = None
    inputs: str | None = None
    model: str | None = None
    human_usd_per_hour: float | None = None  # prices a person's minutes (the spec's human_rate otherwise)
    escalate: bool = True  # False for `run --explore`: each model on its own, so `plan` sees it alone

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Progress:
    """Counters a progress display reads; updated as runs finish."""

    total: int = 0
    done: int = 0
    passed: int = 0
    in_flight: int = 0
    spent: float = 0.0
    cap: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass
class BatchResult:
    batch_id: str
    status: str
    total: int
    finished: int
    passed: int
    errors: int
    refused: int
    cost_usd: float
    statuses: dict[str, int]
    spec_name: str = ""
    fail_under: float | None = None  # the quality gate the batch runs under (saved with it, so resume keeps it)

    @property
    def runs(self) -> int:
        return sum(self.statuses.values())

    @property
    def pass_rate(self) -> float:
        """Passed runs over every run of the batch (the same rate `show` gives)."""
        return self.passed / self.runs if self.runs else 0.0

    def exit_code(self, fail_under: float | None) -> int:
        return exit_code(budget_refused=bool(self.refused), errors=bool(self.errors),
                         gate_failed=fail_under is not None and self.pass_rate < fail_under)


def check_cases(spec: LoopSpec, inputs: Inputs) -> int:
    """Read every case and render its prompt once, so a broken case stops the batch before any call."""
    count = 0
    for count, case in enumerate(inputs.checked(), start=1):
        try:
            render(spec.task.prompt, case=case.data)
            if spec.task.system:
                render(spec.task.system, case=case.data)
        except TemplateError as exc:
            raise InputError(f"case {case.id!r}: {exc}", location=inputs.label) from None
    if count == 0:  # a CI gate must not pass on nothing
        raise InputError("no cases: the inputs are empty", location=inputs.label)
    return count


class Fanout:
    """Bounded concurrency for a stream of coroutines.

    `acquire()` a slot, then `launch()` into it (or `release()` it). On leaving the block every
    task is awaited; the first crash stops no one by itself but is re-raised at the end (check
    `crash` to stop launching); a cancellation (Ctrl-C) cancels every task in flight.
    """

    def __init__(self, limit: int) -> None:
        self._gate = asyncio.Semaphore(max(1, limit))
        self._tasks: set[asyncio.Task] = set()
        self.crash: BaseException | None = None

    async def acquire(self) -> None:
        await self._gate.acquire()

    def release(self) -> None:
        self._gate.release()

    def launch(self, coro: Any) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # noqa: BLE001 - kept and re-raised once the others finished
                self.crash = self.crash or exc
            finally:
                self._gate.release()

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> Fanout:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                await asyncio.gather(*list(self._tasks))
            except asyncio.CancelledError:
                exc_type = asyncio.CancelledError
        if exc_type is not None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if exc_type is asyncio.CancelledError and exc is None:
                raise asyncio.CancelledError
            return
        if self.crash is not None:
            raise self.crash


def _cases_with_repeats(inputs: Inputs, repeat: int) -> Iterator[tuple[Case, int]]:
    for case in inputs:
        for r in range(repeat):
            yield case, r


class Batch:
    """One `run` (or `resume`) invocation over a spec's cases."""

    def __init__(self, spec: LoopSpec, ledger: Ledger, options: BatchOptions, *, argv: list[str] | None = None,
                 tags: dict[str, str] | None = None, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.spec = spec.with_model(options.model) if options.model else spec
        if not options.escalate:
            self.spec = self.spec.model_copy(update={"escalate": []})
        self.spec = with_rate(self.spec, options.human_usd_per_hour)
        self.ledger = ledger
        self.options = options
        self.argv = argv or []
        self.tags = tags or {}
        self.on_progress = on_progress or (lambda p: None)
        self.pool = BatchPool(cap=batch_cap(spec.budget.total_usd, options.max_usd))
        self.progress = Progress(cap=self.pool.cap)
        self.models = ModelPool(retry=RetryPolicy(attempts=max(1, options.max_retries)), concurrency=options.concurrency)
        self.inputs = Inputs(options.inputs if options.inputs else spec.inputs, base_dir=None if options.inputs else spec.base_dir)
        self.refused = 0
        self.batch_id = ""
        self.writer: Writer | None = None  # the batch's one writer, while it runs
        self.known: KnownKeys | None = None  # what its cache lookups could find (cache.py), while it runs here
        self.engine: Any = None  # where cases run: None in this process (asyncio), else e.g. ray_engine.RayEngine
        self.toolbox: Toolbox | None = None  # the spec's tools: MCP servers run while the batch does

    def _clients(self):  # noqa: ANN202
        if self.options.replay:
            return lambda ref: ReplayMiss(ref, self.options.replay or "")
        return self.models.client

    def _cache(self):  # noqa: ANN202
        if self.options.replay:
            return LedgerCache(self.writer or self.ledger, replay_batch=self.options.replay)
        return None if self.options.no_cache else LedgerCache(self.writer or self.ledger, known=self.known)

    def prepare(self) -> int:
        """Everything that can fail before a call is paid for: inputs, prices, keys, the engine's cluster."""
        validate_budget(self.spec, extra_cap=self.options.max_usd)  # --model and --max-usd are only known here
        self.spec = with_history(self.spec, self.ledger)  # what the ledger says of `cheapest:` options, read once
        count = check_cases(self.spec, self.inputs)
        if self.spec.tools:
            self.toolbox = Toolbox.load(self.spec)  # the user's tool files import, and their schemas derive, before any call
        if not self.options.replay:
            for _, model in self.spec.models():
                self.models.client(model)  # an unknown model or a missing key fails here, before any call
        if self.engine is not None:
            self.engine.connect_for([self.spec])  # a bad --address fails before the batch is recorded
        return count

    async def _run_one(self, case: Case, repeat: int, *, run_id: str | None = None, state: RunState | None = None) -> RunResult | None:
        budget = CaseBudget(self.spec.budget, self.pool)
        self.progress.in_flight += 1
        try:
            result = await run_case(self.spec, case, clients=self._clients(), recorder=self.writer or self.ledger, budget=budget,
                                    cache=self._cache(), batch_id=self.batch_id, repeat=repeat, run_id=run_id, state=state,
                                    toolbox=self.toolbox)
        except BatchBudgetRefused:
            self.refused += 1
            return None
        finally:
            self.progress.in_flight -= 1
        p = self.progress
        p.done += 1
        p.passed += int(result.success)
        p.statuses[result.status] = p.statuses.get(result.status, 0) + 1
        p.spent = self.pool.spent
        self.on_progress(p)
        return result

    async def _drive(self, work: Iterator[tuple[Case, int, str | None, RunState | None]]) -> None:
        async with Fanout(self.options.concurrency) as fan:
            for case, repeat, run_id, state in work:
                await fan.acquire()
                if self.refused or fan.crash:  # once the batch budget refused a case, start no more
                    fan.release()
                    self.refused += int(bool(self.refused))
                    continue
                fan.launch(self._run_one(case, repeat, run_id=run_id, state=state))

    def _result(self, status: str) -> BatchResult:
        counts = batch_status_counts(self.ledger, self.batch_id)
        finished = sum(n for s, n in counts.items() if s in FINISHED)
        return BatchResult(self.batch_id, status, sum(counts.values()) + self.refused, finished, counts.get(RunStatus.PASSED, 0),
                           counts.get(RunStatus.ERROR, 0), self.refused, batch_spend(self.ledger, self.batch_id), counts,
                           self.spec.name, self.options.fail_under)

    async def _execute(self, work: Iterator[tuple[Case, int, str | None, RunState | None]]) -> BatchResult:
        self.writer = self.ledger.writer()
        if not (self.options.replay or self.options.no_cache) and self.engine is None:
            self.known = KnownKeys.of(self.ledger, self.writer, self.spec.name, self.batch_id)
        async with contextlib.AsyncExitStack() as stack:  # MCP servers start once per batch, stop at its end or Ctrl-C
            if self.toolbox is not None:
                try:
                    await stack.enter_async_context(self.toolbox)
                except BaseException:
                    self.ledger.finish_batch(self.batch_id, BatchStatus.INTERRUPTED)
                    await self.writer.aclose()
                    raise
            drive = self._drive(work) if self.engine is None else self.engine.drive(self, work)
            await interruptible(self.ledger, self.batch_id, drive, self.writer)
        status = BatchStatus.BUDGET if self.refused else BatchStatus.DONE
        self.ledger.finish_batch(self.batch_id, status)
        return self._result(status)

    def run(self) -> BatchResult:
        """Run every case × repeat; Ctrl-C marks runs in flight and the batch `interrupted`."""
        total = self.prepare()
        self.progress.total = total * self.options.repeat
        self.ledger.save_spec(self.spec.hash, self.spec.name, str(self.spec.path) if self.spec.path else None, self.spec.source)
        self.batch_id = self.ledger.start_batch("run", self.spec.hash, argv=self.argv, tags=self.tags,
                                                options=self.options.to_dict(), inputs=self.inputs.label)
        work = ((case, r, None, None) for case, r in _cases_with_repeats(self.inputs, self.options.repeat))
        return _run_until_interrupted(self._execute(work))

    def resume(self, batch_id: str, *, retry_errors: bool = False) -> BatchResult:
        """Finish a batch: skip finished runs; every other run continues under its own id from its last
        committed iteration (one case × repeat, one row, whatever happened to it)."""
        self.batch_id = batch_id
        total = self.prepare()
        self.progress.total = total * self.options.repeat
        done = FINISHED - ({RunStatus.ERROR} if retry_errors else set())
        existing = {(row["case_id"], row["repeat"]): row for row in batch_runs(self.ledger, batch_id)}
        self.ledger.claim_batch(batch_id)
        spent_before = self.pool.spent = batch_spend(self.ledger, batch_id)  # the batch budget covers what was spent
        # the invocation itself is a `resume` batch row (SPEC.md §4); its runs stay under the original batch id
        invocation = self.ledger.start_batch("resume", self.spec.hash, argv=self.argv, tags={**self.tags, "resumes": batch_id},
                                             options=self.options.to_dict(), inputs=self.inputs.label)

        def work() -> Iterator[tuple[Case, int, str | None, RunState | None]]:
            for case, r in _cases_with_repeats(self.inputs, self.options.repeat):
                row = existing.get((case.id, r))
                if row is None:
                    yield case, r, None, None
                elif row["status"] not in done:
                    yield case, r, row["id"], self.ledger.continuation(row["id"])
                else:
                    self.progress.done += 1
                    self.progress.passed += int(row["status"] == RunStatus.PASSED)

        status = BatchStatus.INTERRUPTED
        try:
            result = _run_until_interrupted(self._execute(work()))
            status = result.status
            return result
        finally:
            self.ledger.finish_batch(invocation, status, cost_usd=batch_spend(self.ledger, batch_id) - spent_before)


async def interruptible(ledger: Ledger, batch_id: str, work: Any, writer: Writer) -> None:
    """Await a batch's work, then its writer's last commits. Ctrl-C (KeyboardInterrupt out) or a crash marks
    the batch interrupted (SPEC.md §2 counts a crash as one), once every step handed over is written: the
    calls in flight were paid for. The loop keeps running while the writer finishes, so a second Ctrl-C
    still stops a writer stuck behind another process's lock."""
    try:
        await work
    except BaseException as exc:
        await _written(writer)
        ledger.finish_batch(batch_id, BatchStatus.INTERRUPTED)
        if isinstance(exc, asyncio.CancelledError):
            raise KeyboardInterrupt from None
        raise
    await _written(writer)


async def _written(writer: Writer) -> None:
    """Close the writer without blocking the loop. A Ctrl-C while it waits (on a ledger another process
    keeps locked) gives up on what is left: the batch stays `running` under a process about to be gone,
    which reads as interrupted, and `resume` re-runs the iterations that were not written."""
    try:
        await writer.aclose()
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _run_until_interrupted(coro: Any) -> BatchResult:
    """Run the batch; the first Ctrl-C (or SIGTERM) cancels it cleanly instead of killing mid-write."""

    async def main() -> BatchResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, task.cancel)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            return await coro
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def spec_of_batch(ledger: Ledger, batch: dict[str, Any]) -> LoopSpec:
    """The spec version a batch ran, from the ledger's copy (relative paths resolve where it was)."""
    from pathlib import Path

    row = ledger.spec_text(batch["spec_hash"])
    if row is None:
        raise UsageError(f"batch {batch['id'][:12]}: its spec is not in the ledger")
    path = Path(row["path"]) if row["path"] else None
    return parse_spec(row["yaml"], path=path, display=row["path"] or row["name"])
