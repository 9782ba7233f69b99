"""The query commands on a large ledger, as users run them, against raw SQL answering the same question.

    .venv/bin/python bench/ledger.py                          # 200,000 calls, built in a temp dir
    .venv/bin/python bench/ledger.py --calls 1000000 --keep /tmp/ledger-1m.db   # the README's figures

Builds the ledger through loopkit's own commit path: specs and batches through `Ledger.save_spec`,
`start_batch` and `finish_batch`, and every run step through the recorder a batch uses (the ledger's
writer when it has one, else `Ledger.commit`): runs with their case and state JSON, 1–3 iterations
with a worker call each (the conversation growing), a judge call on most, 2–3 checks per iteration,
escalation, audit and budget events, 15 % of calls answered from the cache, call and cache keys —
about 1.8 KB per call, like a real ledger. The run steps are spread over 30 days; two batches of
10,000 cases (the second regresses 500 and fixes 200 of the first's) are the ones `diff` compares
and `show` shows.

Then, in alternating rounds (command, its raw SQL, command, …), runs each command through the
`loopkit` console script and, as its baseline, a plain `python` + sqlite3 process running the raw
SQL that answers the same question (rows fetched, nothing printed), and takes each child's CPU time
(user + system, from `os.wait4`). Prints medians. Targets: each command <= 0.25 s of CPU and
<= its raw SQL + 0.15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import run_child  # noqa: E402 - the CPU and RSS of one child process, next to this file

from loopkit.ledger import Ledger  # noqa: E402
from loopkit.records import CallRecord, CheckRecord, EventRecord, IterationRecord, RunInfo, RunResult, RunState  # noqa: E402
from loopkit.spec import ModelRef  # noqa: E402
from loopkit.timewindow import to_iso  # noqa: E402

LOOPKIT = Path(sys.executable).with_name("loopkit")
MODELS = [("gpt-4o-mini", 0.15, 0.60), ("gpt-4o", 2.5, 10.0), ("claude-3-5-sonnet", 3.0, 15.0),
          ("openai/llama-3.1-8b", 0.05, 0.08)]
JUDGE = ("gpt-4o-mini", 0.15, 0.60)
SPECS = ["taxes", "summarize", "triage", "extract-invoice", "fix-code", "word-problems", "tickets", "translate"]
DIFF_CASES = 10_000
DAYS = 30
CACHED_SHARE = 0.15
TARGET_CPU = 0.25
TARGET_OVER_RAW = 0.15
WORDS = ("the invoice total tax refund customer export failed timeout retry account march figures team owner amount "
         "summary line answer because reason step value field date vendor ticket priority").split()


def _hex(rng: random.Random) -> str:
    return "%032x" % rng.getrandbits(128)


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def _recorder(ledger: Ledger) -> Any:
    """What a batch records through: the ledger's writer (group commits) when it has one, else the ledger."""
    make = getattr(ledger, "writer", None)
    return make() if callable(make) else ledger


