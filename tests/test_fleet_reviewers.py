"""A fleet's reviewer minutes and day budget: parked runs spend the day's minutes, then wait for capacity
or yield to a model escalation; the day's budget stops a day and the next day goes on; `review` puts
a fleet's higher priority first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from test_fleet import FakeClock, loop_runs, run, write_fleet, write_loop

from loopkit.ledger import Ledger

STRONG = "{id: loopkit/scripted, name: strong, price: {input_per_mtok: 1000, output_per_mtok: 1000}, replies: [\"yes\"]}"


def test_when_the_reviewer_minutes_run_out_parked_runs_are_held(tmp_path: Path, cli) -> None:  # noqa: ANN001
    write_loop(tmp_path, "hard", ["no"] * 5, extra='escalate:\n  - {when: {failed: right}, human: {note: "check it", minutes: 10}}\n')
    path = write_fleet(tmp_path, """\
        budget: {total_usd: 5}
        reviewers: {minutes_per_day: 25, usd_per_hour: 60}
        providers: {loopkit: {concurrency: 1}}
        loops:
          - {spec: hard.yaml}
        """)
    ledger = Ledger(tmp_path / "ledger.db")
    run(path, ledger)
    runs = loop_runs(ledger, "hard")
    assert [r["status"] for r in runs] == ["needs_review"] * 5
    held = ledger.query("SELECT run_id, detail FROM events WHERE kind='reviewer_capacity'")
    assert len(held) == 3  # 10 + 10 minutes fit in 25; the third hand-off would not
    assert all(json.loads(h["detail"])["message"] == "waiting for reviewer capacity" for h in held)
    assert sum(r["message"].startswith("waiting for reviewer capacity") for r in runs) == 3
    status = json.loads(cli("fleet", "status", "--json").stdout)
    assert status["reviewers"] == {"minutes_per_day": 25.0, "used_today_minutes": 20.0, "left_today_minutes": 5.0}
    assert (status["loops"][0]["reviews_pending"], status["loops"][0]["reviews_held"]) == (5, 3)
    # the next day's minutes take on the held runs first: two fit in 25
    run(path, ledger, clock=FakeClock(datetime.now() + timedelta(days=1)))
    released = ledger.query("SELECT run_id FROM events WHERE kind='reviewer_capacity' AND json_extract(detail, '$.released') = 1")
    assert len(released) == 2
    assert sum((r["message"] or "").startswith("waiting for reviewer capacity") for r in loop_runs(ledger, "hard")) == 1
    status = json.loads(cli("fleet", "status", "--json").stdout)
    assert status["loops"][0]["reviews_held"] == 1


def ladder_fleet(tmp_path: Path) -> Path:
    """One loop of five failing cases that escalates to a person (10 minutes), then to a stronger model; the
    day has 20 reviewer minutes."""
    write_loop(tmp_path, "ladder", ["no"] * 5, extra=f"""\
        escalate:
          - {{when: {{failed: right}}, human: {{note: "check it", minutes: 10}}}}
          - {{when: {{failed: right}}, model: {STRONG}}}
        """)
    spec = tmp_path / "ladder.yaml"
    spec.write_text(spec.read_text().replace("stop: {max_iterations: 1}", "stop: {max_iterations: 2}"))
    return write_fleet(tmp_path, """\
        budget: {total_usd: 5}
        reviewers: {minutes_per_day: 20}
        providers: {loopkit: {concurrency: 1}}
        loops:
          - {spec: ladder.yaml}
        """)


def test_without_reviewer_minutes_a_loop_escalates_to_its_model_instead(tmp_path: Path) -> None:
    path = ladder_fleet(tmp_path)
    ledger = Ledger(tmp_path / "ledger.db")
    run(path, ledger)
    assert [r["status"] for r in loop_runs(ledger, "ladder")] == ["needs_review"] * 2 + ["passed"] * 3
    assert ledger.one("SELECT COUNT(*) AS n FROM events WHERE kind='reviewer_capacity'")["n"] == 0
    models = ledger.query("SELECT DISTINCT model FROM calls")
    assert {m["model"] for m in models} == {"loopkit/scripted", "strong"}


def test_the_days_budget_stops_the_day_and_the_next_day_goes_on(tmp_path: Path) -> None:
    write_loop(tmp_path, "daily", ["yes"] * 10)
    path = write_fleet(tmp_path, "budget: {usd_per_day: 0.06}\nproviders: {loopkit: {concurrency: 1}}\nloops:\n  - {spec: daily.yaml}\n")
    ledger = Ledger(tmp_path / "ledger.db")
    first = run(path, ledger, once=True, clock=FakeClock(datetime.now()))
    assert first.status == "waiting" and first.exit_code == 0
    assert ledger.one("SELECT TOTAL(cost_usd) AS c FROM calls")["c"] <= 0.06
    assert 0 < len(loop_runs(ledger, "daily")) < 10
    clock = FakeClock(datetime.now())
    finished = run(path, ledger, clock=clock)
    assert finished.status == "done" and clock.slept  # waited for midnight (on the clock) at least once
    assert ledger.one("SELECT COUNT(*) AS n, COUNT(DISTINCT case_id) AS cases FROM runs") == {"n": 10, "cases": 10}


def test_review_lists_a_fleets_higher_priority_first(tmp_path: Path, cli) -> None:  # noqa: ANN001
    handoff = 'escalate:\n  - {when: {failed: right}, human: "look"}\n'
    write_loop(tmp_path, "low", ["no"] * 2, extra=handoff)
    write_loop(tmp_path, "high", ["no"] * 2, extra=handoff)
    path = write_fleet(tmp_path, """\
        budget: {total_usd: 5}
        providers: {loopkit: {concurrency: 1}}
        loops:
          - {spec: low.yaml, priority: 2, deadline: 2099-01-01}
          - {spec: high.yaml, priority: 1}
        """)
    ledger = Ledger(tmp_path / "ledger.db")
    run(path, ledger)
    ledger.conn.execute("UPDATE runs SET started_at = '2000-01-01' WHERE spec_name = 'low'")  # older, yet second
    ledger.conn.commit()
    queue = json.loads(cli("review", "--json").stdout)
    assert [r["spec_name"] for r in queue] == ["high", "high", "low", "low"]


def test_a_near_deadline_moves_a_loop_up(tmp_path: Path) -> None:
    write_loop(tmp_path, "later", ["yes"] * 2)
    write_loop(tmp_path, "due", ["yes"] * 2)
    path = write_fleet(tmp_path, """\
        budget: {total_usd: 5}
        providers: {loopkit: {concurrency: 1}}
        loops:
          - {spec: later.yaml, priority: 1}
          - {spec: due.yaml, priority: 3, deadline: 2026-12-04}
        """)
    order: list[str] = []
    run(path, Ledger(tmp_path / "ledger.db"), clock=FakeClock(datetime(2026, 12, 3, 12, 0)),
        on_launch=lambda loop, case, at: order.append(loop))
    assert order == ["due", "due", "later", "later"]  # due tomorrow: up by six places, ahead of priority 1
