"""When a loop yields the shared budget: recent runs against its history, never on a handful of runs."""

from __future__ import annotations

from loopkit.fleet.model import Yielding
from loopkit.fleet.yielding import YieldWatch
from loopkit.records import RunResult, RunState
from loopkit.status import RunStatus


def outcome(success: bool, cost: float = 0.01, status: RunStatus | None = None) -> RunResult:
    status = status or (RunStatus.PASSED if success else RunStatus.FAILED)
    return RunResult("r", status, None, success, 1.0 if success else 0.0, 1, 1, "", cost, 0, 0, RunState())


def test_a_collapsed_pass_rate_pauses_only_against_enough_history() -> None:
    watch = YieldWatch(Yielding(window=4))
    assert [watch.add(outcome(False)) for _ in range(4)] == [None] * 4  # no history yet: a slow start is not a collapse
    fresh = YieldWatch(Yielding(window=4), runs=10, passed=9, cost=0.1)
    reasons = [fresh.add(outcome(ok)) for ok in (True, False, False, False)]
    assert reasons[:3] == [None, None, None]
    assert reasons[3] == "pass rate collapsed: 25% of the last 4 runs passed, against 90% of the 10 before"


def test_an_outage_pauses_even_without_history() -> None:
    watch = YieldWatch(Yielding(window=3))
    reasons = [watch.add(outcome(False, status=RunStatus.ERROR)) for _ in range(3)]
    assert reasons[-1] == "every one of the last 3 runs ended in error (an outage?)"


def test_a_rising_cost_per_success_pauses() -> None:
    watch = YieldWatch(Yielding(window=3, cost_rise=2.0), runs=6, passed=6, cost=0.06)  # $0.01 per success before
    reasons = [watch.add(outcome(True, cost=0.05)) for _ in range(3)]
    assert reasons[-1] is not None and reasons[-1].startswith("cost per success rose: $0.0500 over the last 3 runs")
    steady = YieldWatch(Yielding(window=3), runs=6, passed=6, cost=0.06)
    assert [steady.add(outcome(True, cost=0.015)) for _ in range(3)] == [None] * 3
