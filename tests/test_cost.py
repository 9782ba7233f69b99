"""`loopkit cost` and the time windows of `cost` and `runs` (`--since` / `--until`, local time, exclusive end)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from loopkit.api import run_batch
from loopkit.batch import BatchOptions
from loopkit.ledger import Ledger
from loopkit.spec import parse_spec
from loopkit.timewindow import parse_time, to_iso

SPEC = """\
version: 1
name: {name}
model: {{id: loopkit/scripted, price: {{input_per_mtok: 1, output_per_mtok: 2}}, replies: ["ok {name}"]}}
params: {{max_tokens: 40}}
task: {{prompt: "Say ok to {{{{ case.id }}}}"}}
inputs: [{cases}]
checkers:
  - {{name: says_ok, type: contains, expected: "ok"}}
  - name: review
    type: judge
    rubric: Is it polite?
    model: {{id: loopkit/scripted, price: {{input_per_mtok: 3, output_per_mtok: 4}}, replies: ['{{"score": 1, "reason": "fine"}}']}}
stop: {{max_iterations: 1}}
"""


def _spec(name: str, n: int, path: Path):
    text = SPEC.format(name=name, cases=", ".join(f"{{id: c{i}}}" for i in range(n)))
    return parse_spec(text, path=path / f"{name}.yaml")


# --- a ledger whose runs and calls sit at known times --------------------------------------


@pytest.fixture(scope="module")
def local_noon():
    """A time zone where it is about noon now, so no test time sits near a local midnight, and
    local days differ from UTC days (TZ is restored afterwards)."""
    now = datetime.now(timezone.utc)
    shift = 12 - now.hour or -1  # local = UTC + shift hours, never 0
    saved = os.environ.get("TZ")
    os.environ["TZ"] = f"LKT{-shift:+d}"
    time.tzset()
    yield os.environ["TZ"]
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


class Timed:
    """Ten one-iteration runs (worker + judge call each), moved to ten known times."""

    def __init__(self, root: Path) -> None:
        self.path = root / "timed.db"
        self.now = now = datetime.now(timezone.utc)
        today, yesterday = parse_time("today", now=now), parse_time("yesterday", now=now)
        offsets = [now - timedelta(minutes=10), now - timedelta(minutes=90), now - timedelta(hours=3),
                   today + timedelta(minutes=30), today - timedelta(minutes=30), yesterday + timedelta(hours=12),
                   now - timedelta(days=4), now - timedelta(days=10), now - timedelta(days=20), now - timedelta(days=40)]
        with Ledger(self.path) as ledger:
            run_batch(_spec("quiz", 10, root), ledger=ledger, options=BatchOptions(concurrency=1))
        with sqlite3.connect(self.path) as conn:
            for i, at in enumerate(offsets):
                (run_id,) = conn.execute("SELECT id FROM runs WHERE case_id=?", (f"c{i}",)).fetchone()
                conn.execute("UPDATE runs SET started_at=?, ended_at=? WHERE id=?", (to_iso(at), to_iso(at + timedelta(seconds=1)), run_id))
                conn.execute("UPDATE calls SET created_at=? WHERE run_id=? AND role='worker'", (to_iso(at + timedelta(milliseconds=1)), run_id))
                conn.execute("UPDATE calls SET created_at=? WHERE run_id=? AND role='judge'", (to_iso(at + timedelta(milliseconds=2)), run_id))
                if i < 5:  # half the workers on another model, for --by model
                    conn.execute("UPDATE calls SET model='gpt-4o-mini' WHERE run_id=? AND role='worker'", (run_id,))
            self.calls = [dict(zip(("case", "created_at", "cost", "role", "model"), row)) for row in conn.execute(
                "SELECT r.case_id, c.created_at, c.cost_usd, c.role, c.model FROM calls c JOIN runs r ON r.id = c.run_id")]
            self.runs = dict(conn.execute("SELECT case_id, started_at FROM runs"))

    def expected(self, since: str | None, until: str | None) -> tuple[set[str], list[dict]]:
        lo = to_iso(parse_time(since, now=self.now)) if since else ""
        hi = to_iso(parse_time(until, now=self.now)) if until else "~"
        runs = {case for case, at in self.runs.items() if lo <= at < hi}
        return runs, [c for c in self.calls if lo <= c["created_at"] < hi]


@pytest.fixture(scope="module")
def timed(tmp_path_factory, local_noon) -> Timed:
    return Timed(tmp_path_factory.mktemp("cost"))


def _windows(now: datetime) -> list[tuple[str | None, str | None]]:
    local = now.astimezone()
    return [
        ("now", None), ("30m", None), ("2h", None), ("today", None), ("yesterday", None), ("7d", None), ("2w", None),
        ((local - timedelta(days=5)).date().isoformat(), None),  # an ISO date: local midnight
        ((local - timedelta(hours=36)).strftime("%Y-%m-%dT%H:%M"), None),  # an ISO date-time, local
        ((now - timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ"), None),  # UTC
        ((now - timedelta(days=15)).astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(timespec="seconds"), None),
        (None, "today"), (None, "2h"), (None, "7d"),  # --until is exclusive
        ("2w", "7d"), ("yesterday", "today"), ("7d", "30m"),
    ]


def test_every_time_window_form_selects_the_same_calls_and_runs(cli, timed):
    for since, until in _windows(timed.now):
        args = (["--since", since] if since else []) + (["--until", until] if until else [])
        want_runs, want_calls = timed.expected(since, until)
        done = cli("cost", *args, "--json", "--ledger", str(timed.path))
        assert done.returncode == 0, (args, done.stderr)
        report = json.loads(done.stdout)
        assert report["total"]["calls"] == len(want_calls), args
        assert report["total"]["cost_usd"] == pytest.approx(sum(c["cost"] for c in want_calls)), args
        for given, shown in ((since, report["since"]), (until, report["until"])):
            assert (shown is None) == (given is None)
            if given in ("today", "yesterday") or given and "-" in given:  # absolute: the same instant exactly
                assert shown == to_iso(parse_time(given, now=timed.now)), given
        listed = cli("runs", *args, "--limit", "100", "--json", "--ledger", str(timed.path))
        assert listed.returncode == 0, (args, listed.stderr)
        rows = json.loads(listed.stdout)
        assert {r["case_id"] for r in rows} == want_runs, args
        assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)  # newest first
    # the windows above are not all trivially empty or full
    sizes = {len(timed.expected(s, u)[0]) for s, u in _windows(timed.now)}
    assert len(sizes) >= 6 and 0 in sizes


def test_by_model_splits_the_spend_and_sums_to_the_total(cli, timed):
    report = json.loads(cli("cost", "--by", "model", "--json", "--ledger", str(timed.path)).stdout)
    groups = {g["key"]: g for g in report["groups"]}
    assert set(groups) == {"gpt-4o-mini", "loopkit/scripted"}
    for model, group in groups.items():
        mine = [c for c in timed.calls if c["model"] == model]
        assert group["calls"] == len(mine) and group["cost_usd"] == pytest.approx(sum(c["cost"] for c in mine))
        assert group["worker_usd"] + group["judge_usd"] == pytest.approx(group["cost_usd"])
    assert groups["gpt-4o-mini"]["judge_usd"] == 0 and groups["gpt-4o-mini"]["calls"] == 5
    spends = [g["cost_usd"] for g in report["groups"]]
    assert spends == sorted(spends, reverse=True)
    assert sum(spends) == pytest.approx(report["total"]["cost_usd"])


def test_by_day_uses_local_calendar_days(cli, timed):
    report = json.loads(cli("cost", "--by", "day", "--json", "--ledger", str(timed.path)).stdout)
    local_days: dict[str, int] = {}
    utc_days: dict[str, int] = {}
    for c in timed.calls:
        at = datetime.strptime(c["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        local_days[at.astimezone().date().isoformat()] = local_days.get(at.astimezone().date().isoformat(), 0) + 1
        utc_days[at.date().isoformat()] = utc_days.get(at.date().isoformat(), 0) + 1
    assert {g["key"]: g["calls"] for g in report["groups"]} == local_days
    assert local_days != utc_days  # the runs either side of local midnight tell the two apart
    text = cli("cost", "--by", "day", "--since", "2w", "--ledger", str(timed.path)).stdout
    assert "by day" in text and "total" in text and timed.now.astimezone().date().isoformat() in text


def test_bad_times_and_groupings_are_usage_errors_listing_the_accepted_forms(cli, timed):
    for args in (["cost", "--since", "last tuesday"], ["cost", "--until", "3x"], ["runs", "--since", "2026-13-45"],
                 ["runs", "--until", "soon"]):
        done = cli(*args, "--ledger", str(timed.path))
        assert done.returncode == 2, args
        assert "today, yesterday" in done.stderr and "2026-11-20T14:30" in done.stderr and done.stdout == ""
    done = cli("cost", "--by", "week", "--ledger", str(timed.path))
    assert done.returncode == 2 and "model, spec, day, batch" in done.stderr
    missing = cli("cost", "--ledger", str(timed.path.with_name("nothing-here.db")))
    assert missing.returncode == 2 and "no ledger here yet" in missing.stderr
    assert not timed.path.with_name("nothing-here.db").exists()


# --- cached calls, worker and judge, spec and batch ---------------------------------------------


class Cached:
    """quiz run twice (the second batch answered from the cache), other run once."""

    def __init__(self, root: Path) -> None:
        self.path = root / "cached.db"
        with Ledger(self.path) as ledger:
            self.first = run_batch(_spec("quiz", 4, root), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.second = run_batch(_spec("quiz", 4, root), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.other = run_batch(_spec("other", 3, root), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.cost = {r["batch_id"]: r["c"] for r in ledger.query("SELECT batch_id, SUM(cost_usd) AS c FROM calls GROUP BY batch_id")}
            self.role_cost = {r["role"]: r["c"] for r in ledger.query("SELECT role, SUM(cost_usd) AS c FROM calls GROUP BY role")}


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> Cached:
    return Cached(tmp_path_factory.mktemp("cached"))


def test_cached_calls_cost_nothing_and_save_what_their_original_cost(cli, cached):
    report = json.loads(cli("cost", "--json", "--ledger", str(cached.path)).stdout)
    total = report["total"]
    assert total["calls"] == 8 + 8 + 6 and total["cached_calls"] == 8 and total["cached_without_original"] == 0
    assert cached.cost[cached.second] == 0
    assert total["cost_usd"] == pytest.approx(cached.cost[cached.first] + cached.cost[cached.other])
    assert total["saved_usd"] == pytest.approx(cached.cost[cached.first])
    assert report["roles"]["worker"]["cost_usd"] == pytest.approx(cached.role_cost["worker"])
    assert report["roles"]["judge"]["cost_usd"] == pytest.approx(cached.role_cost["judge"])
    assert report["roles"]["worker"]["calls"] == report["roles"]["judge"]["calls"] == 11
    assert total["prompt_tokens"] > 0 and total["completion_tokens"] > 0
    assert "original" in report["saved_estimate"]
    text = cli("cost", "--ledger", str(cached.path)).stdout
    assert "worker $" in text and "judge $" in text and "cached 8 calls, saved ≈" in text and "22 calls" in text


def test_by_spec_and_by_batch(cli, cached):
    by_spec = json.loads(cli("cost", "--by", "spec", "--json", "--ledger", str(cached.path)).stdout)
    groups = {g["key"]: g for g in by_spec["groups"]}
    assert groups["quiz"]["cost_usd"] == pytest.approx(cached.cost[cached.first]) and groups["quiz"]["cached_calls"] == 8
    assert groups["quiz"]["saved_usd"] == pytest.approx(cached.cost[cached.first])
    assert groups["other"]["calls"] == 6 and groups["other"]["saved_usd"] == 0
    by_batch = json.loads(cli("cost", "--by", "batch", "--json", "--ledger", str(cached.path)).stdout)
    keys = [g["key"] for g in by_batch["groups"]]
    assert set(keys) == {cached.first, cached.second, cached.other} and keys[-1] == cached.second  # by spend: the cached one last
    second = by_batch["groups"][-1]
    assert second["cost_usd"] == 0 and second["saved_usd"] == pytest.approx(cached.cost[cached.first])
    assert second["spec_name"] == "quiz" and second["batch_kind"] == "run"
    text = cli("cost", "--by", "batch", "--ledger", str(cached.path)).stdout
    assert cached.second[:10] in text and "total" in text and "quiz" in text


def test_json_is_one_document_from_the_console_script(cli_proc, cached):
    done = cli_proc("cost", "--since", "2w", "--by", "spec", "--json", "--ledger", str(cached.path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert set(report) == {"since", "until", "by", "total", "roles", "groups", "saved_estimate"}


def _as_before_m011(path: Path) -> None:
    """The ledger as a loopkit before `calls.saved_usd` left it."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX idx_calls_created_saved")
        conn.execute("ALTER TABLE calls DROP COLUMN saved_usd")
        conn.execute("CREATE INDEX idx_calls_created_cost ON calls "
                     "(created_at, model, role, cost_usd, prompt_tokens, completion_tokens, cached, error)")
        conn.execute("CREATE INDEX idx_calls_cached_created_at ON calls (created_at) WHERE cached = 1")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm011_calls_saved_usd'")


