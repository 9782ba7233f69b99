"""How fast loopkit itself is: cases on the offline scripted model (no model latency at all).

    python bench/scripted.py [--cases 20000]

Prints iterations per second and peak RSS for N and for N/10 cases in the same run, so the ratio
shows whether memory stays flat as the case count grows 10x. Targets: >= 2,000 iterations/s,
<= 250 MB, flat.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
name: bench-scripted
model: {id: loopkit/scripted, replies: ["{{ case.n }}", "{{ case.n * 2 }}"]}
task: {prompt: "Double {{ case.n }}", feedback: "RETRY: {{ feedback }}"}
inputs: cases.jsonl
checkers: [{name: exact, type: equals, expected: "{{ case.n * 2 }}"}]
stop: {max_iterations: 3}
"""


def child(folder: str) -> None:
    """Run the batch in this process and print its figures as JSON (peak RSS is per process)."""
    import loopkit
    from loopkit.batch import BatchOptions

    spec = loopkit.load_spec(Path(folder) / "spec.yaml")
    ledger = loopkit.Ledger(Path(folder) / "ledger.db")
    started = time.perf_counter()
    result = loopkit.run_batch(spec, ledger=ledger, options=BatchOptions(no_cache=True))
    seconds = time.perf_counter() - started
    iterations = ledger.one("SELECT COUNT(*) AS n FROM iterations")["n"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cases": result.finished, "iterations": iterations, "seconds": seconds, "peak_mb": peak_mb}))


def measure(cases: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "spec.yaml").write_text(SPEC)
        with open(Path(folder, "cases.jsonl"), "w") as fh:
            for i in range(cases):
                fh.write(json.dumps({"id": f"c{i}", "n": i}) + "\n")
        out = subprocess.run([sys.executable, __file__, "--child", folder], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    small, large = measure(args.cases // 10), measure(args.cases)
    for m in (small, large):
        rate = m["iterations"] / m["seconds"]
        print(f"{m['cases']:>7} cases: {m['iterations']} iterations in {m['seconds']:.1f}s = {rate:,.0f} iterations/s; "
              f"peak RSS {m['peak_mb']:.0f} MB")
    print(f"peak RSS ratio (10x the cases): {large['peak_mb'] / small['peak_mb']:.2f}x  (flat = ~1.0)")


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
