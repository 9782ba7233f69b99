"""`loopkit fleet status`: where the money went and what waits for a person, from the ledger alone.

Per loop (its latest batch): spent and left of its share, cases done and queued, pass rate, cost per
success, reviews pending (and held for reviewer capacity), paused and why, and an ETA at the rate it has
run so far; for the fleet: the day's budget and reviewer minutes left, and the ETA of what is queued.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import yaml

from ..errors import UsageError
from ..human import DEFAULT_REVIEW_MINUTES
from ..ledger import Ledger
from ..ledger import fleet as rows
from ..timewindow import seconds_between
from .clock import day_bounds
from .model import FleetSpec


def fleet_status(ledger: Ledger, ref: str | None = None, *, path: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    row = rows.find_fleet(ledger, ref, path=path)
    if row is None:
        raise UsageError(f"no fleet {ref or path}" if (ref or path) else "no fleet has run in this ledger yet")
    from ..spec.safe_yaml import LimitedLoader

    spec = FleetSpec.model_validate(yaml.load(row["yaml"], Loader=LimitedLoader))  # noqa: S506 - a safe loader with limits
    since, until = day_bounds(now or datetime.now())
    batches = rows.fleet_batches(ledger, row["id"])
    latest: dict[str, dict[str, Any]] = {}
    for b in batches:  # newest first: a loop's current batch is its latest
        latest.setdefault(b["loop"], b)
    paused = rows.paused_loops(ledger, row["id"])
    loops = [_loop(ledger, b, spec, paused.get(name)) for name, b in latest.items()]
    loops.sort(key=lambda lp: (lp["priority"], lp["loop"]))
    ids = [b["id"] for b in batches]
    day_spent = rows.spend(ledger, ids, since=since, until=until)
    minutes_used = rows.reviewer_minutes(ledger, ids, since=since, until=until, default=DEFAULT_REVIEW_MINUTES)
    per_day = spec.reviewers.minutes_per_day if spec.reviewers else None
    rate = sum(lp["_rate"] for lp in loops)
    queued = sum(lp["queued"] for lp in loops if not lp["paused"])
    for lp in loops:
        lp.pop("_rate")
    total_spent = rows.spend(ledger, ids)
    return {
        "fleet_id": row["id"], "name": row["name"], "path": row["path"], "status": _status(row["status"], list(latest.values())),
        "started_at": row["started_at"],
        "window": spec.window,
        "budget": {"usd_per_day": spec.budget.usd_per_day, "spent_today_usd": day_spent,
                   "left_today_usd": None if spec.budget.usd_per_day is None else max(0.0, spec.budget.usd_per_day - day_spent),
                   "total_usd": spec.budget.total_usd, "spent_usd": total_spent,
                   "left_usd": None if spec.budget.total_usd is None else max(0.0, spec.budget.total_usd - total_spent)},
        "reviewers": {"minutes_per_day": per_day, "used_today_minutes": minutes_used,
                      "left_today_minutes": None if per_day is None else max(0.0, per_day - minutes_used)},
        "queued": queued, "eta_seconds": (queued / rate) if rate > 0 and queued else (0.0 if not queued else None),
        "loops": loops,
    }


def _loop(ledger: Ledger, batch: dict[str, Any], spec: FleetSpec, paused: dict[str, Any] | None) -> dict[str, Any]:
    import json

    tags = json.loads(batch.get("tags") or "{}")
    figures = rows.loop_figures(ledger, batch["id"])
    share = float(tags["fleet_share"]) if tags.get("fleet_share") else None
    cap = share * spec.budget.total_usd if share is not None and spec.budget.total_usd else None
    cases = int(tags.get("fleet_cases") or 0)
    done = figures["finished"]
    queued = max(0, cases - done)
    elapsed = seconds_between(figures["first_at"], figures["last_at"]) or 0.0
    rate = done / elapsed if elapsed > 0 and done else 0.0
    spent = figures["spent_usd"]
    return {
        "loop": batch["loop"], "priority": batch["priority"], "batch_id": batch["id"], "batch_status": batch["status"],
        "share": share, "share_usd": cap, "spent_usd": spent, "left_usd": None if cap is None else max(0.0, cap - spent),
        "cases": cases, "done": done, "queued": queued, "passed": figures["passed"],
        "pass_rate": figures["passed"] / done if done else None,
        "cost_per_success_usd": spent / figures["passed"] if figures["passed"] else None,
        "reviews_pending": figures["reviews_pending"], "reviews_held": figures["reviews_held"],
        "paused": paused is not None, "paused_why": (paused or {}).get("reason"),
        "eta_seconds": (queued / rate) if rate and queued else (0.0 if not queued else None), "_rate": rate,
    }


def _status(recorded: str, batches: list[dict[str, Any]]) -> str:
    """`running` only while a process still runs one of its loops' batches; after kill -9 or a crash, `interrupted`."""
    from ..liveness import is_stale

    if recorded == "running" and not any(b["status"] == "running" and not is_stale(b) for b in batches):
        return "interrupted"
    return recorded
