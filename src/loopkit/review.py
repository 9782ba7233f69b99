"""A person's decision on a parked run: approve, reject, or feed words back and resume the loop now."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .batch import spec_of_batch
from .budget import CaseBudget
from .cache import LedgerCache
from .engine import run_case
from .errors import UsageError
from .inputs import Case
from .ledger import Ledger
from .models import ModelPool


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
    state = ledger.run_state(run_id)
    case = Case(run["case_id"], json.loads(run["case_json"] or "{}"))
    models = ModelPool()
    result = asyncio.run(run_case(spec, case, clients=models.client, recorder=ledger, budget=CaseBudget(spec.budget),
                                  cache=LedgerCache(ledger),
                                  batch_id=run.get("batch_id"), repeat=run.get("repeat") or 0, variant=run.get("variant"),
                                  run_id=run_id, state=state, human_feedback=feedback))
    return {"run_id": run_id, "status": result.status, "stop_reason": result.stop_reason, "reviewer": reviewer,
            "iterations": result.iterations, "reward": result.reward}
