"""kill -9 of `loopkit fleet run` (a real process, the scripted model): the rerun finishes each case once."""

from __future__ import annotations

import signal
from pathlib import Path

from test_faults import env_for, killed_at_exit, query, start, wait_until
from test_fleet import run, write_fleet, write_loop

from loopkit.ledger import Ledger


def test_kill_9_mid_fleet_then_rerun_finishes_each_case_exactly_once(tmp_path: Path) -> None:
    write_loop(tmp_path, "bulk", ["yes", "no"] * 1500)
    write_loop(tmp_path, "small", ["yes"] * 20)
    write_fleet(tmp_path, "budget: {total_usd: 1000}\nproviders: {loopkit: {concurrency: 4}}\n"
                          "loops:\n  - {spec: small.yaml, priority: 1}\n  - {spec: bulk.yaml, priority: 2}\n")
    db = tmp_path / "ledger.db"
    proc = start(["fleet", "run", "fleet.yaml"], cwd=tmp_path, env=env_for(db))
    with killed_at_exit(proc):
        wait_until(lambda: len(query(db, "SELECT id FROM runs WHERE spec_name='bulk'")) >= 50, proc=proc, what="fifty bulk runs")
        proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    before = query(db, "SELECT COUNT(*) AS n FROM runs")[0]["n"]
    assert before < 3020, "killed before the end"
    assert {r["status"] for r in query(db, "SELECT status FROM batches")} == {"running"}  # nobody could mark them

    from loopkit.fleet.status import fleet_status

    assert fleet_status(Ledger(db, readonly=True))["status"] == "interrupted"  # recorded running, but its process is gone
    result = run(tmp_path / "fleet.yaml", Ledger(db))
    assert result.status == "done"
    counts = query(db, "SELECT case_id, COUNT(*) AS n FROM runs GROUP BY case_id")
    assert len(counts) == 3020 and {c["n"] for c in counts} == {1}
    assert sum(lp["skipped"] for lp in result.loops) >= before - 8  # finished before the kill: not run again
    assert query(db, "SELECT DISTINCT status FROM runs ORDER BY status") == [{"status": "failed"}, {"status": "passed"}]
