"""loopkit's CPU per model call over bare `litellm.acompletion`, against the same fake server.

    .venv/bin/python bench/overhead.py [--calls 1000] [--rounds 7] [--concurrency 16]

Starts tests/fake_llm.py in its own process (its CPU is not counted), imports litellm once, warms
both paths up, then runs rounds in this process — bare, loopkit, loopkit with a budget, in an order
that rotates each round so each goes first in turn — each of `--calls` calls at the same concurrency
with the same messages and max_tokens, and takes the process's CPU time (`time.process_time`, every
thread included) of each:

- bare: `litellm.acompletion` under a semaphore + `asyncio.gather`, as a script would call it;
- loopkit: `loopkit.run_batch` over as many one-call cases (render, cache lookup, call, checker,
  ledger writes; everything a run does once the spec and ledger are open);
- loopkit with a budget: the same with a per-case `usd` cap and a batch `total_usd` (prompt tokens
  counted, reservations made).

Prints the median CPU per call of each and the medians of the per-round ratios (target <= 1.10x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.10
TEXT = ("Summarise the following ticket in one line and say which team should own it. The customer writes that the "
        "invoice export has been failing since Tuesday with a timeout, that they retried three times, and that their "
        "accountant needs the March figures before the end of the week. ")


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_llm.py"), "--port", "0", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def prompt(n: int) -> str:
    return f"Ticket {n}: {TEXT}"


async def _bare(base_url: str, calls: int, concurrency: int, max_tokens: int) -> None:
    from loopkit.models import litellm

    lm = litellm()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with gate:
            return await lm.acompletion(model="openai/bench-model", api_base=base_url, api_key="not-needed", max_retries=0,
                                        messages=[{"role": "user", "content": prompt(i)}], max_tokens=max_tokens)

    await asyncio.gather(*(one(i) for i in range(calls)))


def bare(base_url: str, calls: int, concurrency: int, max_tokens: int) -> float:
    """CPU seconds of `calls` bare calls."""
    started = time.process_time()
    asyncio.run(_bare(base_url, calls, concurrency, max_tokens))
    return time.process_time() - started


SPEC = """\
name: bench-overhead
model: {{id: openai/bench-model, api_base: "{base_url}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: {max_tokens}}}
task: {{prompt: "Ticket {{{{ case.n }}}}: {{{{ case.text }}}}"}}
inputs: cases.jsonl
checkers: [{{name: any, type: regex, pattern: "."}}]
stop: {{max_iterations: 1}}
{budget}"""


class LoopkitPath:
    """A spec of `calls` one-call cases in a folder; each `run()` is one batch into a fresh ledger."""

    def __init__(self, folder: Path, base_url: str, calls: int, concurrency: int, max_tokens: int, *, budget: bool) -> None:
        import loopkit

        self.folder, self.calls, self.concurrency, self.rounds = folder, calls, concurrency, 0
        caps = "budget: {usd: 1.0, total_usd: 1000.0}\n" if budget else ""
        (folder / "spec.yaml").write_text(SPEC.format(base_url=base_url, max_tokens=max_tokens, budget=caps))
        with open(folder / "cases.jsonl", "w") as fh:
            for i in range(calls):
                fh.write(json.dumps({"id": i, "n": i, "text": TEXT}) + "\n")
        self.spec = loopkit.load_spec(folder / "spec.yaml")

    def run(self) -> float:
        """CPU seconds of one batch (the ledger is opened before the clock starts and closed after it stops)."""
        import loopkit
        from loopkit.batch import BatchOptions

        self.rounds += 1
        ledger = loopkit.Ledger(self.folder / f"ledger-{self.rounds}.db")
        started = time.process_time()
        result = loopkit.run_batch(self.spec, ledger=ledger, options=BatchOptions(concurrency=self.concurrency, no_cache=True))
        cpu = time.process_time() - started
        assert result.finished == self.calls and result.errors == 0, result
        ledger.close()
        return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="Calls per round and path.")
    parser.add_argument("--rounds", type=int, default=7, help="Alternating rounds (>= 3); medians are reported.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.01, help="The fake server's seconds per answer.")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    proc, base_url = start_server(args.latency)
    try:
        from loopkit.models import litellm

        litellm()  # imported once, outside every timing
        with tempfile.TemporaryDirectory(prefix="loopkit-overhead-") as tmp:
            paths = {}
            for name in ("plain", "budget"):
                folder = Path(tmp, name).resolve()
                folder.mkdir()
                paths[name] = LoopkitPath(folder, base_url, args.calls, args.concurrency, args.max_tokens, budget=name == "budget")
            plain, capped = paths["plain"], paths["budget"]
            bare(base_url, args.concurrency * 2, args.concurrency, args.max_tokens)  # warm: connections, lazy imports
            plain.run()
            capped.run()
            paths = {"bare": lambda: bare(base_url, args.calls, args.concurrency, args.max_tokens),
                     "loopkit": plain.run, "budget": capped.run}
            order = list(paths)
            rounds: list[dict[str, float]] = []
            for r in range(max(3, args.rounds)):
                row = {}
                for name in order[r % 3:] + order[:r % 3]:  # each path goes first, second and third in turn
                    row[name] = paths[name]() / args.calls
                rounds.append(row)
                print(f"round {r + 1}: bare {rounds[-1]['bare'] * 1000:.2f} ms/call · loopkit {rounds[-1]['loopkit'] * 1000:.2f} · "
                      f"with budget {rounds[-1]['budget'] * 1000:.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait()
    med = {k: statistics.median(r[k] for r in rounds) for k in ("bare", "loopkit", "budget")}
    ratio = statistics.median(r["loopkit"] / r["bare"] for r in rounds)
    ratio_budget = statistics.median(r["budget"] / r["bare"] for r in rounds)
    print(f"\n{args.calls} calls per round, {len(rounds)} alternating rounds, concurrency {args.concurrency}, "
          f"server latency {args.latency * 1000:.0f} ms; medians of CPU per call:")
    print(f"bare litellm.acompletion:  {med['bare'] * 1000:6.2f} ms")
    print(f"loopkit:                   {med['loopkit'] * 1000:6.2f} ms  (+{(med['loopkit'] - med['bare']) * 1000:.2f} ms) "
          f"ratio {ratio:.2f}x")
    print(f"loopkit with a budget:     {med['budget'] * 1000:6.2f} ms  (+{(med['budget'] - med['bare']) * 1000:.2f} ms) "
          f"ratio {ratio_budget:.2f}x")
    worst = max(ratio, ratio_budget)
    print(f"worst ratio {worst:.2f}x (target <= {TARGET:.2f}x): {'MET' if worst <= TARGET else 'NOT MET'}")


if __name__ == "__main__":
    main()
