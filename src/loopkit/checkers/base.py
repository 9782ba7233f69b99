"""What every checker shares: its verdict, its context, and the error that says the checker itself broke.

A failed check is the model's doing and its feedback goes back to the model; a `CheckerError` is the
checker's doing (a judge without JSON, a python checker that raised, a template error, a timeout)
and stops the run as `checker_error` instead, so the model is never told to fix what it did not break.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import BudgetStop
from ..spec import JudgeChecker
from ..status import StopReason


@dataclass(frozen=True)
class CheckResult:
    """One checker's verdict on one output."""

    score: float
    passed: bool
    feedback: str = ""


class CheckerError(Exception):
    """The checker could not judge; `checker` names it and `reason` says why."""

    def __init__(self, checker: str, reason: str) -> None:
        self.checker = checker
        self.reason = reason
        super().__init__(f"checker {checker}: {reason}")


JudgeCall = Callable[[JudgeChecker, list[dict[str, str]]], Awaitable[str]]


def _unlimited() -> float | None:
    return None


@dataclass(frozen=True)
class CheckContext:
    """What a checker may look at besides the output."""

    case: dict[str, Any]
    base_dir: Path
    pass_threshold: float
    prompt: str
    judge: JudgeCall
    time_left: Callable[[], float | None] = _unlimited  # seconds left in the case's budget; None: no limit
    workdir: Path | None = None  # the outside agent's work directory (`worker:`), if the worker is one
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # the worker's tool calls this iteration, in order


@dataclass(frozen=True)
class TimeLimit:
    """How long a checker may run: its own timeout, cut short by what is left of the case's budget."""

    seconds: float
    by_budget: bool

    @classmethod
    def of(cls, timeout: float, ctx: CheckContext) -> TimeLimit:
        left = ctx.time_left()
        if left is not None and left < timeout:
            return cls(max(0.0, left), True)
        return cls(timeout, False)

    def expired(self, checker: str) -> Exception:
        """The error for running past this limit: the case's budget stop, or the checker's own timeout."""
        if self.by_budget:
            return BudgetStop(StopReason.BUDGET_SECONDS, f"the case's time budget ran out while checker {checker} ran")
        return CheckerError(checker, f"timed out after {self.seconds:g}s")


def short(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verdict(ok: bool, feedback: str) -> CheckResult:
    return CheckResult(1.0 if ok else 0.0, ok, "" if ok else feedback)


def as_result(value: Any, pass_threshold: float) -> CheckResult:
    """Normalise a user checker's return value: bool, a number in [0, 1], or a CheckResult."""
    if isinstance(value, CheckResult):
        return CheckResult(min(1.0, max(0.0, float(value.score))), bool(value.passed), str(value.feedback or ""))
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # also numpy's bool
        return CheckResult(1.0 if value else 0.0, bool(value), "")
    if isinstance(value, (int, float)):
        score = float(value)
        if score != score:  # NaN is no score
            raise TypeError("a checker must return a score in [0, 1], not NaN")
        score = min(1.0, max(0.0, score))
        return CheckResult(score, score >= pass_threshold, "")
    if isinstance(value, tuple) and len(value) in (2, 3):
        return as_result(CheckResult(float(value[0]), bool(value[1]), str(value[2]) if len(value) == 3 else ""), pass_threshold)
    raise TypeError(f"a checker must return bool, float or CheckResult, not {type(value).__name__}")
