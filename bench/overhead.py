"""loopkit's overhead over bare litellm: the same N calls against the fake server, both ways.

    python bench/overhead.py [--calls 400] [--concurrency 16] [--latency 0.05]

Starts tests/fake_llm.py in its own process, then times (a) `litellm.acompletion` + asyncio.gather
with a semaphore at the given concurrency and (b) a loopkit batch of the same number of one-call
cases at the same concurrency (engine, checkers, ledger writes, cache off). Prints both and the
ratio (target <= 1.15x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_llm.py"), "--port", "0", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def bare(base_url: str, calls: int, concurrency: int) -> float:
    import litellm

    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await litellm.acompletion(model="openai/bench-model", api_base=base_url, api_key="none", max_retries=0,
                                      messages=[{"role": "user", "content": f"Echo {i}"}], max_tokens=20)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.perf_counter() - started


def through_loopkit(base_url: str, calls: int, concurrency: int) -> float:
    import loopkit
    from loopkit.batch import BatchOptions

    with tempfile.TemporaryDirectory() as folder:
        spec_path = Path(folder) / "spec.yaml"
        spec_path.write_text(f"""
name: bench-overhead
model: {{id: openai/bench-model, api_base: "{base_url}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 20}}
task: {{prompt: "Echo {{{{ case.n }}}}"}}
inputs: cases.jsonl
checkers: [{{name: any, type: regex, pattern: "."}}]
stop: {{max_iterations: 1}}
""")
        with open(Path(folder) / "cases.jsonl", "w") as fh:
            for i in range(calls):
                fh.write(json.dumps({"id": i, "n": i}) + "\n")
        spec = loopkit.load_spec(spec_path)
        ledger = loopkit.Ledger(Path(folder) / "ledger.db")
        started = time.perf_counter()
        result = loopkit.run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=concurrency, no_cache=True))
        elapsed = time.perf_counter() - started
        assert result.finished == calls, result
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    proc, base_url = start_server(args.latency)
    try:
        from loopkit.models import litellm

        litellm()  # import once, outside both timings
        asyncio.run(bare(base_url, args.concurrency, args.concurrency))  # warm connections
        ideal = args.calls / args.concurrency * args.latency
        bare_s = asyncio.run(bare(base_url, args.calls, args.concurrency))
        loop_s = through_loopkit(base_url, args.calls, args.concurrency)
    finally:
        proc.terminate()
    print(f"{args.calls} calls, concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms "
          f"(ideal {ideal:.2f}s)")
    print(f"bare litellm.acompletion + gather: {bare_s:.2f}s")
    print(f"loopkit batch:                     {loop_s:.2f}s")
    print(f"ratio loopkit / bare:              {loop_s / bare_s:.2f}x  (target <= 1.15x)")


if __name__ == "__main__":
    main()
