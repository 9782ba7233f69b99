"""Ledger query speed on a large ledger: the CLI's query functions against the equivalent raw SQL.

    .venv/bin/python bench/ledger.py                 # builds 1,000,000 calls in a temp dir
    .venv/bin/python bench/ledger.py --calls 200000  # smaller, quicker
    .venv/bin/python bench/ledger.py --keep PATH     # build (or reuse) the ledger at PATH

Builds the ledger with the project's own writer (`Ledger.save_spec`, `Ledger.start_batch`, and the
insert path `Ledger.write()` + `Ledger._insert` that `Ledger.commit` uses, batched into large
transactions), then times, each against raw SQL answering the same question in the same run:

- `cost --since 7d --by model`  → `loopkit.ledger.costs.cost_report`
- `runs --limit 50`             → `loopkit.ledger.queries.list_runs`
- `diff A B` of two 10,000-case batches → `loopkit.ledger.diffs.diff`

and, for reference, the same three commands end to end through the `loopkit` console script.
Target: each API time ≤ raw + 0.4 s. Prints the figures and the ratios (best of N runs each).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from loopkit.ledger import Ledger
from loopkit.ledger.costs import cost_report
from loopkit.ledger.diffs import diff
from loopkit.ledger.queries import list_runs
from loopkit.timewindow import parse_time, to_iso

MODELS = [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.5, 10.0), ("claude-3-5-sonnet", 3.0, 15.0),
          ("openai/llama-3.1-8b", 0.05, 0.08), ("loopkit/scripted", 0.0, 0.0)]
SPECS = ["taxes", "summarize", "triage", "extract-invoice", "fix-code", "word-problems", "tickets", "translate"]
STATUSES = ["passed"] * 7 + ["failed"] * 2 + ["needs_review"]
DIFF_CASES = 10_000
DAYS = 30
CACHED_SHARE = 0.15


def _hex(rng: random.Random) -> str:
    return "%032x" % rng.getrandbits(128)


class Builder:
    """Writes batches of runs with 1–2 iterations of (worker + judge) calls, spread over DAYS days."""

    def __init__(self, ledger: Ledger, rng: random.Random, now: datetime) -> None:
        self.ledger = ledger
        self.rng = rng
        self.now = now
        self.calls = 0
        self.runs: list[dict[str, Any]] = []
        self.call_rows: list[dict[str, Any]] = []
        self.recent_keys: list[str] = []

    def flush(self) -> None:
        with self.ledger.write() as conn:
            self.ledger._insert(conn, "runs", self.runs)
            self.ledger._insert(conn, "calls", self.call_rows)
        self.runs, self.call_rows = [], []

    def batch(self, spec_name: str, spec_hash: str, start: datetime, n_runs: int, *, fail: set[str] | None = None,
              case_prefix: str = "case", stop_at_calls: int | None = None) -> str:
        batch_id = self.ledger.start_batch("run", spec_hash, argv=["run", f"{spec_name}.yaml"], tags={}, options={})
        rng = self.rng
        t = start
        for i in range(n_runs):
            if stop_at_calls is not None and self.calls >= stop_at_calls:
                break
            case_id = f"{case_prefix}-{i}"
            iterations = 1 if rng.random() < 0.6 else 2
            status = ("failed" if case_id in fail else "passed") if fail is not None else rng.choice(STATUSES)
            run_id = _hex(rng)
            run_cost, pt_sum, ct_sum = 0.0, 0, 0
            started = t
            for n in range(1, iterations + 1):
                for role in ("worker", "judge"):
                    model, pin, pout = MODELS[rng.randrange(len(MODELS))] if role == "worker" else MODELS[1]
                    pt, ct = rng.randint(200, 2000), rng.randint(20, 600)
                    cached = bool(self.recent_keys) and rng.random() < CACHED_SHARE
                    key = rng.choice(self.recent_keys) if cached else _hex(rng)
                    cost = 0.0 if cached else (pt * pin + ct * pout) / 1e6
                    if not cached:
                        self.recent_keys.append(key)
                        if len(self.recent_keys) > 5000:
                            self.recent_keys = self.recent_keys[-2500:]
                    t += timedelta(milliseconds=rng.randint(5, 400))
                    self.call_rows.append({
                        "id": _hex(rng), "run_id": run_id, "batch_id": batch_id, "iteration": n, "role": role, "model": model,
                        "api_base": None, "messages": json.dumps([{"role": "user", "content": f"{spec_name} case {case_id} #{n}"}]),
                        "response": '{"answer": %d}' % rng.randint(0, 10**6), "prompt_tokens": pt, "completion_tokens": ct,
                        "cost_usd": cost, "latency_ms": 0.0 if cached else float(rng.randint(200, 4000)), "cached": int(cached),
                        "error": None, "cache_key": key, "created_at": to_iso(t)})
                    run_cost += cost
                    pt_sum += pt
                    ct_sum += ct
                    self.calls += 1
            success = status == "passed"
            self.runs.append({
                "id": run_id, "batch_id": batch_id, "spec_hash": spec_hash, "spec_name": spec_name, "variant": None,
                "case_id": case_id, "case_json": json.dumps({"n": i}), "repeat": 0, "status": status,
                "stop_reason": "passed" if success else ("human" if status == "needs_review" else "max_iterations"),
                "success": int(success), "reward": 1.0 if success else round(rng.random() * 0.8, 3), "iterations": iterations,
                "best_iteration": iterations, "output": '{"answer": 42}', "cost_usd": run_cost, "prompt_tokens": pt_sum,
                "completion_tokens": ct_sum, "started_at": to_iso(started), "ended_at": to_iso(t), "message": None,
                "suspect": None, "state": None})
            if len(self.call_rows) >= 50_000:
                self.flush()
        self.flush()
        with self.ledger.write() as conn:
            conn.execute("UPDATE batches SET status='done', started_at=?, ended_at=?, "
                         "cost_usd=(SELECT TOTAL(cost_usd) FROM calls WHERE batch_id=?) WHERE id=?",
                         (to_iso(start), to_iso(t), batch_id, batch_id))
        return batch_id


def build(path: Path, total_calls: int, seed: int = 7) -> tuple[str, str]:
    """A ledger of about `total_calls` calls; returns the two 10,000-case batches to diff."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with Ledger(path) as ledger:
        hashes = {}
        for name in SPECS + ["bench-v2"]:
            text = f"version: 1\nname: {name}\nmodel: gpt-4o-mini\ntask: {{prompt: 'solve {{{{ case.n }}}}'}}\n"
            hashes[name] = _hex(rng)[:16]
            ledger.save_spec(hashes[name], name, f"{name}.yaml", text)
        b = Builder(ledger, rng, now)
        # The two batches `diff` compares: the same 10,000 cases; B regresses 500 of A's passes and fixes 200 of its failures.
        fail_a = {f"case-{i}" for i in range(0, DIFF_CASES, 10)}
        fail_b = {f"case-{i}" for i in range(5, DIFF_CASES, 20)} | set(sorted(fail_a)[:800])
        batch_a = b.batch("taxes", hashes["taxes"], now - timedelta(hours=30), DIFF_CASES, fail=fail_a)
        batch_b = b.batch("taxes", hashes["bench-v2"], now - timedelta(hours=20), DIFF_CASES, fail=fail_b)
        # The rest: batches of 2,000 runs (about 2.8 calls each) spread over DAYS days, up to total_calls.
        batches = max(1, round((total_calls - b.calls) / (2000 * 2.8)))
        k = 0
        while b.calls < total_calls:
            start = now - timedelta(days=DAYS) + timedelta(seconds=min(k, batches - 1) * DAYS * 86400 / batches)
            name = SPECS[k % len(SPECS)]
            b.batch(name, hashes[name], start, 2000, case_prefix=f"{name}-case", stop_at_calls=total_calls)
            if k % 20 == 0:
                print(f"  … {b.calls:,} calls", file=sys.stderr)
            k += 1
    return batch_a, batch_b


