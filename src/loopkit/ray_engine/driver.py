"""The Ray engine's driver: connects to Ray, starts the batch's actors, and drives the scheduler over them.

The driver is the ledger's only writer: workers stream each step back and the driver commits it through
the batch's one `Writer`, as the asyncio engine does. Everything else of a batch (its inputs, budgets,
`resume`, the batch row, the exit code) is `batch.Batch`'s, unchanged: only where cases run differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pickle
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LoopkitError, UsageError
from ..records import RunInfo, RunState, new_id
from ..status import RunStatus
from . import require_ray
from .actors import BudgetActor, CaseWorker, FleetBudgetActor, LedgerReader, LimiterActor, WorkerConfig
from .scheduler import DRAIN_SECONDS, REFUSED, CaseTask, Scheduler, Shipped

if TYPE_CHECKING:
    from ..batch import Batch
    from ..inputs import Case
    from ..spec import LoopSpec

STARTUP_SECONDS = 300.0  # for the workers to be placed, receive the spec's directory and import loopkit
# Never shipped with the spec's directory: the ledger, caches and environments (Ray also honours .gitignore).
SHIP_EXCLUDES = [".loopkit/", ".git/", ".venv/", "venv/", "__pycache__/", "node_modules/", "*.db-wal", "*.db-shm"]


class RayError(LoopkitError):
    """Ray could not be reached, or its workers could not start; one line, exit 2."""


@dataclass(frozen=True)
class Job:
    """What a batch's workers are built from: a `run` batch's one spec (variant None), or an A/B test's two
    ("A", "B"), and the batch's cap, what it already spent, and its options.
    A fleet's job has a spec per loop, each with its own batch (`batch_ids`), its pools by name (`pools`: the
    budget actor is then a `FleetBudgetActor`), one limit per provider (`ceilings`), and its own folder."""

    specs: dict[str | None, LoopSpec]
    batch_id: str
    ledger_path: Path
    cap: float | None
    spent: float
    concurrency: int
    max_retries: int = 6
    no_cache: bool = False
    replay: str | None = None
    batch_ids: dict[str | None, str] = field(default_factory=dict)
    pools: dict[str, tuple[float | None, float]] | None = None
    ceilings: dict[str, int] | None = None
    folder: Path | None = None  # shipped as the workers' working_dir: default, the one holding every spec

    @property
    def shipped_folder(self) -> Path | None:
        return self.folder or specs_folder(self.specs.values())

    @classmethod
    def of_batch(cls, batch: Batch) -> Job:
        o = batch.options
        return cls({None: batch.spec}, batch.batch_id, batch.ledger.path, batch.pool.cap, batch.pool.spent, o.concurrency,
                   o.max_retries, o.no_cache, o.replay)


@dataclass
class _Worker:
    actor: Any
    id: str = ""
    load: int = 0
    alive: bool = True


@dataclass
class RayExecutor:
    """The scheduler's executor on Ray: a pool of `CaseWorker` actors, each case sent to the least loaded one;
    a worker found dead is replaced, and the cases it held go elsewhere."""

    ray: Any
    make_worker: Any  # () -> actor handle
    budget: Any
    limiter: Any
    workers: list[_Worker] = field(default_factory=list)
    spares: int = 0  # replacements still allowed
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _spawning: set[asyncio.Task[None]] = field(default_factory=set)

    async def add(self, count: int) -> None:
        """Start `count` workers and wait until each is ready (spec loaded, clients and keys checked)."""
        fresh = [_Worker(self.make_worker()) for _ in range(count)]
        try:
            found = await asyncio.wait_for(asyncio.gather(*(w.actor.ready.remote() for w in fresh)), STARTUP_SECONDS)
        except TimeoutError:
            raise RayError(f"Ray workers were not ready within {STARTUP_SECONDS:g}s (is the cluster out of CPUs?)") from None
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, LoopkitError):
                raise cause from None
            raise RayError(f"a Ray worker could not start: {_first_line(cause)}") from None
        except self.ray.exceptions.RayActorError as exc:
            raise RayError(f"a Ray worker could not start (is loopkit[ray] installed on every node?): {_first_line(exc)}") from None
        for worker, info in zip(fresh, found):
            worker.id = info["id"]
        self.workers += fresh
        self._changed.set()

    async def _pick(self) -> _Worker:
        while True:
            alive = [w for w in self.workers if w.alive]
            if alive:
                return min(alive, key=lambda w: w.load)
            if not self._spawning:
                raise RayError("every Ray worker was lost and no replacement could start")
            self._changed.clear()
            await self._changed.wait()

    def _lose(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        worker.alive = False
        self.limiter.forget.remote(worker.id)  # its model slots
        if self.spares > 0:
            self.spares -= 1
            task = asyncio.create_task(self._replace())
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)

    async def _replace(self) -> None:
        try:
            await self.add(1)
        except Exception:  # noqa: BLE001 - the others carry on; with none left, _pick says so
            pass
        finally:
            self._changed.set()

    async def run(self, task: CaseTask) -> AsyncIterator[list[Shipped] | str]:
        worker = await self._pick()
        worker.load += 1
        try:
            stream = worker.actor.run_case.remote(task.case, task.repeat, task.run_id, task.state, task.variant, task.spec_key)
            async for ref in stream:
                item = await ref
                yield item if item == REFUSED else [pickle.loads(b) for b in item]
        except self.ray.exceptions.RayTaskError as exc:  # the case itself raised: the original, not Ray's wrapper
            raise (exc.cause if isinstance(exc.cause, BaseException) else exc) from None
        except Exception as exc:
            if self.lost(exc):
                self._lose(worker)
            raise
        finally:
            worker.load -= 1

    def lost(self, exc: BaseException) -> bool:
        e = self.ray.exceptions
        return isinstance(exc, (e.RayActorError, e.WorkerCrashedError, e.ObjectLostError, e.NodeDiedError))

    async def release(self, task: CaseTask) -> None:
        await self.budget.release.remote(task.run_id)

    async def interrupt(self) -> None:
        calls = [w.actor.interrupt.remote() for w in self.workers if w.alive]
        await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), DRAIN_SECONDS)

    def stop(self) -> None:
        for task in self._spawning:
            task.cancel()
        for handle in [w.actor for w in self.workers] + [self.budget, self.limiter]:
            try:
                self.ray.kill(handle)
            except Exception:  # noqa: BLE001 - already gone
                pass


def driver_side(node_id: str | None) -> dict[str, Any]:
    """Actor options for the batch's budget, limiter and ledger reader: no CPU, and on the driver's node (not
    soft), so losing a worker node never loses the batch's pool or limits; any node under Ray Client."""
    if node_id is None:
        return {"num_cpus": 0}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}


