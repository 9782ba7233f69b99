"""`loopkit fleet run`: many loops on the scripted model under one budget, shares, a window, reviewer minutes."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from loopkit.fleet import load_fleet
from loopkit.fleet.runner import FleetOptions, FleetResult, run_fleet
from loopkit.ledger import Ledger

# $1,000 per million tokens: a case costs about a cent, its worst case about four.
SPEC = """\
    name: {name}
    model: {{id: loopkit/scripted, price: {{input_per_mtok: 1000, output_per_mtok: 1000}}, replies: ["{{{{ case.answer }}}}"]}}
    params: {{max_tokens: 20}}
    task: {{prompt: "Answer {{{{ case.id }}}}"}}
    inputs: {name}.jsonl
    checkers: [{{name: right, type: equals, expected: "yes"}}]
    stop: {{max_iterations: 1}}
    """


class FakeClock:
    """Local time that moves only when asked: `tick` per reading, or a whole wait at once."""

    def __init__(self, start: datetime, tick: timedelta = timedelta(0)) -> None:
        self.t = start
        self.tick = tick
        self.slept: list[float] = []

    def now(self) -> datetime:
        t = self.t
        self.t += self.tick
        return t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)


def write_loop(tmp_path: Path, name: str, answers: list[str], extra: str = "") -> None:
    (tmp_path / f"{name}.jsonl").write_text("".join(f'{{"id": "{name}-{i:02d}", "answer": "{a}"}}\n' for i, a in enumerate(answers)))
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(SPEC.format(name=name)) + textwrap.dedent(extra))


def write_fleet(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def run(path: Path, ledger: Ledger, **options: object) -> FleetResult:
    return run_fleet(load_fleet(path), ledger, FleetOptions(**options))  # type: ignore[arg-type]


def loop_runs(ledger: Ledger, loop: str) -> list[dict]:
    return ledger.query("SELECT r.* FROM runs r JOIN batches b ON b.id = r.batch_id WHERE json_extract(b.tags, '$.fleet_loop') = ? "
                        "ORDER BY r.started_at", (loop,))


def loop_spend(ledger: Ledger, loop: str) -> float:
    row = ledger.one("SELECT TOTAL(c.cost_usd) AS c FROM calls c JOIN batches b ON b.id = c.batch_id "
                     "WHERE json_extract(b.tags, '$.fleet_loop') = ?", (loop,))
    return row["c"]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


def test_two_loops_under_one_cap_the_higher_priority_first_and_spend_within_the_cap(tmp_path: Path, ledger: Ledger) -> None:
    write_loop(tmp_path, "urgent", ["yes"] * 3)
    write_loop(tmp_path, "bulk", ["yes"] * 12)
    path = write_fleet(tmp_path, """\
        budget: {total_usd: 0.1}
        providers: {loopkit: {concurrency: 1}}
        loops:
          - {spec: bulk.yaml, priority: 2}
          - {spec: urgent.yaml, priority: 1}
        """)
    result = run(path, ledger)
    spent = ledger.one("SELECT TOTAL(cost_usd) AS c FROM calls")["c"]
    assert 0 < spent <= 0.1  # counted from the calls table, the source of truth
    urgent, bulk = loop_runs(ledger, "urgent"), loop_runs(ledger, "bulk")
    assert [r["status"] for r in urgent] == ["passed"] * 3
    assert 0 < len(bulk) < 12  # the cap stopped the lower priority
    assert max(r["ended_at"] for r in urgent) <= min(r["started_at"] for r in bulk)
    assert result.status == "budget" and result.exit_code == 3
    assert {b["kind"] for b in ledger.query("SELECT kind FROM batches")} == {"fleet"}


def share_fleet(tmp_path: Path) -> Path:
    """`capped` (10 cases, first) may spend 6% of the fleet's $1; `other` (4 cases) competes for the rest."""
    write_loop(tmp_path, "capped", ["yes"] * 10)
    write_loop(tmp_path, "other", ["yes"] * 4)
    return write_fleet(tmp_path, """\
        budget: {total_usd: 1}
        providers: {loopkit: {concurrency: 2}}
        loops:
          - {spec: capped.yaml, priority: 1, share: 0.06}
          - {spec: other.yaml, priority: 2}
        """)


