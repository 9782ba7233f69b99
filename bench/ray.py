"""`--engine ray` on a local Ray against the in-process asyncio engine, as users run them (the console script).

    .venv/bin/python bench/ray.py                      # 10,000 scripted cases; 2,000 cases with a 50 ms checker
    .venv/bin/python bench/ray.py --scripted 2000 --checked 400     # smaller, for a busy 2-core machine
    .venv/bin/python bench/ray.py --address auto       # Ray on a cluster you joined (see README: ray up)

Two workloads, each run once by both engines (asyncio first) on the same spec and cases:
- scripted: the offline `loopkit/scripted` model, two iterations per case, nothing else. Pure overhead: Ray
  pays for its actors, its object store and a round trip per step, so expect it to be slower here.
- checked: one iteration per case whose `command` checker burns 50 ms of CPU in a child process. CPU-bound
  work that Ray spreads over the cluster's cores (and nodes); the asyncio engine has this process's.
Each figure is the wall clock of the whole `loopkit run`, Ray's start included (wall, not CPU: Ray's point is
using more cores); a one-case Ray run gives that fixed start-up cost, printed apart. Prints the ratio
Ray ÷ asyncio per workload (under 1: Ray is faster). Both engines run 16 cases at once (`--concurrency`'s
default), and the asyncio engine's checkers are child processes too: on one machine both use every core, so
Ray can only win the checked workload once the cluster has more cores than this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LOOPKIT = Path(sys.executable).with_name("loopkit")
BURN = "import time\nend = time.process_time() + 0.05\nwhile time.process_time() < end:\n    pass\n"

SPEC = """\
version: 1
name: bench-{kind}
model: {{id: loopkit/scripted, replies: {replies}}}
task:
  prompt: "Double {{{{ case.n }}}}"
inputs: cases.jsonl
checkers:
  - {{name: exact, type: equals, expected: "{{{{ case.n * 2 }}}}"}}
{extra}"""


def workload(folder: Path, kind: str, cases: int) -> Path:
    """A spec folder: `scripted` (two iterations, no checker process) or `checked` (one, a 50 ms CPU checker)."""
    home = folder / kind
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "cases.jsonl", "w") as f:
        for i in range(1, cases + 1):
            f.write(json.dumps({"id": str(i), "n": i}) + "\n")
    if kind == "scripted":
        text = SPEC.format(kind=kind, replies='["wrong {{ case.n }}", "{{ case.n * 2 }}"]', extra="")
    else:
        (home / "burn.py").write_text(BURN)
        extra = f'  - {{name: burn, type: command, run: "{sys.executable} burn.py"}}\n'
        text = SPEC.format(kind=kind, replies='["{{ case.n * 2 }}"]', extra=extra)
    (home / "spec.yaml").write_text(textwrap.dedent(text))
    return home / "spec.yaml"


def run(spec: Path, engine: str, *, address: str | None, inputs: Path | None = None) -> float:
    """Wall-clock seconds of one `loopkit run` into a fresh ledger; checks every case was recorded once."""
    db = spec.parent / f"{engine}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    argv = [str(LOOPKIT), "run", str(spec), "--ledger", str(db), "--engine", engine, "--json"]
    argv += ["--address", address] if address and engine == "ray" else []
    argv += ["--inputs", str(inputs)] if inputs else []
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "NO_COLOR": "1"})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} exited {proc.returncode}: {proc.stderr[-1000:]}")
    expected = sum(1 for _ in open(inputs or spec.parent / "cases.jsonl"))
    with sqlite3.connect(db) as conn:
        runs, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT case_id) FROM runs").fetchone()
    if runs != expected or distinct != expected:
        raise RuntimeError(f"{engine}: {runs} runs of {distinct} cases, expected {expected} once each")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripted", type=int, default=10_000, help="cases of the scripted workload")
    parser.add_argument("--checked", type=int, default=2_000, help="cases of the 50 ms checker workload")
    parser.add_argument("--address", default=None, help="Ray's address (default: a local Ray per run)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="loopkit-bench-ray-") as tmp:
        folder = Path(tmp)
        one = folder / "one.jsonl"
        one.write_text(json.dumps({"id": "1", "n": 1}) + "\n")
        startup = run(workload(folder, "startup", 1), "ray", address=args.address, inputs=one)
        print(f"Ray start-up (a one-case run): {startup:.1f}s")
        print(f"{'workload':<10} {'cases':>7} {'asyncio s':>10} {'ray s':>8} {'ray/asyncio':>12} {'(ray - start-up)/asyncio':>25}")
        for kind, cases in (("scripted", args.scripted), ("checked", args.checked)):
            spec = workload(folder, kind, cases)
            base = run(spec, "asyncio", address=None)
            ray = run(spec, "ray", address=args.address)
            print(f"{kind:<10} {cases:>7} {base:>10.1f} {ray:>8.1f} {ray / base:>12.2f} {max(ray - startup, 0.0) / base:>25.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
