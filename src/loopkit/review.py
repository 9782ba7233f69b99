"""A person's decision on a parked run: approve, reject, or feed words back and resume the loop now."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .batch import spec_of_batch
from .budget import BatchPool, CaseBudget, batch_cap, validate_budget
from .cache import LedgerCache
from .engine import run_case
from .errors import UsageError
from .history import with_history
from .human import record_review, with_rate
from .inputs import Case
from .ledger import Ledger
from .ledger.queries import batch_spend
from .models import ModelPool


def _batch_pool(ledger: Ledger, batch_id: str | None) -> BatchPool:
    """The run's batch budget, as its batch left it: the batch's cap (its specs' `total_usd`, the `--max-usd`
    saved with it) less what the batch has spent, so feedback cannot take the batch over its cap."""
    batch = ledger.batch(batch_id) if batch_id else None
    if batch is None:
        return BatchPool()
    saved = json.loads(batch.get("options") or "{}")
    specs = [spec_of_batch(ledger, {**batch, "spec_hash": h}) for h in (batch["spec_hash"], batch.get("spec_hash_b")) if h]
    cap = batch_cap(saved.get("max_usd"), *(s.budget.total_usd for s in specs))
    return BatchPool(cap=cap, spent=batch_spend(ledger, batch["id"]))


def decide(ledger: Ledger, run_id: str, decision: str, *, reviewer: str, feedback: str | None = None,
           minutes: float | None = None) -> dict[str, Any]:
    """Record who decided what and the time it took (`minutes`, else what the hand-off expected: human.py), then
    apply it; returns the run's new status."""
    run = ledger.run(run_id)
    if run is None:
        raise UsageError(f"no run {run_id}")
    if run["status"] != "needs_review":
        raise UsageError(f"run {run_id[:10]} is {run['status']}, not waiting for review")
    if minutes is not None and (minutes < 0 or minutes != minutes or minutes == float("inf")):
        raise UsageError(f"--minutes {minutes}: give the minutes the review took, a number of 0 or more")
    event = record_review(ledger, run_id, {"decision": decision, "reviewer": reviewer, "feedback": feedback}, minutes=minutes)
    spent = {k: event[k] for k in ("minutes", "usd") if event.get(k) is not None}
    if decision == "approve":
        ledger.set_run_status(run_id, "passed", "approved", success=True)
        return {"run_id": run_id, "status": "passed", "stop_reason": "approved", "reviewer": reviewer, **spent}
    if decision == "reject":
        ledger.set_run_status(run_id, "failed", "rejected", success=False)
        return {"run_id": run_id, "status": "failed", "stop_reason": "rejected", "reviewer": reviewer, **spent}
    spec = spec_of_batch(ledger, {"id": run.get("batch_id") or run_id, "spec_hash": run["spec_hash"]})
    saved = json.loads((ledger.batch(run["batch_id"]) or {}).get("options") or "{}") if run.get("batch_id") else {}
    spec = with_history(with_rate(spec, saved.get("human_usd_per_hour")), ledger)  # as its batch priced and chose
    pool = _batch_pool(ledger, run.get("batch_id"))
    validate_budget(spec, extra_cap=pool.cap)
    state = ledger.run_state(run_id)
    case = Case(run["case_id"], json.loads(run["case_json"] or "{}"))
    models = ModelPool()
    result = asyncio.run(run_case(spec, case, clients=models.client, recorder=ledger, budget=CaseBudget(spec.budget, pool),
                                  cache=LedgerCache(ledger),
                                  batch_id=run.get("batch_id"), repeat=run.get("repeat") or 0, variant=run.get("variant"),
                                  run_id=run_id, state=state, human_feedback=feedback))
    return {"run_id": run_id, "status": result.status, "stop_reason": result.stop_reason, "reviewer": reviewer,
            "iterations": result.iterations, "reward": result.reward, **spent}