def test_a_share_caps_its_loop_and_the_others_go_on(tmp_path: Path, ledger: Ledger) -> None:
    path = share_fleet(tmp_path)
    result = run(path, ledger)
    assert loop_spend(ledger, "capped") <= 0.06
    assert 0 < len(loop_runs(ledger, "capped")) < 10
    assert len(loop_runs(ledger, "other")) == 4  # the lower priority still ran: only the share was spent
    capped = next(lp for lp in result.loops if lp["loop"] == "capped")
    assert capped["out_of_money"] == "share" and capped["not_run_budget"] > 0
    assert result.status == "budget" and result.exit_code == 3  # as a batch whose budget kept cases from running


def test_nothing_starts_outside_the_window(tmp_path: Path, ledger: Ledger) -> None:
    write_loop(tmp_path, "nightly", ["yes"] * 4)
    path = write_fleet(tmp_path, 'budget: {usd_per_day: 1}\nwindow: "22:00-06:00"\nloops:\n  - {spec: nightly.yaml}\n')
    noon = datetime(2026, 12, 3, 12, 0)
    result = run(path, ledger, once=True, clock=FakeClock(noon))
    assert result.status == "waiting" and result.exit_code == 0
    assert ledger.one("SELECT COUNT(*) AS n FROM runs")["n"] == 0
    launches: list[datetime] = []
    clock = FakeClock(noon)
    result = run(path, ledger, clock=clock, on_launch=lambda loop, case, at: launches.append(at))
    assert clock.slept == [10 * 3600]  # waited for 22:00 on the clock, without sleeping
    assert len(launches) == 4 and all(at.hour >= 22 for at in launches)
    assert result.status == "done"


def test_a_window_that_closes_stops_new_cases_and_a_rerun_finishes_them(tmp_path: Path, ledger: Ledger) -> None:
    write_loop(tmp_path, "nightly", ["yes"] * 10)
    path = write_fleet(tmp_path, 'budget: {usd_per_day: 1}\nwindow: "22:00-22:03"\n'
                                 'providers: {loopkit: {concurrency: 1}}\nloops:\n  - {spec: nightly.yaml}\n')
    launches: list[datetime] = []
    clock = FakeClock(datetime(2026, 12, 3, 22, 0), tick=timedelta(seconds=30))
    result = run(path, ledger, once=True, clock=clock, on_launch=lambda loop, case, at: launches.append(at))
    assert result.status == "waiting"
    assert 0 < len(launches) < 10 and all(datetime(2026, 12, 3, 22, 0) <= at < datetime(2026, 12, 3, 22, 3) for at in launches)
    run(path, ledger, clock=FakeClock(datetime(2026, 12, 4, 22, 0)))
    assert ledger.one("SELECT COUNT(*) AS n, COUNT(DISTINCT case_id) AS cases FROM runs") == {"n": 10, "cases": 10}


