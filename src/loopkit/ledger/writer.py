"""One writer per batch, off the event loop, committing steps in groups.

The engine hands each finished step of a run to `Writer.commit`, which only queues it: a slow disk or
another process holding the write lock never freezes the batch, and Ctrl-C is answered at once. A
thread with its own connection writes what is queued in one transaction (a group commit) at most
`GROUP_SECONDS` after the oldest step arrived, or as soon as `GROUP_STEPS` are waiting. So a kill -9
loses at most the steps of that window; `resume` re-runs only those. Ctrl-C and the end of a batch
`close()` the writer, which writes everything handed over first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..bloom import Bloom
from .connect import connect_for_writes
from .rows import Step, write_steps
from .store import BUSY_TIMEOUT_SECONDS, immediate

if TYPE_CHECKING:
    from ..models import Completion
    from ..records import CallRecord, EventRecord, IterationRecord, RunInfo, RunResult
    from .store import Ledger

GROUP_SECONDS = 0.1  # the most a handed-over step waits before its transaction commits
# Commit early when this many are waiting. A bigger group writes fewer index pages twice (10,000 scripted cases:
# 512 → 1,536 steps, 3.5 % less CPU); each queued step holds ~4 KB (peak RSS at 100,000 cases 1.04 → 1.14× 1,000's).
GROUP_STEPS = 1536
BACKLOG_WAIT = 0.1  # the most one commit() waits for a writer that fell a full group behind


class Writer:
    """The engine's Recorder for a batch (and its cache's view of the ledger, pending steps included)."""

    def __init__(self, ledger: Ledger, *, group_seconds: float = GROUP_SECONDS, group_steps: int = GROUP_STEPS) -> None:
        self.ledger = ledger
        self.group_seconds = group_seconds
        self.group_steps = group_steps
        self._cond = threading.Condition()
        self._pending: list[Step] = []
        self._writing = 0  # steps in the transaction being written
        self._pending_keys: Counter[str] = Counter()  # cache keys of answers not yet committed
        self._handed: Bloom | None = None  # every cache key handed over, once `track_keys` asked for it
        self._closing = False
        self._urgent = False  # someone waits in flush(): commit now, not at the group's deadline
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="loopkit-ledger-writer", daemon=True)
        self._thread.start()

    # --- the loop side ---------------------------------------------------------------------------

    def commit(self, result: RunResult, iteration: IterationRecord | None, calls: list[CallRecord], events: list[EventRecord],
               *, start: RunInfo | None = None) -> None:
        """Queue a step; raises the writer's failure (a full disk, say) so the batch stops at its next step."""
        step = Step.of(result, iteration, calls, events, start)
        with self._cond:
            self._raise_failure()
            self._pending.append(step)
            for c in calls:
                if c.cache_key and c.error is None:
                    self._pending_keys[c.cache_key] += 1
                    if self._handed is not None:
                        self._handed.add(c.cache_key)
            if len(self._pending) in (1, self.group_steps):  # a group opens, or is full
                self._cond.notify_all()
            if len(self._pending) >= self.group_steps:
                # Backpressure: a writer slower than the runs (the GIL is shared) let the queue, and the peak
                # memory, grow with the batch. Wait for it, briefly: a ledger another process keeps locked
                # slows the batch to one step per BACKLOG_WAIT but never freezes it or Ctrl-C.
                self._cond.wait_for(lambda: self._failure is not None or len(self._pending) < self.group_steps,
                                    timeout=BACKLOG_WAIT)

    def track_keys(self) -> Bloom:
        """A filter that holds every cache key handed over from now on (cache.KnownKeys)."""
        if self._handed is None:
            self._handed = Bloom()
        return self._handed

    def lookup(self, key: str, *, replay_batch: str | None = None, variant_of: tuple[str, str] | None = None) -> Completion | None:
        """The ledger's cached answer; an answer still queued is written first, so a cache hit never
        depends on when the last group committed."""
        if replay_batch is None and self._pending_keys[key]:
            self.flush()
        return self.ledger.lookup(key, replay_batch=replay_batch, variant_of=variant_of)

    def flush(self) -> None:
        """Block until every step handed over so far is committed."""
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._failure is not None or not (self._pending or self._writing))
            self._raise_failure()

    def close(self) -> None:
        """Write everything handed over, then stop the thread. Safe to call twice."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            self._raise_failure()

    async def aclose(self) -> None:
        """`close()` without blocking the event loop, so a Ctrl-C can still stop waiting on a ledger another
        process keeps locked. Not through the loop's executor: `asyncio.run` would wait for it at exit."""
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def settle(failure: BaseException | None) -> None:
            if not closed.done():
                closed.set_exception(failure) if failure is not None else closed.set_result(None)

        def close_then_settle() -> None:
            failure: BaseException | None = None
            try:
                self.close()
            except BaseException as exc:  # noqa: BLE001 - raised in the loop by `await closed`
                failure = exc
            try:
                loop.call_soon_threadsafe(settle, failure)
            except RuntimeError:  # the loop is gone: whoever waited gave up
                pass

        threading.Thread(target=close_then_settle, name="loopkit-ledger-close", daemon=True).start()
        await closed

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the thread side -------------------------------------------------------------------------

    def _next_group(self) -> list[Step]:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closing)
            deadline = time.monotonic() + self.group_seconds
            while self._pending and not (self._closing or self._urgent) and len(self._pending) < self.group_steps:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    break
            group, self._pending = self._pending, []
            self._writing, self._urgent = len(group), False
            return group

    def _run(self) -> None:
        conn = connect_for_writes(self.ledger.path, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            while True:
                group = self._next_group()
                if not group:
                    return
                failure = None
                try:
                    with immediate(conn, self.ledger.path):
                        write_steps(conn, group)
                except BaseException as exc:  # noqa: BLE001 - handed to the loop side, which raises it
                    failure = exc
                with self._cond:
                    self._writing = 0
                    self._failure = self._failure or failure
                    for call in (c for step in group for c in step.calls if c.cache_key and c.error is None):
                        self._pending_keys[call.cache_key] -= 1
                        if not self._pending_keys[call.cache_key]:
                            del self._pending_keys[call.cache_key]
                    self._cond.notify_all()
                    if failure is not None:
                        return
        finally:
            conn.close()
