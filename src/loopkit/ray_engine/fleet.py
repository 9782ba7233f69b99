"""`loopkit fleet run --engine ray`: a fleet's cases on Ray workers, picked by the fleet as on one machine.

The fleet (fleet/runner.py) still decides which case runs next, from which loop, under which limits;
only where a case runs differs. Its money moves into a `FleetBudgetActor` at the driver's node (the same
pools and chains, so a call on any node reserves against its loop's shares, the day and the total), its
provider limits into the limiter actor (one adaptive limit per provider, for the whole cluster), and each
run's steps come back to the driver, through the loop's reviewer gate, to the fleet's one writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..records import RunResult, new_id
from .scheduler import CaseTask, Scheduler, Shipped

if TYPE_CHECKING:
    from ..budget import BatchPool
    from ..fleet.loops import LoopRun, Work
    from ..fleet.runner import FleetRun
    from ..spec import LoopSpec
    from .driver import Job, RayEngine

NO_PEOPLE = "\x00no people"  # a loop's spec with its hand-offs to a person taken out (no reviewer minutes left)


def _states(pools: dict[str, BatchPool]) -> dict[str, tuple[float | None, float]]:
    return {name: (pool.cap, pool.spent) for name, pool in pools.items()}


class RayFleet:
    """The Ray side of one `fleet run`: a scheduler over the fleet's workers, and its pools' actor."""

    def __init__(self, engine: RayEngine, fleet: FleetRun) -> None:
        self.engine = engine
        self.fleet = fleet
        self.gates: dict[str, Any] = {}  # run id → its loop's ReviewGate, while the run is out
        self.scheduler: Scheduler | None = None

    def job(self) -> Job:
        from ..fleet.runner import DEFAULT_CONCURRENCY
        from .driver import Job

        fleet, specs, batch_ids = self.fleet, {}, {}
        for lr in fleet.loops:
            for key, spec in ((lr.name, lr.batch.spec), (lr.name + NO_PEOPLE, lr.no_people)):
                if spec is not None:
                    specs[key], batch_ids[key] = spec, lr.batch.batch_id
        budget = fleet.fleet.spec.budget
        first = fleet.loops[0].batch
        return Job(specs, first.batch_id, fleet.ledger.path, budget.total_usd or budget.usd_per_day, 0.0, DEFAULT_CONCURRENCY,
                   fleet.options.max_retries, fleet.options.no_cache, batch_ids=batch_ids, pools=_states(fleet.pools()),
                   ceilings=dict(fleet.limits), folder=fleet.shipped_folder)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[RayFleet]:
        async with self.engine.session(self.job(), commit=self._commit) as scheduler:
            self.scheduler = scheduler
            yield self

    @property
    def _budget(self) -> Any:
        return self.scheduler.executor.budget  # type: ignore[union-attr]

    def _commit(self, shipped: Shipped) -> None:
        self.gates[shipped.result.run_id].commit(shipped.result, shipped.iteration, shipped.calls, shipped.events, start=shipped.start)

    def new_day(self, pools: dict[str, BatchPool]) -> None:
        """The day's pools start anew for runs opened from now on."""
        self._budget.reset.remote(_states(pools))

    async def run(self, lr: LoopRun, spec: LoopSpec, work: Work) -> tuple[RunResult | None, str | None]:
        """As `FleetRun._run_here`, on a worker: the run (None when its first call was refused) and the refusing pool."""
        assert self.scheduler is not None
        case, repeat, run_id, state = work
        task = CaseTask(case, repeat, run_id or new_id(), state, key=lr.name if spec is lr.batch.spec else lr.name + NO_PEOPLE)
        self.gates[task.run_id] = lr.gate
        await self._budget.open.remote(task.run_id, self.fleet.chain(lr))
        try:
            await self.scheduler.run(task)
        except BaseException:
            self._budget.close.remote(task.run_id)
            raise
        finally:
            self.gates.pop(task.run_id, None)
        refused_by = await self._budget.close.remote(task.run_id)
        if task.result is None and not task.refused:
            raise asyncio.CancelledError  # the fleet is stopping: the case never started, resume runs it
        return task.result, refused_by

    async def interrupt(self) -> None:
        """Ctrl-C: every worker stops its cases, their last steps are written, runs left without one are `interrupted`."""
        if self.scheduler is not None:
            await self.scheduler.interrupt()
