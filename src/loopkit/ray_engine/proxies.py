"""What a worker uses in place of the driver's objects: the batch pool, the adaptive limits, the cache and
the recorder, each with the interface the engine already knows, each backed by a driver-side actor
(actors.py) or by the stream back to the driver. Imports no Ray: handles are passed in."""

from __future__ import annotations

import asyncio
import pickle
from typing import TYPE_CHECKING, Any

from .scheduler import Shipped

if TYPE_CHECKING:
    from ..models import Completion
    from ..records import CallRecord, EventRecord, IterationRecord, RunInfo, RunResult


class PoolProxy:
    """`budget.BatchPool` as `CaseBudget` uses it, over the budget actor: every reservation and settlement
    goes to the one pool at the driver, so calls in flight on every node count against the batch cap.

    `owner` (the run id) lets the driver free a lost worker's reservations. Without a batch cap and
    without per-case money or token caps nothing can be refused or overrun, so no round trip is made."""

    def __init__(self, actor: Any, owner: str, *, cap: float | None, local: bool) -> None:
        self.actor = actor
        self.owner = owner
        self.cap = cap
        self.local = local
        self.spent = 0.0
        self._remaining = cap
        self._overrun: dict[str, Any] | None = None

    @property
    def remaining(self) -> float | None:
        return self._remaining

    @property
    def overrun(self) -> dict[str, Any] | None:
        return self._overrun

    @overrun.setter
    def overrun(self, value: dict[str, Any] | None) -> None:
        if value is not None and self._overrun is None and not self.local:
            self.actor.set_overrun.remote(self.owner, value)  # the whole batch stops admitting calls
        self._overrun = value

    async def reserve(self, amount: float, *, timeout: float | None = None) -> bool:
        if self.local:
            return self._overrun is None
        admitted, remaining, overrun = await self.actor.reserve.remote(self.owner, amount, timeout)
        self._remaining = remaining
        self._overrun = self._overrun or overrun
        if admitted is None:
            raise TimeoutError
        return admitted

    def settle(self, reserved: float, actual: float) -> None:
        """Fire and forget: settle runs in cleanup paths (a cancelled call) that cannot await."""
        self.spent += actual
        if not self.local:
            self.actor.settle.remote(self.owner, reserved, actual)


class SharedLimit:
    """`models.AdaptiveLimit` over the limiter actor: one adaptive limit per model for the whole cluster, so
    fifty workers do not each discover the provider's 429s."""

    def __init__(self, actor: Any, key: str, owner: str) -> None:
        self.actor = actor
        self.key = key
        self.owner = owner  # the worker: its slots are freed if it dies holding them
        self._giving_back: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SharedLimit:
        ref = self.actor.acquire.remote(self.key, self.owner)
        try:
            await ref
        except asyncio.CancelledError:
            # Cut off while waiting (the case's deadline, Ctrl-C): the actor still grants the slot once one frees,
            # to no one. Give it back then, or every cut-off wait would shrink the cluster's limit for good.
            task = asyncio.ensure_future(self._give_back(ref))
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)
            raise
        return self

    async def _give_back(self, ref: Any) -> None:
        try:
            await ref
        except Exception:  # noqa: BLE001 - never granted (the actor is gone): nothing to give back
            return
        self.actor.release.remote(self.key, self.owner)

    async def __aexit__(self, *exc: object) -> None:
        self.actor.release.remote(self.key, self.owner)

    def rate_limited(self) -> None:
        self.actor.rate_limited.remote(self.key)

    def succeeded(self) -> None:
        self.actor.succeeded.remote(self.key)


class ActorLedger:
    """The ledger's cache lookups (`Ledger.lookup`) for a worker on another machine than the ledger, asked of
    the reader actor on the driver's node. `LedgerCache` wraps it as it wraps a ledger. The lookup blocks the
    worker's loop for a round trip (the engine's cache is synchronous): about a millisecond before a call
    that takes far longer; workers on the driver's own machine read the ledger file directly instead."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def lookup(self, key: str, *, replay_batch: str | None = None, variant_of: tuple[str, str] | None = None) -> Completion | None:
        import ray

        return ray.get(self.actor.lookup.remote(key, replay_batch, variant_of))


class StoreOnlyCache:
    """The cache where the ledger cannot be read (Ray Client): calls are stored for later runs, none is answered."""

    stores = True
    charges_budget = False

    def lookup(self, key: str) -> Completion | None:
        return None


class ShippingRecorder:
    """The engine's Recorder on a worker: each step is frozen at once (the engine keeps changing the run's
    state) and queued for the stream back to the driver, the ledger's only writer."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | object] = asyncio.Queue()

    def commit(self, result: RunResult, iteration: IterationRecord | None, calls: list[CallRecord], events: list[EventRecord],
               *, start: RunInfo | None = None) -> None:
        self.queue.put_nowait(pickle.dumps(Shipped(result, iteration, list(calls), list(events), start)))
