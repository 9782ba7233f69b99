"""The floor: plain Python + sqlite3 writing the rows a scripted `loopkit run` writes, in batched transactions.

    .venv/bin/python bench/floor.py --cases 10000          # prints iterations per CPU-second

No loopkit code runs in the timed part: the ledger's schema (tables and indexes, from a fresh
`loopkit.Ledger`) is created first, then a child process of plain Python fills it with what
`bench/scripted.py`'s spec produces for each case: a run row (with its case JSON), and per iteration
an iteration row, a check row, a call row (messages JSON, response, call and cache keys) and the run
row rewritten with its state JSON — the same rows, columns, sizes, indexes and pragmas
(WAL, synchronous=NORMAL), committed every `--group` iterations. Its CPU time (the child's, from
`os.wait4`, Python start included) is the baseline `bench/scripted.py` divides by.

Importable: `measure(cases)` returns the figures; `write(path, cases)` only writes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The spec bench/scripted.py runs: reply 1 is n, reply 2 is 2n, the checker wants 2n.
SPEC = """\
name: bench-scripted
model: {id: loopkit/scripted, replies: ["{{ case.n }}", "{{ case.n * 2 }}"]}
task: {prompt: "Double {{ case.n }}", feedback: "RETRY: {{ feedback }}"}
inputs: cases.jsonl
checkers: [{name: exact, type: equals, expected: "{{ case.n * 2 }}"}]
stop: {max_iterations: 3}
"""
SPEC_NAME = "bench-scripted"
MODEL = {"id": "loopkit/scripted", "api_base": None, "api_key_env": None, "price": None, "params": {},
         "replies": ["{{ case.n }}", "{{ case.n * 2 }}"], "name": None}
GROUP = 256  # iterations per transaction


def write_cases(path: Path, cases: int) -> None:
    """The cases file both the floor and the CLI read: {"id": "c<i>", "n": i}."""
    with open(path, "w") as fh:
        for i in range(cases):
            fh.write(json.dumps({"id": f"c{i}", "n": i}) + "\n")


def create_schema(path: Path) -> None:
    """An empty ledger with loopkit's current schema (outside the timing)."""
    from loopkit.ledger import Ledger

    Ledger(path).close()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _iterations(n: int) -> list[tuple[list[dict[str, str]], str, float, str]]:
    """(messages sent, reply, reward, feedback) of each iteration of case n, as the scripted spec plays it."""
    prompt = [{"role": "user", "content": f"Double {n}"}]
    if n == 0:
        return [(prompt, "0", 1.0, "")]
    feedback = f"- exact: expected exactly '{2 * n}', got '{n}'"
    second = prompt + [{"role": "assistant", "content": str(n)}, {"role": "user", "content": f"RETRY: {feedback}"}]
    return [(prompt, str(n), 0.0, feedback), (second, str(2 * n), 1.0, "")]


