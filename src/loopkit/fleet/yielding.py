"""When a loop yields the shared budget: its recent runs against its history (SPEC.md §9).

A loop is paused when its last `window` runs all ended in error (an outage), when their pass rate fell
under `pass_rate_drop` × the pass rate of the runs before them (a bad prompt, a broken model), or when
their cost per success rose above `cost_rise` × the earlier one. History needs at least `window` runs
too, so a loop is never judged on a handful of cases.
"""

from __future__ import annotations

from collections import deque

from ..records import RunResult
from ..status import RunStatus
from .model import Yielding


class YieldWatch:
    def __init__(self, rules: Yielding, *, runs: int = 0, passed: int = 0, cost: float = 0.0) -> None:
        self.rules = rules
        self.runs, self.passed, self.cost = runs, passed, cost  # the history: every run older than the window
        self.recent: deque[tuple[bool, bool, float]] = deque()

    def add(self, result: RunResult) -> str | None:
        """Count a finished run; the reason to pause the loop, or None."""
        self.recent.append((result.success, result.status == RunStatus.ERROR, result.cost_usd))
        if len(self.recent) > self.rules.window:
            ok, _, cost = self.recent.popleft()
            self.runs, self.passed, self.cost = self.runs + 1, self.passed + int(ok), self.cost + cost
        return self.verdict()

    def verdict(self) -> str | None:
        n = self.rules.window
        if len(self.recent) < n:
            return None
        passed = sum(ok for ok, _, _ in self.recent)
        cost = sum(c for _, _, c in self.recent)
        if all(err for _, err, _ in self.recent):
            return f"every one of the last {n} runs ended in error (an outage?)"
        if self.runs < n:
            return None
        before = self.passed / self.runs
        now = passed / n
        if before > 0 and now < before * self.rules.pass_rate_drop:
            return f"pass rate collapsed: {now:.0%} of the last {n} runs passed, against {before:.0%} of the {self.runs} before"
        if passed and self.passed and self.cost > 0:
            then_cps, now_cps = self.cost / self.passed, cost / passed
            if now_cps > then_cps * self.rules.cost_rise:
                return (f"cost per success rose: ${now_cps:.4f} over the last {n} runs, against ${then_cps:.4f} "
                        f"over the {self.runs} before")
        return None