def test_savings_are_priced_when_recorded_and_an_older_ledger_reads_and_migrates_to_the_same(cli, cached, tmp_path):
    with Ledger(cached.path, readonly=True) as ledger:
        priced = ledger.query("SELECT c.saved_usd, o.cost_usd FROM calls c JOIN calls o ON o.cache_key = c.cache_key AND o.cached = 0 "
                              "WHERE c.cached = 1")
    assert len(priced) == 8 and all(p["saved_usd"] == p["cost_usd"] > 0 for p in priced)  # each its own original's price
    want = json.loads(cli("cost", "--by", "batch", "--json", "--ledger", str(cached.path)).stdout)

    old = tmp_path / "old.db"
    old.write_bytes(cached.path.read_bytes())
    _as_before_m011(old)
    with sqlite3.connect(old) as conn:  # a key paid twice: a copy saved what the dearer original cost
        conn.execute("INSERT INTO calls (id, run_id, batch_id, role, model, cost_usd, cached, cache_key, created_at) "
                     "SELECT 'dearer', run_id, batch_id, role, model, cost_usd + 1, 0, cache_key, created_at FROM calls "
                     "WHERE cached = 0 AND cache_key = (SELECT cache_key FROM calls WHERE cached = 1 LIMIT 1)")
    read = json.loads(cli("cost", "--by", "batch", "--json", "--ledger", str(old)).stdout)  # read as it is, not migrated
    assert "saved_usd" not in {r[1] for r in sqlite3.connect(old).execute("PRAGMA table_info(calls)")}
    assert read["total"]["saved_usd"] == pytest.approx(want["total"]["saved_usd"] + 1)
    assert read["total"]["cached_without_original"] == 0
    Ledger(old).close()  # a write-open migrates it
    migrated = json.loads(cli("cost", "--by", "batch", "--json", "--ledger", str(old)).stdout)
    assert migrated["total"] == read["total"] and migrated["groups"] == read["groups"]
    with sqlite3.connect(old) as conn:
        assert conn.execute("SELECT COUNT(saved_usd) FROM calls").fetchone()[0] == 8


def test_a_cached_call_without_its_original_saves_nothing_and_is_counted(cli, cached, tmp_path):
    orphaned = tmp_path / "orphaned.db"
    orphaned.write_bytes(cached.path.read_bytes())
    _as_before_m011(orphaned)
    with sqlite3.connect(orphaned) as conn:
        conn.execute("DELETE FROM calls WHERE batch_id = ?", (cached.first,))
    Ledger(orphaned).close()
    report = json.loads(cli("cost", "--json", "--ledger", str(orphaned)).stdout)
    assert report["total"]["cached_calls"] == 8 and report["total"]["cached_without_original"] == 8
    assert report["total"]["saved_usd"] == 0
    shown = cli("show", cached.second[:10], "--ledger", str(orphaned))
    assert shown.returncode == 0, shown.stderr
    assert "(and 8 whose original call was not in the ledger)" in shown.stdout