def write(path: Path, cases: int, *, group: int = GROUP, cache: bool = True) -> int:
    """Write every case's rows into the ledger at `path` (schema already there); returns iterations written."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    batch_id, spec_hash = uuid.uuid4().hex, hashlib.sha256(SPEC.encode()).hexdigest()[:16]
    conn.execute("INSERT OR IGNORE INTO specs (hash, name, path, yaml, created_at) VALUES (?, ?, ?, ?, ?)",
                 (spec_hash, SPEC_NAME, "spec.yaml", SPEC, _now()))
    conn.execute("INSERT INTO batches (id, kind, spec_hash, status, started_at, cost_usd, argv, tags, options, pid, host) "
                 "VALUES (?, 'run', ?, 'running', ?, 0.0, '[]', '{}', '{}', ?, 'floor')", (batch_id, spec_hash, _now(), os.getpid()))
    written = pending = 0
    conn.execute("BEGIN IMMEDIATE")
    for i in range(cases):
        run_id, case = uuid.uuid4().hex, {"id": f"c{i}", "n": i}
        started = _now()
        conn.execute("INSERT INTO runs (id, batch_id, spec_hash, spec_name, variant, case_id, case_json, repeat, status, "
                     "started_at, success, iterations, cost_usd, prompt_tokens, completion_tokens) "
                     "VALUES (?, ?, ?, ?, NULL, ?, ?, 0, 'running', ?, 0, 0, 0.0, 0, 0)",
                     (run_id, batch_id, spec_hash, SPEC_NAME, case["id"], json.dumps(case), started))
        rewards: list[float] = []
        prompt_total = completion_total = 0
        for k, (messages, reply, reward, feedback) in enumerate(_iterations(i), start=1):
            messages_json = json.dumps(messages, ensure_ascii=False)
            key = hashlib.sha256(json.dumps([SPEC_NAME, MODEL["id"], None, messages, {}, 0, reply], sort_keys=True).encode()).hexdigest()
            p, c = sum(_tokens(m["content"]) + 4 for m in messages), _tokens(reply)
            prompt_total, completion_total = prompt_total + p, completion_total + c
            now = _now()
            conn.execute("INSERT INTO calls (id, run_id, batch_id, iteration, role, model, api_base, messages, response, "
                         "prompt_tokens, completion_tokens, cost_usd, latency_ms, cached, error, cache_key, call_key, created_at) "
                         "VALUES (?, ?, ?, ?, 'worker', ?, NULL, ?, ?, ?, ?, 0.0, 0.0, 0, NULL, ?, ?, ?)",
                         (uuid.uuid4().hex, run_id, batch_id, k, MODEL["id"], messages_json, reply, p, c,
                          key if cache else None, key, now))
            passed = reward >= 1.0
            conn.execute("INSERT INTO iterations (run_id, n, model, output, reward, passed, feedback, cost_usd, prompt_tokens, "
                         "completion_tokens, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0.0, ?, ?, 0.0, ?)",
                         (run_id, k, MODEL["id"], reply, reward, int(passed), feedback, p, c, now))
            conn.execute("INSERT INTO checks (run_id, iteration, checker, score, passed, feedback, audit, weight) "
                         "VALUES (?, ?, 'exact', ?, ?, ?, 0, 1.0)", (run_id, k, reward, int(passed), feedback[len("- exact: "):]))
            rewards.append(reward)
            state = {"iterations": k, "messages": messages + [{"role": "assistant", "content": reply}], "model": MODEL,
                     "fired": [], "rewards": rewards, "last_output": reply, "last_feedback": feedback, "best_iteration": k,
                     "best_reward": reward, "best_output": reply, "cost_usd": 0.0, "prompt_tokens": prompt_total,
                     "completion_tokens": completion_total, "elapsed_seconds": 0.0005, "max_iterations": None}
            conn.execute("UPDATE runs SET status=?, stop_reason=?, success=?, reward=?, iterations=?, best_iteration=?, output=?, "
                         "ended_at=?, state=?, cost_usd=0.0, prompt_tokens=?, completion_tokens=? WHERE id=?",
                         ("passed" if passed else "running", "passed" if passed else None, int(passed), reward, k, k, reply,
                          now if passed else None, json.dumps(state, separators=(",", ":")), prompt_total, completion_total, run_id))
            written += 1
            pending += 1
            if pending >= group:
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                pending = 0
    conn.execute("UPDATE batches SET status='done', ended_at=? WHERE id=?", (_now(), batch_id))
    conn.execute("COMMIT")
    conn.close()
    return written


def run_child(argv: list[str], *, stdout: Any = subprocess.DEVNULL, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a command to its end; its CPU seconds (user + system, its own children included), peak RSS
    (MiB) and wall seconds, from `os.wait4` on that one child."""
    # As installed: pip compiles the bytecode of what it installs, so a child never compiles loopkit's
    # sources at start (PYTHONDONTWRITEBYTECODE, set in some shells, would make every start do that).
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode not in (0,):
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024, "wall": wall}


def measure(cases: int, *, folder: Path | None = None, group: int = GROUP, cache: bool = True) -> dict[str, float]:
    """The floor at `cases` cases: {iterations, cpu, rate (iterations per CPU-second), rss_mib, wall}."""
    with tempfile.TemporaryDirectory(prefix="loopkit-floor-") as tmp:
        db = Path(folder or tmp) / "floor.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        create_schema(db)
        args = ["--write", str(db), "--cases", str(cases), "--group", str(group)] + ([] if cache else ["--no-cache"])
        figures = run_child([sys.executable, __file__, *args])
        with sqlite3.connect(str(db)) as conn:
            iterations = conn.execute("SELECT COUNT(*) FROM iterations").fetchone()[0]
        return {"iterations": iterations, **figures, "rate": iterations / figures["cpu"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--group", type=int, default=GROUP, help="Iterations per transaction.")
    parser.add_argument("--no-cache", action="store_true", help="Leave cache_key empty, as `run --no-cache` does.")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the child: write into this ledger
    args = parser.parse_args()
    if args.write:
        write(args.write, args.cases, group=args.group, cache=not args.no_cache)
        return
    m = measure(args.cases, group=args.group, cache=not args.no_cache)
    print(f"floor, {args.cases:,} cases: {m['iterations']:,} iterations in {m['cpu']:.2f} CPU-s = "
          f"{m['rate']:,.0f} iterations/CPU-s; peak RSS {m['rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
