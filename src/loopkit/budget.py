"""Budgets: the one place that decides about money and time (SPEC.md §1 `budget`, §2).

- Validation: a cap needs `max_tokens` and a known price for every model it covers (`validate_budget`),
  whether it comes from the spec or from `--max-usd`.
- The worst case of a call (`worst_case_call`) and of a case (`worst_case_per_case`). The engine admits
  each call on the first, `loopkit check` prints the second, built from the same per-call function.
- Admission: a call reserves its worst case from its case (`CaseBudget`) and from the batch
  (`BatchPool`) before it is made, and settles what it cost when it returns.
- The case's wall clock: `CaseBudget.time_left()` cuts calls, retries, waits and checkers at the deadline.

The hard cap rests on one assumption: a provider bills no more than the padded prompt estimate plus
`max_tokens`. A call recorded above its reservation breaks it, so it stops its case and the batch at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .prices import TokenPrice, known_price
from .spec import Budget, JudgeChecker, LoopSpec, ModelRef
from .status import StopReason

if TYPE_CHECKING:
    from .inputs import Case

T = TypeVar("T")

# Tokenizers disagree a little; the estimate is padded (+10%, +8) so the provider's count stays under it.
PROMPT_MARGIN_PERCENT = 10
PROMPT_PAD = 8
EPSILON = 1e-12  # float slack when spend meets a cap exactly


class BudgetStop(Exception):
    """The next call could cross a cap, or a call was billed above its reservation; `reason` is the
    run's stop_reason, `overrun` (when set) what the provider billed over the reservation."""

    def __init__(self, reason: StopReason, detail: str, *, overrun: dict[str, Any] | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.overrun = overrun
        super().__init__(detail)


# --- the worst case of a call --------------------------------------------------------------------


def worst_case_tokens(prompt_tokens: int, max_tokens: int | None) -> tuple[int, int]:
    """(prompt, completion) tokens a call can at most be billed for."""
    padded = -(-prompt_tokens * (100 + PROMPT_MARGIN_PERCENT) // 100)  # integer ceil: no float rounding
    return padded + PROMPT_PAD, int(max_tokens or 0)


@dataclass(frozen=True)
class Prompt:
    """A prompt's tokens for a reservation. Its UTF-8 bytes bound them for free; counting them with the
    model's tokenizer costs far more per call (and hands the GIL to other threads). The bound is reserved
    when it fits at once; the exact count is taken only near a cap, so a call that fits is never refused."""

    bound: int
    count: Callable[[], int]

    @classmethod
    def of(cls, messages: list[dict[str, str]], count: Callable[[list[dict[str, str]]], int], *, extra: int = 0) -> Prompt:
        """`messages` with plain-text contents, `count` the model's counter; `extra` tokens (images) are added to both."""
        return cls(prompt_bytes(messages) + extra, lambda: count(messages) + extra)


@dataclass(frozen=True)
class CallWorstCase:
    prompt_tokens: int
    completion_tokens: int
    usd: float | None  # None: the price is unknown

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def worst_case_call(price: TokenPrice | None, prompt_tokens: int, max_tokens: int | None) -> CallWorstCase:
    """The most one call can be billed: the padded prompt plus all of max_tokens, at the price."""
    p, c = worst_case_tokens(prompt_tokens, max_tokens)
    return CallWorstCase(p, c, None if price is None else price.cost(p, c))


# --- validation: every entry point asks this before its first call ---------------------------------


def model_budget_problems(model: ModelRef, params: dict[str, Any], budget: Budget, *,
                          extra_cap: float | None = None) -> list[str]:
    """What keeps a cap from bounding calls to `model` (with `params`): no max_tokens, no price.

    `extra_cap` is a batch cap given outside the spec (`--max-usd`); the spec's lint passes none."""
    money = budget.needs_prices or extra_cap is not None
    why = "a budget is set" if budget.any else "a batch budget (--max-usd) is set"
    problems = []
    if (money or budget.tokens is not None) and not params.get("max_tokens"):
        problems.append(f"{why}, so {model.id} needs `max_tokens` in `params:` "
                        "(the worst case of a call is its prompt plus max_tokens)")
    if money and known_price(model) is None:
        problems.append(f"{why} but the price of {model.id} is unknown; add "
                        "`price: {input_per_mtok: ..., output_per_mtok: ...}` to its mapping")
    return problems


def budget_problems(spec: LoopSpec, *, extra_cap: float | None = None) -> list[str]:
    """Every budget problem of a loaded spec (its models may have been swapped by `--model`), as `where: what`."""
    found: list[str] = []
    for where, model in spec.models():
        found += [f"{where}: {p}" for p in model_budget_problems(model, spec.params_for(model), spec.budget, extra_cap=extra_cap)]
    return list(dict.fromkeys(found))


def validate_budget(spec: LoopSpec, *, extra_cap: float | None = None) -> None:
    """Refuse (exit 2, before any call) a cap that could not be enforced; see `budget_problems`."""
    from .errors import SpecError

    problems = budget_problems(spec, extra_cap=extra_cap)
    if problems:
        file = str(spec.path) if spec.path else spec.name
        raise SpecError([f"{file}: {p}" for p in problems])


def batch_cap(*caps: float | None) -> float | None:
    """The batch's cap: the lowest of the spec's `total_usd` and `--max-usd` given (None: no cap)."""
    given = [c for c in caps if c is not None]
    return min(given) if given else None


# --- admission -----------------------------------------------------------------------------------


@dataclass
class BatchPool:
    """The batch's `total_usd`, shared by every case in flight.

    A call reserves its worst case. When the cap is full only because of reservations still in
    flight, the call waits for them to settle (they usually cost far less than reserved) instead of
    being refused; it is refused only when what is already spent leaves no room for it, since spend
    never goes down, or after a provider billed above a reservation (`overrun`).
    """

    cap: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    refused: int = 0
    overrun: dict[str, Any] | None = None
    _in_flight: int = field(default=0, init=False, repr=False)
    # Set (and replaced) on every settle. An Event rather than a Condition: settle runs in cleanup
    # paths (a cancelled call) where it cannot await a lock.
    _settled: asyncio.Event | None = field(default=None, init=False, repr=False)

    def _fits(self, amount: float, *, with_reserved: bool) -> bool:
        held = self.reserved if with_reserved else 0.0
        return self.cap is None or self.spent + held + amount <= self.cap + EPSILON

    async def reserve(self, amount: float, *, timeout: float | None = None) -> bool:
        """Claim `amount` for one call: True when claimed, False when refused. Raises TimeoutError when
        `timeout` (the case's deadline) passes while waiting for calls in flight to settle."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self.overrun is not None or not self._fits(amount, with_reserved=False):
                self.refused += 1
                return False
            if self._in_flight == 0 or self._fits(amount, with_reserved=True):
                self.reserved += amount
                self._in_flight += 1
                return True
            if self._settled is None:
                self._settled = asyncio.Event()
            await asyncio.wait_for(self._settled.wait(), None if deadline is None else deadline - loop.time())

    def settle(self, reserved: float, actual: float) -> None:
        """A call returned (or failed: `actual` 0): hand back its reservation, count what it cost."""
        self._in_flight = max(0, self._in_flight - 1)
        self.reserved = max(0.0, self.reserved - reserved) if self._in_flight else 0.0  # no float dust left holding room
        self.spent += actual
        event, self._settled = self._settled, None
        if event is not None:
            event.set()

    @property
    def remaining(self) -> float | None:
        return None if self.cap is None else max(0.0, self.cap - self.spent - self.reserved)


@dataclass
class Reservation:
    """The worst case claimed for one call, handed back when it returns."""

    usd: float
    tokens: int
    model: str = ""


@dataclass
class CaseBudget:
    """One case's caps, what it has spent so far (carried over on resume and review), and its clock."""

    budget: Budget
    pool: BatchPool = field(default_factory=BatchPool)
    spent_usd: float = 0.0
    spent_tokens: int = 0
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        """Start the case's clock: once its clients are ready, so loading a provider library is not counted."""
        self.started = time.monotonic()

    def carry_over(self, usd: float, tokens: int, seconds: float) -> None:
        """Count what a continued run (resume, review) spent before, against the same per-case caps."""
        self.spent_usd += usd
        self.spent_tokens += tokens
        self.elapsed_before += seconds

    @property
    def capped(self) -> bool:
        """Whether a call's money or tokens are capped (the case's `usd` or `tokens`, the batch's total):
        only then must its prompt be counted to reserve its worst case."""
        return self.budget.usd is not None or self.budget.tokens is not None or self.pool.cap is not None

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def time_left(self) -> float | None:
        """Seconds left before the case's deadline (0 once past it); None without a `seconds` cap."""
        return None if self.budget.seconds is None else max(0.0, self.budget.seconds - self.elapsed)

    def _out_of_time(self, doing: str) -> BudgetStop:
        return BudgetStop(StopReason.BUDGET_SECONDS, f"the {self.budget.seconds:g}s per-case budget ran out {doing}")

    async def within_deadline(self, work: Awaitable[T], doing: str) -> T:
        """Await `work` (a model call with its retries, a judge) but no later than the deadline."""
        left = self.time_left()
        if left is None:
            return await work
        try:
            return await asyncio.wait_for(work, left)
        except TimeoutError:
            raise self._out_of_time(doing) from None

    def _fits_at_once(self, call: CallWorstCase) -> bool:
        """Whether `call` is within the case's caps and the pool's room now: admitted without waiting."""
        b, usd, room = self.budget, call.usd or 0.0, self.pool.remaining
        return ((b.tokens is None or self.spent_tokens + call.tokens <= b.tokens)
                and (b.usd is None or self.spent_usd + usd <= b.usd + EPSILON) and (room is None or usd <= room))

    async def reserve(self, price: TokenPrice | None, prompt: int | Prompt, max_tokens: int | None, *,
                      model: str = "") -> Reservation:
        """Claim the worst case of one call or raise BudgetStop; nothing is claimed on refusal. A `Prompt`
        is counted exactly only when its bound does not fit at once (or, on Ray, the batch's room seen
        last was stale and the bound was refused)."""
        if isinstance(prompt, int):
            return await self._reserve(price, prompt, max_tokens, model)
        if self._fits_at_once(worst_case_call(price, prompt.bound, max_tokens)):
            try:
                return await self._reserve(price, prompt.bound, max_tokens, model)
            except BudgetStop as stop:
                if stop.reason != StopReason.BUDGET_TOTAL_USD or self.pool.overrun is not None:
                    raise
        return await self._reserve(price, prompt.count(), max_tokens, model)

    async def _reserve(self, price: TokenPrice | None, prompt_tokens: int, max_tokens: int | None, model: str) -> Reservation:
        b = self.budget
        if self.time_left() == 0.0:
            raise self._out_of_time(f"after {self.elapsed:.1f}s, before the next call")
        call = worst_case_call(price, prompt_tokens, max_tokens)
        if b.tokens is not None and self.spent_tokens + call.tokens > b.tokens:
            raise BudgetStop(StopReason.BUDGET_TOKENS, f"the next call could use {call.tokens} tokens; "
                                                       f"{self.spent_tokens} of {b.tokens} spent")
        usd = call.usd or 0.0
        if b.usd is not None and self.spent_usd + usd > b.usd + EPSILON:
            raise BudgetStop(StopReason.BUDGET_USD, f"the next call could cost ${usd:.6f}; ${self.spent_usd:.6f} of ${b.usd:g} spent")
        try:
            admitted = await self.pool.reserve(usd, timeout=self.time_left())
        except TimeoutError:
            raise self._out_of_time("waiting for room in the batch budget") from None
        if not admitted:
            if self.pool.overrun is not None:
                raise BudgetStop(StopReason.BUDGET_TOTAL_USD, "the batch stopped: a provider billed a call above its "
                                                              "reserved worst case, so the caps no longer hold")
            raise BudgetStop(StopReason.BUDGET_TOTAL_USD, f"the next call could cost ${usd:.6f}; the batch budget "
                                                          f"${self.pool.cap:g} has ${self.pool.remaining:.6f} left")
        return Reservation(usd, call.tokens, model)

    def settle(self, reservation: Reservation | None, cost_usd: float, tokens: int) -> None:
        """Count what a call cost; raise BudgetStop when it was billed above its reservation (the case and,
        through the pool, the batch stop: no further call is admitted)."""
        self.spent_usd += cost_usd
        self.spent_tokens += tokens
        if reservation is None:
            return
        self.pool.settle(reservation.usd, cost_usd)
        b = self.budget
        usd_capped = b.usd is not None or self.pool.cap is not None
        over_usd = usd_capped and cost_usd > reservation.usd * (1 + 1e-9) + EPSILON
        over_tokens = b.tokens is not None and tokens > reservation.tokens
        if not (over_usd or over_tokens):
            return
        overrun = {"model": reservation.model, "reserved_usd": reservation.usd, "billed_usd": cost_usd,
                   "reserved_tokens": reservation.tokens, "billed_tokens": tokens}
        self.pool.overrun = self.pool.overrun or overrun
        reason = (StopReason.BUDGET_TOKENS if not over_usd else
                  StopReason.BUDGET_USD if b.usd is not None else StopReason.BUDGET_TOTAL_USD)
        raise BudgetStop(reason, f"{reservation.model or 'a call'} was billed ${cost_usd:.6f} and {tokens} tokens, above "
                                 f"its reserved worst case ${reservation.usd:.6f} and {reservation.tokens} tokens; "
                                 "the case and the batch stop", overrun=overrun)


# --- the worst case of a case (`loopkit check`) ----------------------------------------------------

# Without a tokenizer, a prompt's tokens are bounded from above by its UTF-8 bytes (a byte-level BPE
# token covers at least one byte), plus chat formatting per message. `check` never loads litellm.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
# What one failed checker's feedback may add to the next prompt, in characters: a command's output
# tail (2,000) with its message, a python checker's own text; the built-in text checkers quote at most
# 200 characters of the answer and of the expected value. A judge's reason is bounded by its max_tokens.
FEEDBACK_CHARS = {"command": 2_500, "python": 2_500}
FEEDBACK_CHARS_DEFAULT = 1_000


@dataclass(frozen=True)
class WorstCase:
    """What one case can at most cost: `calls` calls over `iterations` iterations. `usd` is None when a
    model's price is unknown (`unpriced`), and both are None when a model has no `max_tokens`
    (`unbounded`): nothing bounds its replies."""

    usd: float | None
    tokens: int | None
    calls: int
    iterations: int
    case_id: str | None  # the case it was computed on: the one with the longest prompt
    capped: bool = False  # the spec's per-case `usd` or `tokens` cap holds it below what the calls could cost
    unpriced: list[str] = field(default_factory=list)
    unbounded: list[str] = field(default_factory=list)


def prompt_bytes(messages: list[dict[str, str]]) -> int:
    """An upper bound on the prompt tokens of plain-text messages, without a tokenizer (a lone surrogate,
    which no request could carry unescaped, counts as its three bytes rather than failing the bound)."""
    return sum(len((m.get("content") or "").encode("utf-8", "surrogatepass")) + MESSAGE_OVERHEAD for m in messages) + REPLY_PRIMING


def _opening(spec: LoopSpec, case: dict[str, Any]) -> list[dict[str, str]]:
    from .templates import render

    system = [{"role": "system", "content": render(spec.task.system, case=case)}] if spec.task.system else []
    return system + [{"role": "user", "content": render(spec.task.prompt, case=case)}]


def _feedback_tokens(spec: LoopSpec, case: dict[str, Any]) -> int:
    """A bound on the feedback message after a failed iteration: every graded checker failing at length."""
    from .templates import render

    graded = [c for c in spec.checkers if not c.audit]
    chars = sum(FEEDBACK_CHARS.get(c.type, FEEDBACK_CHARS_DEFAULT) + len(c.name) + 4 for c in graded if not isinstance(c, JudgeChecker))
    judged = sum(int(spec.params_for(c.model or spec.model).get("max_tokens") or 0) + len(c.name.encode()) + 4
                 for c in graded if isinstance(c, JudgeChecker))
    text = render(spec.task.feedback, case=case, feedback="x" * chars, reward=0.0, iteration=spec.stop.max_iterations)
    return len(text.encode()) + judged + MESSAGE_OVERHEAD


def worst_case_per_case(spec: LoopSpec, cases: Iterable[Case] | None = None) -> WorstCase:
    """The most one case can cost, on the case with the longest prompt: every iteration on the dearest
    model of the escalation ladder, the conversation growing by a full reply and a feedback message
    each time (`memory: last` keeps one), every judge on every iteration; never above the case's caps."""
    from .checkers import judge_messages
    from .inputs import Inputs

    rows = Inputs(spec.inputs, base_dir=spec.base_dir) if cases is None else cases
    longest: tuple[int, str | None, dict[str, Any]] = (-1, None, {})
    for c in rows:
        size = prompt_bytes(_opening(spec, c.data))
        if size > longest[0]:
            longest = (size, c.id, c.data)
    _, case_id, case = longest
    opening = _opening(spec, case)
    ladder = [spec.model] + [m for e in spec.escalate for m in e.models]
    judges = [c for c in spec.checkers if isinstance(c, JudgeChecker)]
    involved = ladder + [j.model or spec.model for j in judges]

    def max_tokens(model: ModelRef) -> int | None:
        return spec.params_for(model).get("max_tokens")

    unbounded = sorted({m.id for m in involved if not max_tokens(m)})
    unpriced = sorted({m.id for m in involved if known_price(m) is None})
    reply = max(int(max_tokens(m) or 0) for m in ladder) + MESSAGE_OVERHEAD
    turn = reply + _feedback_tokens(spec, case)
    prompt = opening[-1]["content"]
    usd, tokens, calls = 0.0, 0, 0
    n = spec.stop.max_iterations
    for k in range(n):
        earlier = k if spec.task.memory == "conversation" else min(k, 1)
        worker = [worst_case_call(known_price(m), prompt_bytes(opening) + earlier * turn, max_tokens(m)) for m in ladder]
        judged = [worst_case_call(known_price(m), prompt_bytes(judge_messages(j, prompt, "")) + reply, max_tokens(m))
                  for j in judges for m in [j.model or spec.model]]
        tokens += max(w.tokens for w in worker) + sum(j.tokens for j in judged)
        usd += max(w.usd or 0.0 for w in worker) + sum(j.usd or 0.0 for j in judged)
        calls += 1 + len(judged)
    b = spec.budget
    capped = (b.usd is not None and usd > b.usd) or (b.tokens is not None and tokens > b.tokens)
    return WorstCase(
        usd=None if unpriced or unbounded else min(usd, b.usd if b.usd is not None else usd),
        tokens=None if unbounded else min(tokens, b.tokens if b.tokens is not None else tokens),
        calls=calls, iterations=n, case_id=case_id, capped=capped, unpriced=unpriced, unbounded=unbounded)
