"""The Ray engine's actors, as plain classes (driver.py makes them remote, so this module imports no Ray):

- `CaseWorker`: an async actor on any node that runs cases through the same `Loop` as the asyncio engine,
  many at once, and streams each run's steps back to the driver;
- `BudgetActor`: the batch's one `BatchPool` at the driver, asked before and after every model call;
- `LimiterActor`: one adaptive concurrency limit per model for the whole cluster;
- `LedgerReader`: the cache's lookups, on the driver's machine where the ledger file is.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import BatchPool, CaseBudget
from ..cache import LedgerCache, NoCache, ReplayMiss
from ..engine import BatchBudgetRefused, run_case
from ..inputs import Case
from ..fleet.money import NamedPool, PoolChain
from ..fleet.providers import provider_of
from ..models import AdaptiveLimit, ModelClient, ModelPool, RetryPolicy
from ..records import RunState
from ..spec import LoopSpec, ModelRef
from .proxies import ActorLedger, PoolProxy, SharedLimit, ShippingRecorder, StoreOnlyCache
from .scheduler import REFUSED

_DONE = object()


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of a batch is built from (sent once, at its creation)."""

    specs: bytes  # {key: LoopSpec}, pickled, `--model` applied: {None: spec} for a run, {"A":, "B":} for an A/B test, a fleet's by loop
    batch_id: str
    cap: float | None  # the batch cap (the pool itself lives in the budget actor)
    concurrency: int  # per model, across the cluster (the adaptive limits' ceiling)
    max_retries: int = 6
    no_cache: bool = False
    replay: str | None = None
    shipped: dict[str | None, str] = field(default_factory=dict)  # key → its spec's path in the shipped working_dir
    ledger_path: str | None = None  # the ledger, readable by workers on the driver's node
    driver_node: str | None = None
    batch_ids: dict[str | None, str] = field(default_factory=dict)  # key → its own batch (a fleet's loops), else batch_id
    per_provider: bool = False  # one adaptive limit per provider (a fleet), not per model


class SharedModelPool(ModelPool):
    """A worker's model clients: as `ModelPool`, but each real model's adaptive limit is the cluster's (one per
    provider for a fleet, as fleet.providers shares them on one machine)."""

    def __init__(self, limiter: Any, owner: str, *, retry: RetryPolicy, concurrency: int, per_provider: bool = False) -> None:
        super().__init__(retry=retry, concurrency=concurrency)
        self.limiter = limiter
        self.owner = owner
        self.per_provider = per_provider

    def limit_for(self, ref: ModelRef, key: str) -> Any:
        if self.limiter is None:
            return super().limit_for(ref, key)
        return SharedLimit(self.limiter, provider_of(ref) if self.per_provider else key, self.owner)


