"""`loopkit fleet run`: drain every loop's cases under the fleet's shared limits.

One event loop, one ledger writer. Each time a slot frees, the next case comes from the highest-ranked
loop (priority, moved up by a near deadline) that is not paused, still has money in its share, and
whose provider has a free slot. Money: each case's calls reserve their worst case from the loop's
share, the day's budget and the fleet's total (money.py, built from budget.py's pools). Outside the
window, or with the day's budget spent, nothing starts: the run waits (on its clock) or, with
`once`, returns. Ctrl-C or a crash marks the loops' batches interrupted; a rerun picks up there.
With `engine` (the Ray engine) the fleet still picks every case; only where it runs differs
(ray_engine/fleet.py), with the same pools and limits held by actors at the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..batch import Batch, BatchOptions, _run_until_interrupted
from ..budget import BatchPool, CaseBudget, batch_cap
from ..engine import BatchBudgetRefused, run_case
from ..ledger import Ledger
from ..ledger import fleet as rows
from ..records import RunResult
from ..spec import LoopSpec
from ..status import BatchStatus, RunStatus, StopReason, exit_code
from .clock import Clock, SystemClock, day_bounds, in_window, seconds_to_midnight, seconds_to_open
from .load import Fleet
from .loops import LoopRun, Work
from .money import NamedPool, PoolChain
from .providers import FleetModels, provider_of
from .reviewers import ReviewerDesk, ReviewGate, handoff_minutes, unheld, without_people
from .yielding import YieldWatch

DEFAULT_CONCURRENCY = 16  # cases in flight for a provider the fleet file does not list


@dataclass
class FleetOptions:
    once: bool = False  # outside the window (or with the day's budget spent) return instead of waiting
    max_retries: int = 6
    no_cache: bool = False
    clock: Clock = field(default_factory=SystemClock)
    argv: list[str] = field(default_factory=list)
    on_launch: Callable[[str, str, datetime], None] | None = None  # (loop, case id, local time): progress, tests
    on_note: Callable[[str], None] | None = None  # what the fleet is doing and why: waiting, a loop paused, money out
    engine: Any = None  # where cases run: None in this process, else a ray_engine.RayEngine


@dataclass
class FleetResult:
    fleet_id: str
    name: str
    status: str  # done, waiting (window or day budget, with --once), budget (the total is spent), paused
    loops: list[dict[str, Any]]
    spent_usd: float

    @property
    def exit_code(self) -> int:
        return exit_code(budget_refused=self.status == "budget", errors=any(lp["errors"] for lp in self.loops), gate_failed=False)


class FleetRun:
    def __init__(self, fleet: Fleet, ledger: Ledger, options: FleetOptions | None = None) -> None:
        self.fleet = fleet
        self.ledger = ledger
        self.options = options or FleetOptions()
        self.clock = self.options.clock
        spec = fleet.spec
        self.window = spec.time_window
        self.limits = {name: p.concurrency for name, p in spec.providers.items()}
        self.models = FleetModels(self.limits, max_retries=self.options.max_retries, default=DEFAULT_CONCURRENCY)
        self.desk = ReviewerDesk(spec.reviewers.minutes_per_day if spec.reviewers else None)
        self.loops: list[LoopRun] = []
        self.fleet_id = ""
        self.day = ""
        self.total = BatchPool(cap=spec.budget.total_usd)
        self.today = BatchPool(cap=spec.budget.usd_per_day)
        self.total_out = False
        self.day_out = False
        self.in_flight: dict[str, int] = {}
        self.remote: Any = None  # the Ray engine's side of the fleet (ray_engine.fleet.RayFleet) while it runs

    # --- setup: every check before the first call, each loop's batch found or started ----------------

    def prepare(self) -> None:
        spec = self.fleet.spec
        self.fleet_id = rows.save_fleet(self.ledger, self.fleet.name, str(self.fleet.path), self.fleet.source)
        rate = spec.reviewers.usd_per_hour if spec.reviewers else None
        for plan in self.fleet.loops:
            provider = provider_of(plan.spec.model)
            options = BatchOptions(concurrency=self.limits.get(provider, DEFAULT_CONCURRENCY), inputs=plan.inputs,
                                   max_retries=self.options.max_retries, no_cache=self.options.no_cache, human_usd_per_hour=rate,
                                   max_usd=spec.budget.total_usd or spec.budget.usd_per_day)
            batch = Batch(plan.spec, self.ledger, options, argv=self.options.argv)
            batch.models = self.models  # one client per model, one adaptive limit per provider
            cases = batch.prepare()
            self.ledger.save_spec(batch.spec.hash, batch.spec.name, str(plan.spec.path) if plan.spec.path else None, batch.spec.source)
            tags = {"fleet": self.fleet_id, "fleet_name": self.fleet.name, "fleet_loop": plan.name, "fleet_priority": str(plan.priority),
                    "fleet_share": "" if plan.share is None else str(plan.share), "fleet_cases": str(cases)}
            existing = rows.loop_batch(self.ledger, self.fleet_id, plan.name, batch.spec.hash)
            if existing is not None:
                self.ledger.claim_batch(existing["id"])  # refuses while another process runs this fleet
                batch.batch_id = existing["id"]
            else:
                batch.batch_id = self.ledger.start_batch("fleet", batch.spec.hash, argv=self.options.argv, tags=tags,
                                                         options=options.to_dict(), inputs=batch.inputs.label)
            share_total = BatchPool(cap=batch_cap(plan.share * spec.budget.total_usd if plan.share and spec.budget.total_usd else None,
                                                  plan.spec.budget.total_usd))
            share_day = BatchPool(cap=plan.share * spec.budget.usd_per_day if plan.share and spec.budget.usd_per_day else None)
            share_total.spent = rows.spend(self.ledger, [batch.batch_id])
            n, passed, cost = rows.recent_outcomes(self.ledger, batch.batch_id)
            gate = ReviewGate(None, self.desk, fleet_id=self.fleet_id, loop=plan.name)
            self.loops.append(LoopRun(plan, batch, provider, gate, YieldWatch(spec.yielding, runs=n, passed=passed, cost=cost),
                                      without_people(batch.spec), share_total, share_day))
        paused = rows.paused_loops(self.ledger, self.fleet_id)
        for lr in self.loops:
            lr.paused = (paused.get(lr.name) or {}).get("reason")
        self.total.spent = rows.spend(self.ledger, self._batch_ids())
        self._new_day(self.clock.now())
        rows.set_fleet_status(self.ledger, self.fleet_id, "running")

    @property
    def shipped_folder(self) -> Path | None:
        """What Ray ships with --address: one folder holding the fleet file and every loop's spec."""
        from ..ray_engine.driver import common_folder

        return common_folder([self.fleet.path.parent, *(plan.spec.base_dir for plan in self.fleet.loops)])

    def _batch_ids(self) -> list[str]:
        return [lr.batch.batch_id for lr in self.loops]

    def _new_day(self, now: datetime) -> None:
        """The day's pools start from what the ledger says today's calls and reviews took (a rerun keeps counting)."""
        since, until = day_bounds(now)
        self.day = since
        spec = self.fleet.spec
        self.today = BatchPool(cap=spec.budget.usd_per_day, spent=rows.spend(self.ledger, self._batch_ids(), since=since, until=until))
        self.day_out = False
        for lr in self.loops:
            lr.share_day = BatchPool(cap=lr.share_day.cap, spent=rows.spend(self.ledger, [lr.batch.batch_id], since=since, until=until))
            if lr.out_of_money == "day share":
                lr.out_of_money = None
        from ..human import DEFAULT_REVIEW_MINUTES

        self.desk.used = rows.reviewer_minutes(self.ledger, self._batch_ids(), since=since, until=until, default=DEFAULT_REVIEW_MINUTES)
        self._release_held()
        if self.remote is not None:
            self.remote.new_day(self.pools(day_only=True))

    def pools(self, *, day_only: bool = False) -> dict[str, BatchPool]:
        """Every pool of the fleet by name (the day's alone with `day_only`), as `chain` names them."""
        found = {"day": self.today} | {f"{lr.name}\x00day share": lr.share_day for lr in self.loops}
        if not day_only:
            found |= {"total": self.total} | {f"{lr.name}\x00share": lr.share_total for lr in self.loops}
        return found

    def chain(self, lr: LoopRun) -> list[tuple[str, str]]:
        """The pools a case of `lr` reserves from, first asked first: (the name a refusal reports, the pool's name)."""
        return [("share", f"{lr.name}\x00share"), ("day share", f"{lr.name}\x00day share"), ("day", "day"), ("total", "total")]

    def _release_held(self) -> None:
        """Runs held for reviewer capacity go first when a day's minutes start: higher priority, then oldest."""
        rank = {lr.batch.batch_id: lr.plan.priority for lr in self.loops}
        loop_of = {lr.batch.batch_id: lr.name for lr in self.loops}
        for row in sorted(rows.held_runs(self.ledger, self._batch_ids()), key=lambda r: rank.get(r["batch_id"], 0)):
            minutes = float(row["minutes"] or 0.0)
            if not self.desk.take(minutes):
                break
            rows.release_held(self.ledger, row["id"], unheld(row["message"]),
                              {"fleet": self.fleet_id, "loop": loop_of.get(row["batch_id"]), "minutes": minutes})

    # --- the drain ---------------------------------------------------------------------------------

    def _pick(self, now: datetime) -> tuple[LoopRun, Work] | None:
        for lr in sorted(self.loops, key=lambda lr: lr.rank(now)):
            if not lr.runnable or self.in_flight.get(lr.provider, 0) >= self.limits.get(lr.provider, DEFAULT_CONCURRENCY):
                continue
            if lr.peek() is not None:
                return lr, lr.take()
        return None

    def _blocked(self, now: datetime) -> str | None:
        if self.total_out:
            return "budget"
        if not in_window(self.window, now):
            return "window"
        if self.day_out:
            return "day"
        return None

    def _note(self, text: str) -> None:
        if self.options.on_note is not None:
            self.options.on_note(text)

    async def _wait(self, why: str, now: datetime) -> None:
        seconds = seconds_to_open(self.window, now) if why == "window" and self.window else seconds_to_midnight(now)
        until = f"{(now + timedelta(seconds=seconds)):%Y-%m-%d %H:%M}"
        self._note(f"outside the window {self.window}: waiting until {until}" if why == "window" else
                   f"today's budget (or a loop's daily share) is spent: waiting until {until}")
        await self.clock.sleep(seconds)

    async def drain(self) -> str:
        tasks: set[asyncio.Task] = set()

        async def settle_one() -> None:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                tasks.discard(task)
                task.result()  # a crash (a bug, a full disk) stops the fleet

        try:
            while True:
                now = self.clock.now()
                if day_bounds(now)[0] != self.day:
                    self._new_day(now)
                blocked = self._blocked(now)
                pick = None if blocked else self._pick(now)
                if pick is None:
                    if tasks:
                        await settle_one()
                        continue
                    waiting = blocked or ("day" if any(lr.out_of_money == "day share" and not lr.paused for lr in self.loops) else None)
                    if waiting is None:
                        if any(lr.out_of_money == "share" and not lr.drained for lr in self.loops):
                            return "budget"  # a loop's share kept cases from running (exit 3, as a batch budget)
                        return "paused" if any(lr.paused and not lr.drained for lr in self.loops) else "done"
                    if waiting == "budget":
                        return "budget"
                    if self.options.once:
                        self._note(f"outside the window {self.window}: --once, so no waiting" if waiting == "window" else
                                   "today's budget (or a loop's daily share) is spent: --once, so no waiting")
                        return "waiting"
                    await self._wait(waiting, now)
                    continue
                lr, work = pick
                if self.options.on_launch is not None:
                    self.options.on_launch(lr.name, work[0].id, now)
                self.in_flight[lr.provider] = self.in_flight.get(lr.provider, 0) + 1
                lr.in_flight += 1
                tasks.add(asyncio.create_task(self._case(lr, work)))
        except BaseException:
            if self.remote is not None:
                await self.remote.interrupt()  # the workers stop their cases; the steps still coming are written
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _case(self, lr: LoopRun, work: Work) -> None:
        case, repeat, run_id, state = work
        spec = lr.batch.spec
        if state is None and lr.no_people is not None and not self.desk.can_take(handoff_minutes(spec)):
            spec = lr.no_people  # no reviewer minutes left today: a model escalation instead of a person
        try:
            result, refused_by = await (self._run_here(lr, spec, work) if self.remote is None else self.remote.run(lr, spec, work))
        finally:
            self.in_flight[lr.provider] -= 1
            lr.in_flight -= 1
        if result is None:
            lr.refused += 1
            lr.requeue(work)
            self._out_of_money(lr, refused_by or "total")  # no pool named: stop rather than retry it forever
            return
        lr.finished += 1
        lr.errors += int(result.status == RunStatus.ERROR)
        if result.stop_reason == StopReason.BUDGET_TOTAL_USD:
            self._out_of_money(lr, refused_by)
        if result.status == RunStatus.NEEDS_REVIEW or result.stop_reason == StopReason.BUDGET_TOTAL_USD:
            return  # a person's decision, or money, not the loop's quality: neither counts for yielding
        reason = lr.watch.add(result)
        if reason and not lr.paused:
            lr.paused = reason
            self._note(f"loop {lr.name} paused: {reason}; `loopkit fleet resume-loop` un-pauses it")
            rows.fleet_event(self.ledger, self.fleet_id, "fleet_pause", lr.name, {"reason": reason, "batch_id": lr.batch.batch_id})

    async def _run_here(self, lr: LoopRun, spec: LoopSpec, work: Work) -> tuple[RunResult | None, str | None]:
        """The case's run in this process, and the pool that refused it if one did (no run: its first call was refused)."""
        case, repeat, run_id, state = work
        pools = self.pools()
        chain = PoolChain([NamedPool(label, pools[name]) for label, name in self.chain(lr)])
        try:
            result = await run_case(spec, case, clients=lr.batch._clients(), recorder=lr.gate, budget=CaseBudget(spec.budget, chain),
                                    cache=lr.batch._cache(), batch_id=lr.batch.batch_id, repeat=repeat, run_id=run_id, state=state,
                                    toolbox=lr.batch.toolbox)
        except BatchBudgetRefused:
            return None, chain.refused_by
        return result, chain.refused_by

    def _out_of_money(self, lr: LoopRun, pool: str | None) -> None:
        if pool is not None and not (pool == "total" and self.total_out or pool == "day" and self.day_out or lr.out_of_money == pool):
            self._note({"total": "the fleet's total budget is spent", "day": "today's budget is spent",
                        "share": f"loop {lr.name} spent its share", "day share": f"loop {lr.name} spent today's share"}[pool])
        if pool == "total":
            self.total_out = True
        elif pool == "day":
            self.day_out = True
        elif pool in ("share", "day share"):
            lr.out_of_money = pool

    # --- the whole invocation ---------------------------------------------------------------------

    async def _execute(self) -> FleetResult:
        writer = self.ledger.writer()
        for lr in self.loops:
            lr.batch.writer = writer
            lr.gate.inner = writer
        status = "interrupted"
        try:
            async with contextlib.AsyncExitStack() as stack:  # the loops' MCP servers (or Ray's actors) run while the fleet does
                if self.options.engine is not None:
                    from ..ray_engine.fleet import RayFleet

                    self.remote = await stack.enter_async_context(RayFleet(self.options.engine, self).session())
                for lr in self.loops if self.remote is None else []:  # on Ray each run opens its tools where it runs
                    if lr.batch.toolbox is not None:
                        await stack.enter_async_context(lr.batch.toolbox)
                status = await self.drain()
        finally:
            await writer.aclose()
            for lr in self.loops:
                drained = status != "interrupted" and lr.drained and not lr.in_flight
                self.ledger.finish_batch(lr.batch.batch_id, BatchStatus.DONE if drained else
                                         BatchStatus.BUDGET if lr.refused else BatchStatus.INTERRUPTED)
            rows.set_fleet_status(self.ledger, self.fleet_id, status)
        return FleetResult(self.fleet_id, self.fleet.name, status, [lr.public() for lr in self.loops],
                           rows.spend(self.ledger, self._batch_ids()))

    def run(self) -> FleetResult:
        if self.options.engine is not None:  # a bad address fails before anything is recorded
            self.options.engine.connect(self.shipped_folder)
        try:
            self.prepare()
        except BaseException:
            if self.options.engine is not None:
                self.options.engine.close()
            raise
        return _run_until_interrupted(self._execute())


def run_fleet(fleet: Fleet, ledger: Ledger, options: FleetOptions | None = None) -> FleetResult:
    """Drain a fleet's loops under its shared limits (see the module doc); Ctrl-C raises KeyboardInterrupt."""
    return FleetRun(fleet, ledger, options).run()
