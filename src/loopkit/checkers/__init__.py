"""Checkers: each turns an output into a score in [0, 1], a pass/fail, and feedback for the next try.

A user's own checker is a plain function `def check(output, case) -> bool | float | CheckResult`.
A checker that cannot judge (it raised, timed out, its template or pattern is broken, its judge gave
no score) raises `CheckerError`: the run stops as `checker_error`, and the model never hears of it.
"""

from __future__ import annotations

from typing import Any

from ..budget import BudgetStop
from ..spec import (
    Checker,
    CommandChecker,
    ContainsChecker,
    EqualsChecker,
    JsonChecker,
    JudgeChecker,
    NumberChecker,
    PythonChecker,
    RegexChecker,
)
from ..templates import TemplateError
from .base import CheckContext, CheckerError, CheckResult, JudgeCall, as_result
from .command import check_command
from .judge import JUDGE_SYSTEM, check_judge, judge_messages, parse_judgement
from .python import check_python
from .text import check_contains, check_equals, check_json, check_number, check_regex

__all__ = ["JUDGE_SYSTEM", "CheckContext", "CheckResult", "CheckerError", "JudgeCall", "as_result", "judge_messages",
           "parse_judgement", "run_checker"]

_SYNC: dict[type, Any] = {EqualsChecker: check_equals, ContainsChecker: check_contains, RegexChecker: check_regex,
                          NumberChecker: check_number, JsonChecker: check_json}
_ASYNC: dict[type, Any] = {PythonChecker: check_python, CommandChecker: check_command, JudgeChecker: check_judge}


async def run_checker(checker: Checker, output: str, ctx: CheckContext) -> CheckResult:
    """Score one output with one checker, or raise CheckerError (or the case's BudgetStop) when it cannot.

    A judge's failed call is the model's error (ModelCallError), and passes through unchanged."""
    sync = _SYNC.get(type(checker))
    if sync is None:
        return await _ASYNC[type(checker)](checker, output, ctx)
    try:
        return sync(checker, output, ctx)
    except (CheckerError, BudgetStop):
        raise
    except TemplateError as exc:
        raise CheckerError(checker.name, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a built-in checker that breaks on some input is a checker error, not a crash
        raise CheckerError(checker.name, f"failed: {type(exc).__name__}: {exc}") from None