class CaseWorker:
    """Runs cases on one node; `run_case` is an async generator: the run's steps, in order, as they commit."""

    def __init__(self, config: WorkerConfig, budget: Any, limiter: Any, reader: Any) -> None:
        self.config = config
        specs: dict[str | None, LoopSpec] = pickle.loads(config.specs)
        for variant, name in config.shipped.items():  # the spec's directory arrived as this worker's working_dir
            specs[variant] = specs[variant].model_copy(update={"path": Path.cwd() / name})
        self.specs = specs
        self.id = uuid.uuid4().hex
        self.budget = budget
        self.local_pool = config.cap is None and all(s.budget.usd is None and s.budget.tokens is None for s in specs.values())
        self.models = SharedModelPool(limiter, self.id, retry=RetryPolicy(attempts=max(1, config.max_retries)),
                                      concurrency=config.concurrency, per_provider=config.per_provider)
        self.source = self._source(reader) if config.replay or not config.no_cache else None
        self.caches: dict[tuple[str, str | None], Any] = {}
        self.loops: set[asyncio.Task[Any]] = set()

    def _source(self, reader: Any) -> Any:
        """Where cache lookups read the ledger: its file on the driver's machine, else the reader actor."""
        c = self.config
        if c.ledger_path and Path(c.ledger_path).exists() and _node_id() == c.driver_node:
            from ..ledger import Ledger

            return Ledger(c.ledger_path, readonly=True)  # same machine: read the file, no round trip
        return ActorLedger(reader) if reader is not None else None

    def _cache(self, batch_id: str, variant: str | None) -> Any:
        if (batch_id, variant) not in self.caches:
            self.caches[batch_id, variant] = self._new_cache(batch_id, variant)
        return self.caches[batch_id, variant]

    def _new_cache(self, batch_id: str, variant: str | None) -> Any:
        c = self.config
        if c.no_cache and not c.replay:
            return NoCache()
        if self.source is None:
            return StoreOnlyCache()
        # an A/B variant never reuses the other variant's calls of its own batch (as `loopkit ab` locally)
        variant_of = (batch_id, variant) if variant is not None else None
        return LedgerCache(self.source, replay_batch=c.replay, variant_of=variant_of)  # type: ignore[arg-type]

    def _clients(self, ref: ModelRef) -> ModelClient:
        if self.config.replay:
            return ReplayMiss(ref, self.config.replay)  # type: ignore[return-value]
        return self.models.client(ref)

    def ready(self) -> dict[str, Any]:
        """Where this worker runs, once its spec loaded and its models' clients (and keys) are ready."""
        for spec in self.specs.values():
            for _, model in spec.models():
                self._clients(model)
        return {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "cwd": os.getcwd()}

    async def run_case(self, case: Case, repeat: int, run_id: str, state: RunState | None,
                       variant: str | None = None, key: str | None = None) -> AsyncIterator[list[bytes] | str]:
        """Run one case of spec `key` (`CaseTask.spec_key`) as `variant` from `state` (None: from its start); yield
        its steps (pickled `Shipped`) as they commit, several at once when they queue up; REFUSED when the batch
        budget refused its first call."""
        spec = self.specs[key]
        batch_id = self.config.batch_ids.get(key, self.config.batch_id)
        recorder = ShippingRecorder()
        budget = CaseBudget(spec.budget, PoolProxy(self.budget, run_id, cap=self.config.cap, local=self.local_pool))  # type: ignore[arg-type]

        async def loop() -> None:
            try:
                await run_case(spec, case, clients=self._clients, recorder=recorder, budget=budget, cache=self._cache(batch_id, variant),
                               batch_id=batch_id, repeat=repeat, variant=variant, run_id=run_id, state=state)
                recorder.queue.put_nowait(_DONE)
            except BatchBudgetRefused:
                recorder.queue.put_nowait(REFUSED)
            except BaseException as exc:  # noqa: BLE001 - handed to the stream, raised there (after the steps before it)
                recorder.queue.put_nowait(exc)

        task = asyncio.create_task(loop())
        self.loops.add(task)
        task.add_done_callback(self.loops.discard)
        try:
            while True:
                items = [await recorder.queue.get()]
                while not recorder.queue.empty():
                    items.append(recorder.queue.get_nowait())
                steps = [i for i in items if isinstance(i, bytes)]
                if steps:
                    yield steps
                end = items[-1]
                if end is _DONE:
                    return
                if end == REFUSED:
                    yield REFUSED
                    return
                if isinstance(end, asyncio.CancelledError):  # interrupted: the run's last step was yielded
                    return
                if isinstance(end, BaseException):
                    raise end
        finally:
            if not task.done():
                task.cancel()

    def interrupt(self) -> int:
        """Stop every case: each records its run `interrupted` (paid calls included) and its stream ends."""
        for task in list(self.loops):
            task.cancel()
        return len(self.loops)


class BudgetActor:
    """The batch's pool (budget.BatchPool, unchanged) behind an actor. It remembers which run holds which
    reservation, so a lost worker's are charged and freed (`release`) rather than held forever."""

    def __init__(self, cap: float | None, spent: float) -> None:
        self.pool = BatchPool(cap=cap, spent=spent)
        self.held: dict[str, list[float]] = {}

    def _pool(self, owner: str) -> BatchPool | PoolChain:
        """The pool a run's calls reserve from: the batch's, for every run."""
        return self.pool

    async def reserve(self, owner: str, amount: float, timeout: float | None) -> tuple[bool | None, float | None, Any]:
        """(admitted, remaining, overrun); admitted None when `timeout` passed waiting for room."""
        pool = self._pool(owner)
        try:
            admitted = await pool.reserve(amount, timeout=timeout)
        except TimeoutError:
            return None, pool.remaining, pool.overrun
        if admitted:
            self.held.setdefault(owner, []).append(amount)
        return admitted, pool.remaining, pool.overrun

    def settle(self, owner: str, reserved: float, actual: float) -> None:
        held = self.held.get(owner)
        if held is None or reserved not in held:
            return  # already charged by `release` (its worker was given up for lost)
        held.remove(reserved)
        if not held:
            del self.held[owner]
        self._pool(owner).settle(reserved, actual)

    def set_overrun(self, owner: str, overrun: dict[str, Any]) -> None:
        pool = self._pool(owner)
        pool.overrun = pool.overrun or overrun

    def release(self, owner: str) -> float:
        """A run's worker is gone: its calls in flight may still be billed, so each is charged its worst case."""
        charged = 0.0
        for amount in self.held.pop(owner, []):
            self._pool(owner).settle(amount, amount)
            charged += amount
        return charged

    def totals(self) -> dict[str, Any]:
        return {"cap": self.pool.cap, "spent": self.pool.spent, "reserved": self.pool.reserved, "held": len(self.held)}


