"""One loop of a running fleet: its batch (reused across fleet runs), its queue of cases, its share of the money.

The queue streams the loop's inputs and skips, a chunk of cases at a time, every case whose run in the
loop's batch is finished, so a rerun (or one after kill -9) runs each case exactly once, in the memory of
one chunk. A run the shared caps stopped midway is continued, not counted finished: the money, not the
case, ran out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..batch import Batch
from ..budget import BatchPool
from ..inputs import Case
from ..ledger.fleet import LOOKUP_CHUNK, runs_of_cases
from ..records import RunState
from ..spec import LoopSpec
from ..status import FINISHED, StopReason
from .load import LoopPlan
from .reviewers import ReviewGate
from .yielding import YieldWatch

DEADLINE_DAYS = 7  # a loop with a deadline moves up one place per day once its deadline is this near

Work = tuple[Case, int, "str | None", "RunState | None"]


@dataclass
class LoopRun:
    plan: LoopPlan
    batch: Batch
    provider: str
    gate: ReviewGate
    watch: YieldWatch
    no_people: LoopSpec | None  # the spec with hand-offs to a person taken out (None: a person is its only escalation)
    share_total: BatchPool  # the loop's share of the fleet's total (and its spec's own total_usd)
    share_day: BatchPool  # its share of the day
    paused: str | None = None
    out_of_money: str | None = None  # "share", "day share": the loop's own cap refused a case
    refused: int = 0
    launched: int = 0
    finished: int = 0
    skipped: int = 0
    errors: int = 0
    in_flight: int = 0
    exhausted: bool = False
    _queue: Iterator[Work] | None = field(default=None, repr=False)
    _next: Work | None = field(default=None, repr=False)
    _back: list[Work] = field(default_factory=list, repr=False)  # cases a cap refused, to run first when money is back

    @property
    def name(self) -> str:
        return self.plan.name

    def rank(self, now: datetime) -> tuple[float, int, int]:
        """Sort key: priority, moved up as the deadline nears (a place per day within DEADLINE_DAYS)."""
        boost = 0
        if self.plan.deadline is not None:
            days_left = (self.plan.deadline - now).total_seconds() / 86400
            boost = min(DEADLINE_DAYS, max(0, math.ceil(DEADLINE_DAYS - days_left)))
        return self.plan.priority - boost, self.plan.priority, self.plan.index

    @property
    def runnable(self) -> bool:
        return not (self.paused or self.out_of_money or (self.exhausted and not self._back))

    def peek(self) -> Work | None:
        if self._next is None and self._back:
            self._next = self._back.pop()
        if self._next is None and not self.exhausted:
            if self._queue is None:
                self._queue = self._cases()
            self._next = next(self._queue, None)
            self.exhausted = self._next is None
        return self._next

    def requeue(self, work: Work) -> None:
        """A case the budget refused before its first call (nothing of it was written) waits for the money."""
        self._back.append(work)
        self.launched -= 1

    def take(self) -> Work:
        work = self.peek()
        assert work is not None
        self._next = None
        self.launched += 1
        return work

    def _cases(self) -> Iterator[Work]:
        ledger, batch_id = self.batch.ledger, self.batch.batch_id
        cases = iter(self.batch.inputs)
        while chunk := list(itertools.islice(cases, LOOKUP_CHUNK)):
            runs = runs_of_cases(ledger, batch_id, [c.id for c in chunk])
            for case in chunk:
                row = runs.get((case.id, 0))
                if row is None:
                    yield case, 0, None, None
                elif row["status"] in FINISHED and row["stop_reason"] != StopReason.BUDGET_TOTAL_USD:
                    self.skipped += 1
                else:
                    yield case, 0, row["id"], ledger.continuation(row["id"])

    def public(self) -> dict[str, Any]:
        return {"loop": self.name, "batch_id": self.batch.batch_id, "priority": self.plan.priority, "launched": self.launched,
                "finished": self.finished, "skipped": self.skipped, "errors": self.errors, "not_run_budget": len(self._back),
                "paused": self.paused, "out_of_money": self.out_of_money, "drained": self.drained}

    @property
    def drained(self) -> bool:
        return self.exhausted and not self._back and self._next is None