def test_a_rerun_after_a_crash_runs_each_case_exactly_once(tmp_path: Path, ledger: Ledger) -> None:
    write_loop(tmp_path, "first", ["yes"] * 6)
    write_loop(tmp_path, "second", ["no", "yes"] * 3)
    path = write_fleet(tmp_path, "budget: {total_usd: 5}\nproviders: {loopkit: {concurrency: 2}}\n"
                                 "loops:\n  - {spec: first.yaml}\n  - {spec: second.yaml}\n")
    launched: list[str] = []

    def crash_after_five(loop: str, case: str, at: datetime) -> None:
        launched.append(case)
        if len(launched) > 5:
            raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError):
        run(path, ledger, on_launch=crash_after_five)
    before = ledger.query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
    assert sum(r["n"] for r in before) >= 3, before
    # what kill -9 leaves: the batches still marked running, under a process that is gone
    ledger.conn.execute("UPDATE batches SET status='running', pid=999999999")
    ledger.conn.execute("UPDATE runs SET status='running', stop_reason=NULL WHERE id IN (SELECT id FROM runs LIMIT 2)")
    ledger.conn.commit()
    result = run(path, ledger)
    rows = ledger.query("SELECT case_id, COUNT(*) AS n, MAX(status) AS status FROM runs GROUP BY case_id")
    assert len(rows) == 12 and all(r["n"] == 1 for r in rows)
    assert {r["status"] for r in rows} <= {"passed", "failed"}
    assert result.status == "done" and sum(lp["skipped"] for lp in result.loops) >= 1  # finished before: not run again
    assert {b["status"] for b in ledger.query("SELECT status FROM batches")} == {"done"}
    again = run(path, ledger)  # idempotent: nothing left to run
    assert sum(lp["finished"] for lp in again.loops) == 0 and ledger.one("SELECT COUNT(*) AS n FROM runs")["n"] == 12


def test_a_loop_whose_pass_rate_collapses_is_paused_until_resumed(tmp_path: Path, ledger: Ledger, cli) -> None:  # noqa: ANN001
    write_loop(tmp_path, "fragile", ["yes"] * 6 + ["no"] * 6)
    path = write_fleet(tmp_path, """\
        budget: {total_usd: 5}
        providers: {loopkit: {concurrency: 1}}
        yielding: {window: 3}
        loops:
          - {spec: fragile.yaml}
        """)
    result = run(path, ledger)
    assert result.status == "paused" and len(loop_runs(ledger, "fragile")) == 8
    pause = ledger.one("SELECT detail FROM events WHERE kind='fleet_pause'")
    assert "pass rate collapsed: 33% of the last 3 runs passed, against 100%" in json.loads(pause["detail"])["reason"]
    status = json.loads(cli("fleet", "status", "fleet.yaml", "--json").stdout)
    assert status["loops"][0]["paused"] is True and status["loops"][0]["queued"] == 4
    assert len(loop_runs(ledger, "fragile")) == 8 == len(loop_runs(ledger, "fragile"))
    assert run(path, ledger).loops[0]["finished"] == 0  # still paused: nothing runs
    resumed = cli("fleet", "resume-loop", "fleet.yaml", "fragile")
    assert resumed.returncode == 0, resumed.stderr
    assert ledger.one("SELECT COUNT(*) AS n FROM events WHERE kind='fleet_resume'")["n"] == 1
    assert run(path, ledger).loops[0]["finished"] > 0


def test_on_the_litellm_path_two_loops_share_a_provider_and_a_cap(tmp_path: Path, ledger: Ledger, fake_llm, monkeypatch) -> None:  # noqa: ANN001
    from fake_llm import Reply
    from specs import fake_spec

    monkeypatch.setenv("TEST_KEY", "sk-test-fleet")
    fake_llm.default = Reply("42", completion_tokens=1)
    fake_llm.queue(Reply(status=429, retry_after=0))  # the provider's limit halves, the call is retried
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text(fake_spec(fake_llm.base_url, name=name).replace("cases.jsonl", f"{name}.jsonl"))
        (tmp_path / f"{name}.jsonl").write_text("".join(f'{{"id": "{name}-{i:02d}"}}\n' for i in range(20)))
    path = write_fleet(tmp_path, """\
        budget: {total_usd: 0.00036}
        providers: {openai: {concurrency: 4}}
        loops:
          - {spec: second.yaml, priority: 2}
          - {spec: first.yaml, priority: 1}
        """)
    result = run(path, ledger)
    assert ledger.one("SELECT TOTAL(cost_usd) AS c FROM calls")["c"] <= 0.00036  # 40 cases would cost $0.00046
    assert [r["status"] for r in loop_runs(ledger, "first")] == ["passed"] * 20
    assert 0 < len(loop_runs(ledger, "second")) < 20
    assert result.status == "budget"