class FleetBudgetActor(BudgetActor):
    """A fleet's pools (fleet.money's, unchanged) behind an actor: each run reserves from the chain of its loop's
    shares, the day and the total, built when the driver opens the run; a new day replaces the day's pools
    for runs opened after it (a run in flight at midnight keeps reserving against the day it started)."""

    def __init__(self, pools: dict[str, tuple[float | None, float]]) -> None:
        super().__init__(None, 0.0)
        self.pools: dict[str, BatchPool] = {}
        self.chains: dict[str, PoolChain] = {}
        self.closed: set[str] = set()  # runs ended whose last settle (sent by their worker, not the driver) is still to come
        self.reset(pools)

    def reset(self, pools: dict[str, tuple[float | None, float]]) -> None:
        """Pools by name, as (cap, spent): new ones, or the day's anew."""
        self.pools.update({name: BatchPool(cap=cap, spent=spent) for name, (cap, spent) in pools.items()})

    def open(self, owner: str, chain: list[tuple[str, str]]) -> None:
        """The run's chain: (the name the runner knows it by, the pool's name here), first asked first."""
        self.chains[owner] = PoolChain([NamedPool(label, self.pools[name]) for label, name in chain])

    def close(self, owner: str) -> str | None:
        """The run ended: which pool of its chain refused it, if one did. Its chain goes once nothing of it is held."""
        chain = self.chains.get(owner)
        self.closed.add(owner)
        self._forget(owner)
        return None if chain is None else chain.refused_by

    def settle(self, owner: str, reserved: float, actual: float) -> None:
        super().settle(owner, reserved, actual)
        self._forget(owner)

    def release(self, owner: str) -> float:
        charged = super().release(owner)
        self._forget(owner)
        return charged

    def _forget(self, owner: str) -> None:
        if owner in self.closed and owner not in self.held:
            self.closed.discard(owner)
            self.chains.pop(owner, None)

    def _pool(self, owner: str) -> PoolChain:
        return self.chains.get(owner) or PoolChain([])  # an overrun reported after its run was forgotten has no pool left to stop


class LimiterActor:
    """One `AdaptiveLimit` per model (or provider) for the cluster; slots a dead worker held are freed by `forget`."""

    def __init__(self, concurrency: int, ceilings: dict[str, int] | None = None) -> None:
        self.concurrency = concurrency
        self.ceilings = ceilings or {}  # a key's own ceiling (a fleet's providers), else `concurrency`
        self.limits: dict[str, AdaptiveLimit] = {}
        self.holding: dict[str, dict[str, int]] = {}  # worker → model → slots

    def _limit(self, key: str) -> AdaptiveLimit:
        if key not in self.limits:
            self.limits[key] = AdaptiveLimit(self.ceilings.get(key, self.concurrency))
        return self.limits[key]

    async def acquire(self, key: str, owner: str) -> None:
        await self._limit(key).__aenter__()
        slots = self.holding.setdefault(owner, {})
        slots[key] = slots.get(key, 0) + 1

    async def release(self, key: str, owner: str) -> None:
        slots = self.holding.get(owner, {})
        if slots.get(key, 0) <= 0:
            return
        slots[key] -= 1
        await self._limit(key).__aexit__()

    def rate_limited(self, key: str) -> None:
        self._limit(key).rate_limited()

    def succeeded(self, key: str) -> None:
        self._limit(key).succeeded()

    async def forget(self, owner: str) -> None:
        for key, n in self.holding.pop(owner, {}).items():
            for _ in range(n):
                await self._limit(key).__aexit__()

    def limit(self, key: str) -> float:
        return self._limit(key).limit


class LedgerReader:
    """Cache lookups against the ledger file, for workers on other machines (pinned to the driver's node)."""

    def __init__(self, path: str) -> None:
        from ..ledger import Ledger

        self.ledger = Ledger(path, readonly=True)

    def lookup(self, key: str, replay_batch: str | None, variant_of: tuple[str, str] | None) -> Any:
        return self.ledger.lookup(key, replay_batch=replay_batch, variant_of=variant_of)


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (a unit test): no node
        return None
