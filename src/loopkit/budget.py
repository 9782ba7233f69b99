"""Hard caps, enforced before every call from a worst-case estimate.

A call is made only when its worst case (prompt tokens with a safety margin, plus max_tokens, at
the model's price) fits under every cap; concurrent cases reserve that worst case from the shared
batch pool and hand back the unspent part when the call returns, so recorded spend never exceeds
a cap however many cases are in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .prices import TokenPrice
from .spec import Budget
from .status import StopReason

# Tokenizers disagree a little; the estimate is padded (+10%, +8) so the provider's count stays under it.
PROMPT_MARGIN_PERCENT = 10
PROMPT_PAD = 8


class BudgetStop(Exception):
    """The next call could cross a cap; `reason` is the run's stop_reason."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def worst_case_tokens(prompt_tokens: int, max_tokens: int | None) -> tuple[int, int]:
    """(prompt, completion) tokens a call can at most be billed for."""
    padded = -(-prompt_tokens * (100 + PROMPT_MARGIN_PERCENT) // 100)  # integer ceil: no float rounding
    return padded + PROMPT_PAD, int(max_tokens or 0)


@dataclass
class BatchPool:
    """The batch's `total_usd`, shared by every case in flight."""

    cap: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    refused: int = 0

    def try_reserve(self, amount: float) -> bool:
        if self.cap is not None and self.spent + self.reserved + amount > self.cap + 1e-12:
            self.refused += 1
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual

    @property
    def remaining(self) -> float | None:
        return None if self.cap is None else max(0.0, self.cap - self.spent - self.reserved)


@dataclass
class Reservation:
    """The worst case claimed from the batch pool for one call, handed back when it returns."""

    usd: float


@dataclass
class CaseBudget:
    """One case's caps and what it has spent so far (carried over on resume)."""

    budget: Budget
    pool: BatchPool = field(default_factory=BatchPool)
    spent_usd: float = 0.0
    spent_tokens: int = 0
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def carry_over(self, usd: float, tokens: int, seconds: float) -> None:
        """Count what a continued run (resume, review) spent before, against the same per-case caps."""
        self.spent_usd += usd
        self.spent_tokens += tokens
        self.elapsed_before += seconds

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def remaining_seconds(self) -> float | None:
        return None if self.budget.seconds is None else max(0.0, self.budget.seconds - self.elapsed)

    def reserve(self, price: TokenPrice | None, prompt_tokens: int, max_tokens: int | None) -> Reservation:
        """Claim the worst case of one call or raise BudgetStop; nothing is claimed on refusal."""
        b = self.budget
        if b.seconds is not None and self.elapsed >= b.seconds:
            raise BudgetStop(StopReason.BUDGET_SECONDS, f"{self.elapsed:.1f}s of the {b.seconds:g}s per-case budget used")
        p, c = worst_case_tokens(prompt_tokens, max_tokens)
        tokens = p + c
        if b.tokens is not None and self.spent_tokens + tokens > b.tokens:
            raise BudgetStop(StopReason.BUDGET_TOKENS, f"the next call could use {tokens} tokens; {self.spent_tokens} of {b.tokens} spent")
        usd = price.cost(p, c) if price is not None else 0.0
        if b.usd is not None and self.spent_usd + usd > b.usd + 1e-12:
            raise BudgetStop(StopReason.BUDGET_USD, f"the next call could cost ${usd:.6f}; ${self.spent_usd:.6f} of ${b.usd:g} spent")
        if not self.pool.try_reserve(usd):
            raise BudgetStop(StopReason.BUDGET_TOTAL_USD, f"the next call could cost ${usd:.6f}; the batch budget ${self.pool.cap:g} has "
                                                 f"${self.pool.remaining:.6f} left")
        return Reservation(usd)

    def settle(self, reservation: Reservation | None, cost_usd: float, tokens: int) -> None:
        self.spent_usd += cost_usd
        self.spent_tokens += tokens
        if reservation is not None:
            self.pool.settle(reservation.usd, cost_usd)
