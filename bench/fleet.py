"""How `loopkit fleet run` compares with one `loopkit run` of the same cases.

    .venv/bin/python bench/fleet.py                  # 10,000 scripted cases
    .venv/bin/python bench/fleet.py --cases 100000   # the issue's figure

Writes N scripted cases split over 5 loops (5 specs on the offline `loopkit/scripted` model, priced,
with `max_tokens`, as a fleet needs), a fleet file over them with a budget that never binds, and one spec
over all N cases. Runs, in alternating rounds, the console script `loopkit run` (all N cases, one batch)
and `loopkit fleet run` (the same N cases, 5 batches), each into a fresh ledger, and takes from
`os.wait4` on each child its wall time and peak RSS. Prints medians: cases per second of each, the
fleet's throughput as a share of the run's, and its peak RSS over the run's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import run_child  # noqa: E402 - wall time and peak RSS of one child, from os.wait4

LOOPKIT = Path(sys.executable).with_name("loopkit")
LOOPS = 5
SPEC = """\
name: {name}
model: {{id: loopkit/scripted, price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}, replies: ["{{{{ case.n }}}}", "{{{{ case.n * 2 }}}}"]}}
params: {{max_tokens: 20}}
task: {{prompt: "Double {{{{ case.n }}}}", feedback: "RETRY: {{{{ feedback }}}}"}}
inputs: {inputs}
checkers: [{{name: exact, type: equals, expected: "{{{{ case.n * 2 }}}}"}}]
stop: {{max_iterations: 3}}
"""


def write(folder: Path, cases: int) -> tuple[Path, Path]:
    """The single spec over every case, and the fleet file over 5 loops sharing them out."""
    per = -(-cases // LOOPS)
    with open(folder / "all.jsonl", "w") as everything:
        for k in range(LOOPS):
            with open(folder / f"loop{k}.jsonl", "w") as part:
                for i in range(k * per, min(cases, (k + 1) * per)):
                    line = f'{{"id": "c{i}", "n": {i}}}\n'
                    part.write(line)
                    everything.write(line)
            (folder / f"loop{k}.yaml").write_text(SPEC.format(name=f"loop{k}", inputs=f"loop{k}.jsonl"))
    single = folder / "single.yaml"
    single.write_text(SPEC.format(name="single", inputs="all.jsonl"))
    fleet = folder / "fleet.yaml"
    loops = "\n".join(f"  - {{spec: loop{k}.yaml, priority: {k + 1}}}" for k in range(LOOPS))
    fleet.write_text(f"budget: {{total_usd: 1000000}}\nproviders: {{loopkit: {{concurrency: 16}}}}\nloops:\n{loops}\n")
    return single, fleet


def once(folder: Path, argv: list[str], name: str) -> dict[str, float]:
    db = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return run_child([str(LOOPKIT), "--ledger", str(db), *argv])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="scripted cases in all (default 10,000; the issue asks 100,000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of run and fleet run (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loopkit-fleet-bench-") as tmp:
        folder = Path(tmp)
        single, fleet = write(folder, args.cases)
        runs, fleets = [], []
        for _ in range(args.rounds):
            runs.append(once(folder, ["run", str(single)], "run"))
            fleets.append(once(folder, ["fleet", "run", str(fleet)], "fleet"))
    n = args.cases

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    run_rate, fleet_rate = n / median(runs, "wall"), n / median(fleets, "wall")
    run_rss, fleet_rss = median(runs, "rss_mib"), median(fleets, "rss_mib")
    print(f"{n:,} scripted cases, {args.rounds} round(s), medians")
    print(f"  loopkit run        {run_rate:8.0f} cases/s   peak RSS {run_rss:6.1f} MiB")
    print(f"  loopkit fleet run  {fleet_rate:8.0f} cases/s   peak RSS {fleet_rss:6.1f} MiB   ({LOOPS} loops)")
    print(f"  fleet / run: throughput {fleet_rate / run_rate:.2f}x, peak RSS {fleet_rss / run_rss:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
