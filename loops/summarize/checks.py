"""Checkers for summarize.yaml. Each is `fn(output, case) -> CheckResult`."""

from __future__ import annotations

from loopkit import CheckResult

MIN_WORDS = 15
DEFAULT_MAX_WORDS = 60


def word_limit(output: str, case: dict) -> CheckResult:
    """Between MIN_WORDS and the case's `max_words` (default 60) words, counted by whitespace."""
    words = len(output.split())
    limit = int(case.get("max_words") or DEFAULT_MAX_WORDS)
    if words > limit:
        return CheckResult(0.0, False, f"the summary has {words} words; the limit is {limit}: cut at least {words - limit}")
    if words < MIN_WORDS:
        return CheckResult(0.0, False, f"the summary has {words} words; write at least {MIN_WORDS}")
    return CheckResult(1.0, True, "")
