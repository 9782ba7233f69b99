"""The fleet's caps, built from budget.py's `BatchPool`: no second money logic.

A case of a loop reserves each call's worst case from a chain of pools: the loop's share (of the
total and of the day), then the fleet's day, then the fleet's total. Each pool admits, waits or refuses
exactly as a batch's does; the chain claims all or nothing and remembers which pool refused, so the
runner knows whether the loop, the day or the fleet is out of money.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..budget import BatchPool


@dataclass
class NamedPool:
    name: str  # "loop total", "loop day", "day", "total"
    pool: BatchPool


@dataclass
class PoolChain:
    """Quacks like a BatchPool for `CaseBudget`: reserve/settle against every pool of the chain."""

    pools: list[NamedPool]
    refused_by: str | None = None
    refused: int = 0
    _overrun: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def cap(self) -> float | None:
        caps = [p.pool.remaining for p in self.pools if p.pool.cap is not None]
        return min(caps) if caps else None

    @property
    def remaining(self) -> float | None:
        return self.cap

    @property
    def spent(self) -> float:
        return max((p.pool.spent for p in self.pools), default=0.0)

    @property
    def overrun(self) -> dict[str, Any] | None:
        return self._overrun or next((p.pool.overrun for p in self.pools if p.pool.overrun is not None), None)

    @overrun.setter
    def overrun(self, value: dict[str, Any] | None) -> None:
        self._overrun = value
        for p in self.pools:  # a call billed above its reservation stops every pool it was reserved in
            p.pool.overrun = p.pool.overrun or value

    async def reserve(self, amount: float, *, timeout: float | None = None) -> bool:
        claimed: list[BatchPool] = []
        try:
            for p in self.pools:
                if not await p.pool.reserve(amount, timeout=timeout):
                    self.refused += 1
                    self.refused_by = p.name  # the last refusal decides: an earlier one may have been retried
                    for held in claimed:
                        held.settle(amount, 0.0)
                    return False
                claimed.append(p.pool)
        except BaseException:
            for held in claimed:
                held.settle(amount, 0.0)
            raise
        return True

    def settle(self, reserved: float, actual: float) -> None:
        for p in self.pools:
            p.pool.settle(reserved, actual)
