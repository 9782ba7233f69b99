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


def decide(ledger: Ledger, run_id: str, decision: str, *, reviewer: str, feedback: str | None = None) -> dict[str, Any]:
    """Record who decided what, then apply it; returns the run's new status."""
    run = ledger.run(run_id)
    if run is None:
        raise UsageError(f"no run {run_id}")
    if run["status"] != "needs_review":
        raise UsageError(f"run {run_id[:10]} is {run['status']}, not waiting for review")
    ledger.add_event(run_id, "review", {"decision": decision, "reviewer": reviewer, "feedback": feedback})
    if decision == "approve":
        ledger.set_run_status(run_id, "passed", "approved", success=True)
        return {"run_id": run_id, "status": "passed", "stop_reason": "approved", "reviewer": reviewer}
    if decision == "reject":
        ledger.set_run_status(run_id, "failed", "rejected", success=False)
        return {"run_id": run_id, "status": "failed", "stop_reason": "rejected", "reviewer": reviewer}
    spec = spec_of_batch(ledger, {"id": run.get("batch_id") or run_id, "spec_hash": run["spec_hash"]})
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
            "iterations": result.iterations, "reward": result.reward}
