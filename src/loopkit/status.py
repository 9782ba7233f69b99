"""The vocabulary of outcomes (SPEC.md §2–§3): run and batch statuses, stop reasons, and the one rule
that turns a batch's outcome into an exit code. Every module that names a status imports it from here."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"
    ERROR = "error"
    INTERRUPTED = "interrupted"


class BatchStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    BUDGET = "budget"


class StopReason(StrEnum):
    PASSED = "passed"
    MAX_ITERATIONS = "max_iterations"
    PLATEAU = "plateau"
    BUDGET_USD = "budget_usd"
    BUDGET_TOKENS = "budget_tokens"
    BUDGET_SECONDS = "budget_seconds"
    BUDGET_TOTAL_USD = "budget_total_usd"
    HUMAN = "human"
    APPROVED = "approved"
    REJECTED = "rejected"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    CHECKER_ERROR = "checker_error"


# A finished run is not run again by `resume` (SPEC.md §2); `--retry-errors` takes ERROR out of it.
FINISHED: frozenset[RunStatus] = frozenset({RunStatus.PASSED, RunStatus.FAILED, RunStatus.NEEDS_REVIEW, RunStatus.ERROR})


class ExitCode(IntEnum):
    OK = 0
    QUALITY_GATE = 1
    USAGE = 2
    BUDGET = 3
    ERRORS = 4
    INTERRUPTED = 130


def exit_code(*, budget_refused: bool, errors: bool, gate_failed: bool) -> ExitCode:
    """SPEC.md §3: where several apply, 3 (budget) > 4 (errors) > 1 (quality gate). Usage errors (2) never
    reach a finished batch: they are raised before it starts."""
    if budget_refused:
        return ExitCode.BUDGET
    if errors:
        return ExitCode.ERRORS
    if gate_failed:
        return ExitCode.QUALITY_GATE
    return ExitCode.OK
