"""The unit of evidence of an A/B test and its order, shared by the runner (`ab.py`) and the report.

The unit is the case: its repeats under A and under B. Cases come in an order shuffled by the
batch's seed, and the tests take the complete prefix of that order: a case once it and every
case before it have finished. Both are functions of the seed and the case ids alone, so the
report and a resume recover exactly what the live test did.
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections.abc import Iterable
from typing import Any

from .status import FINISHED

__all__ = ["VARIANTS", "case_means", "case_summary", "complete_prefix", "pair_order", "schedule_key"]

VARIANTS = ("A", "B")
_CASE_MEANS = ("ok", "reward", "cost", "iterations", "model_ms", "escalations")



def schedule_key(seed: int, case_id: str) -> str:
    """Where a case falls in an A/B batch's shuffled order: the same seed and case id, the same place.

    A seeded shuffle that needs only the case id, so the report (and a resume) recover the order
    the runner used from the runs alone.
    """
    return hashlib.sha256(f"{seed}\x00{case_id}".encode()).hexdigest()


def case_summary(runs: Iterable[tuple[str, float, float, float]]) -> tuple[float, float, float, float]:
    """One case's evidence for the sequential tests, from its runs' (variant, passed, reward, cost):
    A's and B's pass rate over the repeats, the mean reward B - A and the mean cost B - A (USD per run)."""
    by: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
    for variant, passed, reward, cost in runs:
        by[variant].append((float(passed), reward, cost))
    a, b = by["A"], by["B"]
    return (statistics.fmean(p for p, _, _ in a), statistics.fmean(p for p, _, _ in b),
            statistics.fmean(r for _, r, _ in b) - statistics.fmean(r for _, r, _ in a),
            statistics.fmean(c for _, _, c in b) - statistics.fmean(c for _, _, c in a))


def complete_prefix(runs: list[dict[str, Any]], *, seed: int, repeat: int) -> list[list[dict[str, Any]]]:
    """The cases the tests see: in scheduling order, up to the first case with a run not finished.

    A case whose runs are all still missing was never started (or the budget refused it) and is
    skipped, as the runner skips it. Among runs of one case x repeat x variant (a resumed run starts
    a new row), a finished one counts.
    """
    latest: dict[str, dict[tuple[int, str], dict[str, Any]]] = {}
    for r in runs:
        slot = latest.setdefault(r["case_id"], {})
        key = (r["repeat"] or 0, r["variant"])
        if key not in slot or slot[key]["status"] not in FINISHED:
            slot[key] = r
    prefix = []
    for case_id in sorted(latest, key=lambda c: schedule_key(seed, c)):
        rows = list(latest[case_id].values())
        if len(rows) < 2 * repeat or any(r["status"] not in FINISHED for r in rows):
            break
        prefix.append(rows)
    return prefix


def pair_order(seed: int, case_id: str, repeat: int) -> tuple[str, str]:
    """Which variant of one repeat's pair runs first: seeded per pair, so a resume draws the same."""
    return ("A", "B") if random.Random(f"{seed}/{case_id}/{repeat}").random() < 0.5 else ("B", "A")


def case_means(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A case as one (A, B) pair: each variant's runs averaged (pass rate, reward, cost, ...)."""
    out = []
    for v in VARIANTS:
        mine = [r for r in rows if r["variant"] == v]
        walls = [r["wall_ms"] for r in mine if r["wall_ms"] is not None]
        out.append({**{k: statistics.fmean(float(r[k]) for r in mine) for k in _CASE_MEANS}, "wall_ms": statistics.fmean(walls) if walls else None})
    return out[0], out[1]
