"""Errors a user can fix. The CLI prints them in one line and exits with `exit_code` (SPEC.md §3)."""

from __future__ import annotations


class LoopkitError(Exception):
    """A problem the user can fix; never shown with a traceback."""

    exit_code: int = 2

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class UsageError(LoopkitError):
    """Bad command-line usage: an unknown ID, a bad time, conflicting options."""


class SpecError(LoopkitError):
    """One or more problems in a loop spec, each with its file:line:col."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class InputError(LoopkitError):
    """A broken inputs file: bad JSON line, missing CSV column, non-UTF-8 bytes."""


class MissingKeyError(LoopkitError):
    """An API key environment variable is not set."""


class LedgerError(LoopkitError):
    """The ledger cannot be opened or written (read-only location, full disk)."""


class NotALedgerError(LedgerError):
    """The ledger path holds something else: another application's database, a text file, a damaged file."""


class NewerLedgerError(LedgerError):
    """The ledger was migrated by a newer loopkit; this one must not write to it."""