def best_of(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def raw(ledger: Ledger, sql: str, args: list[Any] | tuple[Any, ...]) -> Callable[[], Any]:
    return lambda: ledger.conn.execute(sql, args).fetchall()


RAW_COST = ("SELECT model, COUNT(*), TOTAL(cost_usd), TOTAL(prompt_tokens), TOTAL(completion_tokens), SUM(cached = 1) "
            "FROM calls WHERE created_at >= ? GROUP BY model")
RAW_COST_SAVED = ("SELECT model, role, COUNT(*), TOTAL(cost_usd), TOTAL(prompt_tokens), TOTAL(completion_tokens), SUM(cached = 1), "
                  "TOTAL(CASE WHEN cached = 1 THEN (SELECT o.cost_usd FROM calls o WHERE o.cache_key = c.cache_key "
                  "AND o.cached = 0 LIMIT 1) END) FROM calls c WHERE created_at >= ? GROUP BY model, role")
RAW_RUNS = "SELECT * FROM runs ORDER BY started_at DESC LIMIT 50"
RAW_DIFF = [
    ("SELECT case_id, repeat, MAX(CASE WHEN batch_id = ?1 THEN success END) AS a_success, "
     "MAX(CASE WHEN batch_id = ?2 THEN success END) AS b_success, MAX(CASE WHEN batch_id = ?1 THEN status END), "
     "MAX(CASE WHEN batch_id = ?2 THEN status END), MAX(CASE WHEN batch_id = ?1 THEN reward END), "
     "MAX(CASE WHEN batch_id = ?2 THEN reward END), MAX(CASE WHEN batch_id = ?1 THEN cost_usd END), "
     "MAX(CASE WHEN batch_id = ?2 THEN cost_usd END) FROM runs WHERE batch_id IN (?1, ?2) GROUP BY case_id, repeat "
     "ORDER BY (a_success = 1 AND COALESCE(b_success, 0) = 0) DESC"),
    ("SELECT batch_id, COUNT(*), AVG(success), AVG(reward), TOTAL(cost_usd), AVG(iterations) FROM runs "
     "WHERE batch_id IN (?1, ?2) GROUP BY batch_id"),
    "SELECT batch_id, TOTAL(latency_ms) FROM calls WHERE batch_id IN (?1, ?2) GROUP BY batch_id",
    "SELECT hash, yaml FROM specs WHERE hash IN (SELECT spec_hash FROM batches WHERE id IN (?1, ?2))",
]


def cli_time(args: list[str], path: Path, n: int = 3) -> float:
    exe = Path(sys.executable).with_name("loopkit")
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([str(exe), *args, "--ledger", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=False)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Build (or reuse) the ledger at this path instead of a temp dir.")
    parser.add_argument("--repeat", type=int, default=5, help="Best of this many timings each.")
    opts = parser.parse_args()

    tmp = None
    if opts.keep:
        path = opts.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="loopkit-bench-")
        path = Path(tmp.name) / "ledger.db"
    meta = path.with_suffix(".bench.json")
    if path.exists() and meta.exists():
        batch_a, batch_b = json.loads(meta.read_text())
        print(f"reusing {path}")
    else:
        t0 = time.perf_counter()
        batch_a, batch_b = build(path, opts.calls)
        meta.write_text(json.dumps([batch_a, batch_b]))
        print(f"built {path} in {time.perf_counter() - t0:.1f} s")

    ledger = Ledger(path, readonly=True)
    n_calls = ledger.one("SELECT COUNT(*) AS n FROM calls")["n"]  # type: ignore[index]
    n_runs = ledger.one("SELECT COUNT(*) AS n FROM runs")["n"]  # type: ignore[index]
    size = path.stat().st_size / 1e6
    since = to_iso(parse_time("7d"))
    in_window = ledger.one("SELECT COUNT(*) AS n FROM calls WHERE created_at >= ?", (since,))["n"]  # type: ignore[index]
    print(f"ledger: {n_calls:,} calls, {n_runs:,} runs, {size:,.0f} MB; {in_window:,} calls in the last 7 days")
    print(f"python {sys.version.split()[0]}, sqlite {__import__('sqlite3').sqlite_version}, {os.cpu_count()} CPUs\n")

    rows = []

    def compare(name: str, api: Callable[[], Any], raws: list[Callable[[], Any]], check: Callable[[Any], str] = lambda r: "") -> None:
        api_t, result = best_of(api, opts.repeat)
        raw_t = sum(best_of(r, opts.repeat)[0] for r in raws)
        rows.append((name, api_t, raw_t))
        print(f"{name:34} api {api_t * 1000:8.1f} ms   raw SQL {raw_t * 1000:8.1f} ms   "
              f"api − raw {(api_t - raw_t) * 1000:+8.1f} ms   ratio {api_t / raw_t if raw_t else float('nan'):5.2f}  {check(result)}")

    compare("cost --since 7d --by model", lambda: cost_report(ledger, since=since, by="model"), [raw(ledger, RAW_COST, (since,))],
            lambda r: f"({r['total']['calls']:,} calls, ${r['total']['cost_usd']:,.2f})")
    compare("  (raw incl. saved-cost estimate)", lambda: cost_report(ledger, since=since, by="model"),
            [raw(ledger, RAW_COST_SAVED, (since,))])
    compare("runs --limit 50", lambda: list_runs(ledger, limit=50), [raw(ledger, RAW_RUNS, ())], lambda r: f"({len(r)} runs)")
    compare("diff (2 × 10,000-case batches)", lambda: diff(path, batch_a, batch_b),
            [raw(ledger, sql, (batch_a, batch_b)) for sql in RAW_DIFF],
            lambda r: f"({len(r['cases']):,} cases, {r['regressions']} regressions, {r['changes']['fix']} fixes)")
    ledger.close()

    print("\nend to end through the console script (process start included, best of 3):")
    for label, args in (("loopkit runs --limit 50", ["runs", "--limit", "50"]),
                        ("loopkit cost --since 7d --by model", ["cost", "--since", "7d", "--by", "model"]),
                        ("loopkit diff A B --json", ["diff", batch_a, batch_b, "--json"]),
                        ("loopkit --help", ["--help"])):
        print(f"{label:34} {cli_time(args, path) * 1000:8.1f} ms")

    worst = max(api - raw_t for _, api, raw_t in rows)
    print(f"\nworst api − raw: {worst * 1000:+.1f} ms (target ≤ +400 ms): {'OK' if worst <= 0.4 else 'OVER'}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
