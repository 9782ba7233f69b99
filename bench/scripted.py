"""How fast `loopkit run` is, as users run it, against the floor of plain Python + sqlite3.

    .venv/bin/python bench/scripted.py            # 1k, 10k and 100k cases, 3 alternating rounds each
    .venv/bin/python bench/scripted.py --quick    # 1k and 10k only

For each N, in alternating rounds (floor, CLI, floor, CLI, …), runs
- the floor (`bench/floor.py`): a child of plain Python writing the same rows in batched transactions;
- the console script `.venv/bin/loopkit run spec.yaml` on the offline `loopkit/scripted` model over N
  cases (the spec in bench/floor.py: 2 iterations per case but the first), output to /dev/null, into
  an empty ledger whose schema, as the floor's, was created before the timing,
and takes from `os.wait4` on each child its CPU time (user + system, its own children included) and
its peak RSS, measured from outside. Prints medians: iterations per CPU-second of each, the CLI's
share of the floor (target >= 50 % at every N), the CLI's peak RSS and RSS(N) / RSS(1k) (target at
100k <= 1.2x), and bytes per iteration of both ledgers (the floor writes what loopkit writes).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import floor  # noqa: E402 - the baseline, next to this file

LOOPKIT = Path(sys.executable).with_name("loopkit")
TARGET_SHARE = 0.50
TARGET_RSS = 1.2


def ledger_bytes(db: Path) -> tuple[int, int]:
    """(iterations, bytes of the ledger file once its WAL is checkpointed)."""
    with sqlite3.connect(str(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        iterations = conn.execute("SELECT COUNT(*) FROM iterations").fetchone()[0]
    return iterations, db.stat().st_size


def _fresh(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def cli_round(folder: Path, cases: int, *, no_cache: bool) -> dict[str, Any]:
    db = folder / "cli.db"
    _fresh(db)
    floor.create_schema(db)  # like the floor's: an empty ledger with its schema, made outside the timing
    argv = [str(LOOPKIT), "run", str(folder / "spec.yaml"), "--ledger", str(db)] + (["--no-cache"] if no_cache else [])
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    figures = floor.run_child(argv, env=env)
    iterations, size = ledger_bytes(db)
    if iterations != floor_iterations(cases):
        raise RuntimeError(f"loopkit wrote {iterations} iterations for {cases} cases, expected {floor_iterations(cases)}")
    return {**figures, "iterations": iterations, "rate": iterations / figures["cpu"], "bytes": size}


def floor_round(folder: Path, cases: int, *, no_cache: bool) -> dict[str, Any]:
    db = folder / "floor.db"
    _fresh(db)
    floor.create_schema(db)
    args = ["--write", str(db), "--cases", str(cases)] + (["--no-cache"] if no_cache else [])
    figures = floor.run_child([sys.executable, floor.__file__, *args])
    iterations, size = ledger_bytes(db)
    return {**figures, "iterations": iterations, "rate": iterations / figures["cpu"], "bytes": size}


def floor_iterations(cases: int) -> int:
    return 2 * cases - 1 if cases else 0


def median(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k cases only.")
    parser.add_argument("--cases", type=lambda s: [int(x) for x in s.split(",")], help="Comma-separated case counts.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per N (medians are reported).")
    parser.add_argument("--no-cache", action="store_true", help="Run with --no-cache (default: the CLI's default, cache on).")
    args = parser.parse_args()
    sizes = args.cases or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs; "
          f"{args.rounds} alternating rounds per N, medians; cache {'off' if args.no_cache else 'on (the default)'}")
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="loopkit-bench-") as tmp:  # untimed: bytecode written, as an install has it
        (Path(tmp) / "spec.yaml").write_text(floor.SPEC)
        floor.write_cases(Path(tmp) / "cases.jsonl", 10)
        cli_round(Path(tmp), 10, no_cache=args.no_cache)
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="loopkit-bench-") as tmp:
            folder = Path(tmp)
            (folder / "spec.yaml").write_text(floor.SPEC)
            floor.write_cases(folder / "cases.jsonl", n)
            floors, clis = [], []
            for _ in range(args.rounds):
                floors.append(floor_round(folder, n, no_cache=args.no_cache))
                clis.append(cli_round(folder, n, no_cache=args.no_cache))
            r = {"floor_rate": median(floors, "rate"), "cli_rate": median(clis, "rate"), "rss": median(clis, "rss_mib"),
                 "floor_rss": median(floors, "rss_mib"), "cli_cpu": median(clis, "cpu"), "cli_wall": median(clis, "wall"),
                 "floor_bytes": median(floors, "bytes") / floors[0]["iterations"], "cli_bytes": median(clis, "bytes") / clis[0]["iterations"]}
            r["share"] = statistics.median(c["rate"] / f["rate"] for f, c in zip(floors, clis))
            results[n] = r
            print(f"{n:>7,} cases ({clis[0]['iterations']:,} iterations): floor {r['floor_rate']:7,.0f} it/CPU-s · "
                  f"loopkit run {r['cli_rate']:7,.0f} it/CPU-s ({r['cli_cpu']:.2f} CPU-s, {r['cli_wall']:.2f} s wall) · "
                  f"share of floor {r['share']:.1%} · peak RSS {r['rss']:.0f} MiB (floor {r['floor_rss']:.0f}) · "
                  f"bytes/iteration floor {r['floor_bytes']:,.0f} loopkit {r['cli_bytes']:,.0f}", flush=True)
    base = results[min(results)]["rss"]
    print()
    print("| cases | floor it/CPU-s | `loopkit run` it/CPU-s | share of floor | peak RSS | RSS ÷ RSS(smallest) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n:,} | {r['floor_rate']:,.0f} | {r['cli_rate']:,.0f} | {r['share']:.1%} | {r['rss']:.0f} MiB | {r['rss'] / base:.2f}× |")
    worst_share = min(r["share"] for r in results.values())
    rss_ratio = results[max(results)]["rss"] / base
    print(f"\nworst share of floor {worst_share:.1%} (target >= {TARGET_SHARE:.0%}): {'MET' if worst_share >= TARGET_SHARE else 'NOT MET'}")
    print(f"RSS at {max(results):,} ÷ RSS at {min(results):,}: {rss_ratio:.2f}x (target <= {TARGET_RSS}x): "
          f"{'MET' if rss_ratio <= TARGET_RSS else 'NOT MET'}")


if __name__ == "__main__":
    main()