class Builder:
    """Writes batches of runs through the recorder, step by step, as a batch would."""

    def __init__(self, ledger: Ledger, rng: random.Random) -> None:
        self.ledger = ledger
        self.rng = rng
        self.calls = 0
        self.recent_keys: list[tuple[str, str, int, int]] = []  # (cache key, response, prompt, completion tokens)

    def _call(self, run_id: str, n: int, role: str, model: tuple[str, float, float], messages: list[dict[str, str]],
              at: datetime) -> CallRecord:
        rng = self.rng
        cached = bool(self.recent_keys) and rng.random() < CACHED_SHARE
        if cached:
            key, response, pt, ct = rng.choice(self.recent_keys)
            cost, latency = 0.0, 0.0
        else:
            key = "%064x" % rng.getrandbits(256)
            response = (_text(rng, rng.randint(10, 120)) if role == "worker" else
                        json.dumps({"score": round(rng.random(), 2), "reason": _text(rng, rng.randint(20, 60))}))
            pt = sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)
            ct = max(1, len(response) // 4)
            cost, latency = (pt * model[1] + ct * model[2]) / 1e6, float(rng.randint(200, 4000))
            self.recent_keys.append((key, response, pt, ct))
            if len(self.recent_keys) > 5000:
                self.recent_keys = self.recent_keys[-2500:]
        self.calls += 1
        return CallRecord(_hex(rng), n, role, model[0], messages, response, pt, ct, cost, latency, cached, None, key, key, None,
                          created_at=to_iso(at))

    def run(self, recorder: Any, batch_id: str, spec_name: str, spec_hash: str, case_id: str, at: datetime, *,
            passes: bool | None) -> datetime:
        """One run, step by step; returns when it ended."""
        rng = self.rng
        model = MODELS[rng.randrange(len(MODELS))]
        ref = ModelRef(id=model[0], params={"max_tokens": 600})
        case = {"id": case_id, "question": _text(rng, rng.randint(40, 120)), "expected": str(rng.randint(0, 10**6))}
        info = RunInfo(_hex(rng), batch_id, spec_hash, spec_name, case_id, case, 0, None, started_at=to_iso(at))
        final_pass = rng.random() < 0.7 if passes is None else passes
        iterations = 1 if final_pass and rng.random() < 0.6 else rng.randint(2, 3)
        judged = rng.random() < 0.6
        state = RunState(model=ref)
        conversation = [{"role": "system", "content": f"You solve {spec_name} tasks. Answer with the value only."},
                        {"role": "user", "content": f"Question: {case['question']}"}]
        events: list[EventRecord] = []
        started = True
        for n in range(1, iterations + 1):
            at += timedelta(milliseconds=rng.randint(50, 900))
            calls = [self._call(info.id, n, "worker", model, list(conversation), at)]
            output = calls[0].response or ""
            passed = final_pass and n == iterations
            checks = [CheckRecord("exact", float(passed), passed, "" if passed else f"expected exactly {case['expected']!r}, got "
                                  f"{output[:60]!r}", False, 1.0),
                      CheckRecord("format", 1.0, True, "", False, 0.5)]
            if judged:
                at += timedelta(milliseconds=rng.randint(50, 600))
                calls.append(self._call(info.id, n, "judge", JUDGE, [{"role": "user", "content": "Grade this answer to: "
                                        f"{case['question']}\n\nAnswer: {output}\n\nReply with JSON."}], at))
                checks.append(CheckRecord("judge", round(rng.random(), 2), passed, "" if passed else _text(rng, 50), True, 1.0))
            reward = 1.0 if passed else round(rng.random() * 0.8, 3)
            feedback = "\n".join(f"- {c.checker}: {c.feedback}" for c in checks if not c.passed and c.feedback)
            if not passed and rng.random() < 0.05:
                events.append(EventRecord("audit_failed", {"iteration": n, "checkers": ["judge"]}, created_at=to_iso(at)))
            if n == 2 and rng.random() < 0.2:
                events.append(EventRecord("escalation", {"rule": 0, "iteration": n, "from": model[0], "to": "gpt-4o"},
                                          created_at=to_iso(at)))
            conversation = conversation + [{"role": "assistant", "content": output}]
            state.iterations, state.messages, state.last_output, state.last_feedback = n, conversation, output, feedback
            state.rewards.append(reward)
            if reward >= state.best_reward:
                state.best_iteration, state.best_reward, state.best_output = n, reward, output
            state.cost_usd += sum(c.cost_usd for c in calls)
            state.prompt_tokens += sum(c.prompt_tokens for c in calls)
            state.completion_tokens += sum(c.completion_tokens for c in calls)
            state.elapsed_seconds += rng.random() * 3
            last = n == iterations
            status = "passed" if passed else ("failed" if last else "running")
            if last and not passed and rng.random() < 0.03:
                events.append(EventRecord("budget_stop", {"reason": "budget_usd", "detail": "the next call could cost $0.0100"},
                                          created_at=to_iso(at)))
            result = RunResult(info.id, status, ("passed" if passed else "max_iterations") if last else None, passed, state.best_reward,
                               n, state.best_iteration, state.best_output, state.cost_usd, state.prompt_tokens,
                               state.completion_tokens, state, ended_at=to_iso(at) if last else None)
            record = IterationRecord(n, model[0], output, reward, passed, feedback, sum(c.cost_usd for c in calls),
                                     sum(c.prompt_tokens for c in calls), sum(c.completion_tokens for c in calls),
                                     sum(c.latency_ms for c in calls), checks, created_at=to_iso(at))
            recorder.commit(result, record, calls, events, start=info if started else None)
            started, events = False, []
            if not last:
                conversation = conversation + [{"role": "user", "content": f"Try again:\n{feedback}"}]
        return at

    def batch(self, spec_name: str, spec_hash: str, start: datetime, runs: int, *, fail: set[str] | None = None,
              case_prefix: str = "case", stop_at_calls: int | None = None) -> str:
        batch_id = self.ledger.start_batch("run", spec_hash, argv=["run", f"{spec_name}.yaml"], tags={}, options={})
        recorder = _recorder(self.ledger)
        at = start
        try:
            for i in range(runs):
                if stop_at_calls is not None and self.calls >= stop_at_calls:
                    break
                case_id = f"{case_prefix}-{i}"
                at = self.run(recorder, batch_id, spec_name, spec_hash, case_id, at,
                              passes=None if fail is None else case_id not in fail)
        finally:
            if recorder is not self.ledger:
                recorder.close()
        self.ledger.finish_batch(batch_id, "done")
        with self.ledger.write() as conn:  # the batch's own times, as if it had run then (bench only)
            conn.execute("UPDATE batches SET started_at=?, ended_at=? WHERE id=?", (to_iso(start), to_iso(at), batch_id))
        return batch_id


def build(path: Path, total_calls: int, seed: int = 7) -> dict[str, str]:
    """A ledger of about `total_calls` calls; returns the two 10,000-case batches to diff."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with Ledger(path) as ledger:
        hashes = {}
        for name in SPECS + ["taxes-v2"]:
            text = (f"name: {name}\nmodel: {{id: gpt-4o-mini}}\nparams: {{max_tokens: 600}}\n"
                    f"task: {{prompt: 'Question: {{{{ case.question }}}}'}}\ninputs: cases.jsonl\n"
                    "checkers:\n  - {name: exact, type: equals, expected: '{{ case.expected }}'}\n")
            hashes[name] = _hex(rng)[:16]
            ledger.save_spec(hashes[name], name, f"{name}.yaml", text)
        b = Builder(ledger, rng)
        fail_a = {f"case-{i}" for i in range(0, DIFF_CASES, 10)}
        fail_b = {f"case-{i}" for i in range(5, DIFF_CASES, 20)} | set(sorted(fail_a)[:800])
        a = b.batch("taxes", hashes["taxes"], now - timedelta(hours=30), DIFF_CASES, fail=fail_a)
        bb = b.batch("taxes", hashes["taxes-v2"], now - timedelta(hours=20), DIFF_CASES, fail=fail_b)
        per_batch = 2000
        batches = max(1, round((total_calls - b.calls) / (per_batch * 2.6)))
        k = 0
        started = time.perf_counter()
        while b.calls < total_calls:
            at = now - timedelta(days=DAYS) + timedelta(seconds=min(k, batches - 1) * DAYS * 86400 / batches)
            name = SPECS[k % len(SPECS)]
            b.batch(name, hashes[name], at, per_batch, case_prefix=f"{name}-case", stop_at_calls=total_calls)
            k += 1
            if k % 10 == 0:
                rate = b.calls / (time.perf_counter() - started)
                print(f"  … {b.calls:,} calls ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    with sqlite3.connect(str(path)) as conn:  # everything in the main file, so its size is the ledger's
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"a": a, "b": bb}


# --- the questions, as commands and as raw SQL ---------------------------------------------------

RAW_RUNS = ["SELECT * FROM runs ORDER BY started_at DESC LIMIT 50"]
RAW_COST = [
    "SELECT c.model, c.role, COUNT(*), TOTAL(c.cost_usd), TOTAL(c.prompt_tokens), TOTAL(c.completion_tokens), "
    "SUM(c.cached = 1), TOTAL(c.saved_usd), COUNT(c.saved_usd), SUM(c.error IS NOT NULL) FROM calls c "
    "WHERE c.created_at >= :since GROUP BY 1, 2",
]
RAW_SHOW = [
    "SELECT * FROM batches WHERE id >= :a_prefix AND id < :a_next LIMIT 2",
    "SELECT * FROM runs WHERE id >= :a_prefix AND id < :a_next LIMIT 2",
    "SELECT status, stop_reason, COUNT(*), SUM(success), TOTAL(cost_usd) FROM runs WHERE batch_id = :a GROUP BY 1, 2",
    "SELECT id, case_id, (julianday(ended_at) - julianday(started_at)) * 86400.0 AS s FROM runs WHERE batch_id = :a "
    "AND ended_at IS NOT NULL ORDER BY s DESC LIMIT 3",
    "SELECT id, case_id, cost_usd FROM runs WHERE batch_id = :a ORDER BY cost_usd DESC LIMIT 3",
    "SELECT id, case_id, status, stop_reason, reward, iterations, cost_usd, started_at, suspect FROM runs "
    "WHERE batch_id = :a ORDER BY started_at LIMIT 50",
    # the cache line: the batch's calls, each cached one with what it saved (show prints it)
    "SELECT COUNT(*), SUM(c.cached = 1), TOTAL(c.saved_usd), COUNT(c.saved_usd) FROM calls c WHERE c.batch_id = :a",
]
RAW_DIFF = [
    "SELECT * FROM batches WHERE id >= :a_prefix AND id < :a_next LIMIT 2",
    "SELECT * FROM batches WHERE id >= :b_prefix AND id < :b_next LIMIT 2",
    "SELECT case_id, repeat, MAX(CASE WHEN batch_id = :a THEN success END) AS a_success, "
    "MAX(CASE WHEN batch_id = :b THEN success END) AS b_success, MAX(CASE WHEN batch_id = :a THEN status END), "
    "MAX(CASE WHEN batch_id = :b THEN status END), MAX(CASE WHEN batch_id = :a THEN reward END), "
    "MAX(CASE WHEN batch_id = :b THEN reward END), MAX(CASE WHEN batch_id = :a THEN cost_usd END), "
    "MAX(CASE WHEN batch_id = :b THEN cost_usd END) FROM runs WHERE batch_id IN (:a, :b) GROUP BY case_id, repeat "
    "ORDER BY (a_success = 1 AND COALESCE(b_success, 0) = 0) DESC",
    "SELECT batch_id, COUNT(*), AVG(success), AVG(reward), TOTAL(cost_usd), AVG(iterations) FROM runs "
    "WHERE batch_id IN (:a, :b) GROUP BY batch_id",
    "SELECT batch_id, TOTAL(latency_ms) FROM calls WHERE batch_id IN (:a, :b) GROUP BY batch_id",
    "SELECT hash, yaml FROM specs WHERE hash IN (SELECT spec_hash FROM batches WHERE id IN (:a, :b))",
]
RAW_SCRIPT = """
import json, sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
args = json.loads(sys.argv[2])
for sql in json.loads(sys.argv[3]):
    conn.execute(sql, args).fetchall()
"""


def _prefix_range(full: str, chars: int = 10) -> tuple[str, str]:
    """The id range a `chars`-character prefix covers: [prefix, next prefix)."""
    prefix = full[:chars]
    return prefix, format(int(prefix, 16) + 1, f"0{chars}x")


def questions(batches: dict[str, str], since: str) -> list[tuple[str, list[str], list[str]]]:
    """(label, command arguments, raw SQL) for each question."""
    a, b = batches["a"][:10], batches["b"][:10]
    return [
        ("runs", ["runs"], RAW_RUNS),
        ("cost --since 7d --by model", ["cost", "--since", "7d", "--by", "model"], RAW_COST),
        ("show BATCH (10,000 runs)", ["show", a], RAW_SHOW),
        ("diff A B (2 × 10,000 runs)", ["diff", a, b], RAW_DIFF),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="Calls in the ledger (the README's figures: 1000000).")
    parser.add_argument("--keep", type=Path, help="Build (or reuse) the ledger at this path instead of a temp dir.")
    parser.add_argument("--rounds", type=int, default=5, help="Alternating rounds per question; medians are reported.")
    opts = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="loopkit-bench-") if not opts.keep else None
    path = opts.keep or Path(tmp.name) / "ledger.db"  # type: ignore[union-attr]
    meta = path.with_suffix(".bench.json")
    if path.exists() and meta.exists():
        batches = json.loads(meta.read_text())
        print(f"reusing {path}")
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        batches = build(path, opts.calls)
        meta.write_text(json.dumps(batches))
        print(f"built {path} in {time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} CPU-s in this process)")

    since = to_iso(datetime.now(timezone.utc) - timedelta(days=7))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        n_calls, n_runs = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("calls", "runs"))
        n_iter, n_checks, n_events = (conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("iterations", "checks", "events"))
        in_window = conn.execute("SELECT COUNT(*) FROM calls WHERE created_at >= ?", (since,)).fetchone()[0]
    size = path.stat().st_size + (Path(f"{path}-wal").stat().st_size if Path(f"{path}-wal").exists() else 0)
    print(f"ledger: {n_calls:,} calls, {n_runs:,} runs, {n_iter:,} iterations, {n_checks:,} checks, {n_events:,} events; "
          f"{size / 1e6:,.0f} MB = {size / n_calls / 1000:.2f} KB per call; {in_window:,} calls in the last 7 days")
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs; "
          f"{opts.rounds} alternating rounds, medians of each child's CPU time\n")

    args = {"since": since, **batches}
    for key in ("a", "b"):
        args[f"{key}_prefix"], args[f"{key}_next"] = _prefix_range(batches[key])
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    rows = []
    print(f"{'question':30} {'loopkit CPU':>12} {'raw SQL CPU':>12} {'loopkit − raw':>14}")
    for label, argv, sqls in questions(batches, since) + [("--help (start-up alone)", ["--help"], [])]:
        cli, raw = [], []
        command = [str(LOOPKIT), *argv, "--ledger", str(path)] if argv != ["--help"] else [str(LOOPKIT), "--help"]
        run_child(command, env=env)  # untimed: bytecode written and the ledger's pages read once, for both sides
        for _ in range(opts.rounds):
            cli.append(run_child([str(LOOPKIT), *argv, "--ledger", str(path)] if argv != ["--help"] else [str(LOOPKIT), "--help"],
                                 env=env)["cpu"])
            raw.append(run_child([sys.executable, "-c", RAW_SCRIPT, str(path), json.dumps(args), json.dumps(sqls)])["cpu"])
        c, r = statistics.median(cli), statistics.median(raw)
        rows.append((label, c, r))
        print(f"{label:30} {c:10.3f} s {r:10.3f} s {c - r:+12.3f} s", flush=True)
    checked = rows[:-1]
    worst_cpu = max(c for _, c, _ in checked)
    worst_over = max(c - r for _, c, r in checked)
    print(f"\nworst command CPU {worst_cpu:.3f} s (target <= {TARGET_CPU} s): {'MET' if worst_cpu <= TARGET_CPU else 'NOT MET'}")
    print(f"worst command − raw SQL {worst_over:+.3f} s (target <= +{TARGET_OVER_RAW} s): "
          f"{'MET' if worst_over <= TARGET_OVER_RAW else 'NOT MET'}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