def _info(job: Job, task: CaseTask) -> RunInfo:
    """The run's fixed facts, for a run the driver writes itself (a case whose worker kept dying)."""
    spec = job.specs[task.spec_key]
    return RunInfo(task.run_id, job.batch_ids.get(task.spec_key, job.batch_id), spec.hash, spec.name, task.case.id, task.case.data, task.repeat,
                   task.variant)


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at HOST:PORT: Ray itself retries a dead address for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # `auto`, or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise RayError(f"--address {address}: could not join Ray: nothing answers there ({exc.strerror or exc})") from None


def common_folder(folders: Iterable[Path]) -> Path | None:
    """The folder to ship for specs in `folders`: the deepest holding them all, so their relative paths hold on
    the workers; when that is the filesystem root or holds the home folder (far too much to ship), the first
    one alone, and specs outside it are read by absolute path."""
    resolved = [folder.resolve() for folder in folders]
    if not resolved:
        return None
    common = Path(os.path.commonpath(resolved))
    too_wide = common == Path(common.anchor) or Path.home().resolve().is_relative_to(common)
    return resolved[0] if too_wide else common


def specs_folder(specs: Iterable[LoopSpec]) -> Path | None:
    """The folder `--address` ships for these specs (see `common_folder`)."""
    return common_folder(spec.base_dir for spec in specs if spec.path is not None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


class RayEngine:
    """Runs a `Batch`'s cases on Ray. Without an address a local Ray is started with the machine's CPUs (and
    stopped at the end); with one (`auto`, `HOST:PORT`, `ray://HOST:PORT`) the cluster is joined and the
    spec's directory is shipped to the workers as their working_dir."""

    def __init__(self, address: str | None = None, *, workers: int | None = None, ship: bool | None = None) -> None:
        self.address = address
        self.workers = workers
        self.ship = address is not None if ship is None else ship
        self.client_mode = bool(address and address.startswith("ray://"))
        self.shipped_dir: Path | None = None  # the spec's directory, when it is the workers' working_dir
        self._started = False

    def connect(self, spec_dir: Path | None = None) -> None:
        """Join (or start) Ray now, so a bad address fails before the batch is recorded. With shipping on, the
        spec's directory becomes the job's working_dir (Ray accepts a local one only here, for the whole job);
        a Ray already initialised by the caller is used as it is, paths unshipped."""
        ray = require_ray()
        if ray.is_initialized():
            return
        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        if self.ship and spec_dir is not None:
            quiet["runtime_env"] = {"working_dir": str(spec_dir.resolve()), "excludes": SHIP_EXCLUDES}
        try:
            if self.address is None:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
                self._started = True
            else:
                _check_reachable(self.address)
                ray.init(address=self.address, **quiet)
            if "runtime_env" in quiet:
                self.shipped_dir = spec_dir.resolve()  # type: ignore[union-attr]
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayError(f"--address {self.address}: could not join Ray: {_first_line(exc)}" if self.address
                           else f"could not start a local Ray: {_first_line(exc)}") from None

    def connect_for(self, specs: Iterable[LoopSpec]) -> None:
        """`connect` before anything is recorded (a bad address is exit 2 with the ledger untouched), shipping
        the folder that holds `specs`."""
        self.connect(specs_folder(specs))

    def close(self) -> None:
        if self._started:
            require_ray().shutdown()
            self._started = False

    def _config(self, job: Job) -> WorkerConfig:
        specs, shipped = {}, {}
        for key, spec in job.specs.items():
            if spec.path is not None:
                if self.shipped_dir is not None and spec.path.resolve().is_relative_to(self.shipped_dir):
                    shipped[key] = spec.path.resolve().relative_to(self.shipped_dir).as_posix()
                else:
                    spec = spec.model_copy(update={"path": spec.path.resolve()})  # the workers' cwd may differ
            specs[key] = spec
        if job.replay and self.client_mode:
            raise UsageError("--replay reads the ledger, which Ray Client workers cannot reach: run the driver on the cluster")
        ray = require_ray()
        return WorkerConfig(pickle.dumps(specs), job.batch_id, job.cap, job.concurrency, job.max_retries, job.no_cache, job.replay,
                            shipped, None if self.client_mode else str(job.ledger_path.resolve()),
                            None if self.client_mode else ray.get_runtime_context().get_node_id(), job.batch_ids,
                            per_provider=job.ceilings is not None)

    async def _executor(self, job: Job) -> RayExecutor:
        ray = require_ray()
        config = self._config(job)
        count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        here = driver_side(config.driver_node)
        budget = (ray.remote(BudgetActor).options(**here).remote(job.cap, job.spent) if job.pools is None else
                  ray.remote(FleetBudgetActor).options(**here).remote(job.pools))
        limiter = ray.remote(LimiterActor).options(**here).remote(job.concurrency, job.ceilings)
        reader = None
        if not self.client_mode and len([n for n in ray.nodes() if n.get("Alive")]) > 1 and (config.replay or not config.no_cache):
            reader = ray.remote(LedgerReader).options(**here).remote(config.ledger_path)
        worker_class = ray.remote(CaseWorker).options(num_cpus=1)
        executor = RayExecutor(ray, lambda: worker_class.remote(config, budget, limiter, reader), budget, limiter, spares=count * 2)
        try:
            await executor.add(count)
        except BaseException:
            executor.stop()
            raise
        return executor

    async def run_tasks(self, job: Job, tasks: Iterable[CaseTask], *, commit: Callable[[Shipped], None],
                        on_refused: Callable[[CaseTask], None]) -> None:
        """Run every task of `tasks` on the workers, at most `job.concurrency` at once, drawing the next only
        when one ends; `commit` gets every step once, in order (the caller writes it: the driver is the
        ledger's only writer), `on_refused` each case the batch budget refused. `Batch` and the A/B runner
        both drive their cases through here."""
        async with self.session(job, commit=commit, on_refused=on_refused) as scheduler:
            self._scheduler = scheduler
            await scheduler.drive(tasks)

    @contextlib.asynccontextmanager
    async def session(self, job: Job, *, commit: Callable[[Shipped], None],
                      on_refused: Callable[[CaseTask], None] | None = None) -> AsyncIterator[Scheduler]:
        """Ray joined (or started), the job's actors up, and a scheduler over them; all stopped at the end.
        `run_tasks` drives it through a window; a fleet admits each case itself (`Scheduler.run`)."""
        self.connect(job.shipped_folder)
        try:
            executor = await self._executor(job)
            try:
                yield Scheduler(executor, window=job.concurrency, commit=commit, on_refused=on_refused, info=lambda t: _info(job, t))
            finally:
                executor.stop()
        finally:
            self.close()

    async def drive(self, batch: Batch, work: Iterator[tuple[Case, int, str | None, RunState | None]]) -> None:
        """Run every case of `work` on the workers; called by `Batch` in place of its in-process drive."""

        def refused(task: CaseTask) -> None:
            batch.refused += 1

        await self.run_tasks(Job.of_batch(batch), (CaseTask(case, repeat, run_id or new_id(), state) for case, repeat, run_id, state in work),
                             commit=lambda s: self._commit(batch, s), on_refused=refused)

    def _commit(self, batch: Batch, shipped: Shipped) -> None:
        """A step from a worker, written through the batch's writer (as the asyncio engine's steps are)."""
        writer = batch.writer or batch.ledger
        writer.commit(shipped.result, shipped.iteration, shipped.calls, shipped.events, start=shipped.start)
        p = batch.progress
        p.spent += sum(c.cost_usd for c in shipped.calls)
        p.in_flight = len(self._scheduler.running)
        result = shipped.result
        if result.status != RunStatus.RUNNING:
            p.done += 1
            p.passed += int(result.success)
            p.statuses[result.status] = p.statuses.get(result.status, 0) + 1
            batch.on_progress(p)


__all__ = ["Job", "RayEngine", "RayError", "RayExecutor", "SHIP_EXCLUDES", "STARTUP_SECONDS", "driver_side"]
