"""The batch page: how the loop did, what it cost, where it escalated, which runs look like reward
hacking, and every case down to its calls."""

from __future__ import annotations

import json
import math
from typing import Any

from .. import stats
from ..formatting import usd
from ..ledger import Ledger
from ..human import DEFAULT_REVIEW_MINUTES, usd_for
from ..ledger.human import human_by_run, pending_reviews
from ..ledger.report_queries import batch_call_totals, batch_cost_by_model, call_latencies, escalation_spend, run_details
from ..liveness import is_stale
from ..status import BatchStatus, ExitCode, RunStatus, exit_code
from ..timewindow import seconds_between
from . import charts
from .render import duration, minutes, pct

# How much of each output, message and feedback a case shows (`loopkit show` and the run's own page have the rest):
# generous for a small batch, less per text for a big one, so the page stays a few MB.
TEXT_BUDGET = 2_000_000
TEXT_LIMIT = (300, 4000)


def text_limit(runs: list[dict[str, Any]]) -> int:
    """Characters per text so that all the batch's texts fit TEXT_BUDGET, within TEXT_LIMIT."""
    texts = sum(2 + sum(2 + 2 * len(it["calls"]) for it in r["steps"]) + 2 * len(r["orphan_calls"]) for r in runs)
    return max(TEXT_LIMIT[0], min(TEXT_LIMIT[1], TEXT_BUDGET // max(1, texts)))


def batch_exit_code(batch: dict[str, Any], *, pass_rate: float, errors: int) -> int | None:
    """The exit code `run` gave (or would give) this batch; None while it runs."""
    if batch["status"] == BatchStatus.RUNNING:
        return None
    if batch["status"] == BatchStatus.INTERRUPTED:
        return int(ExitCode.INTERRUPTED)
    gate = json.loads(batch.get("options") or "{}").get("fail_under")
    return int(exit_code(budget_refused=batch["status"] == BatchStatus.BUDGET, errors=bool(errors),
                         gate_failed=gate is not None and pass_rate < float(gate)))


def convergence(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per iteration k: the share of runs that had passed by k, the mean best reward so far, runs still going."""
    depth = max((len(r["steps"]) for r in runs), default=0)
    rows = []
    for k in range(1, depth + 1):
        passed = sum(any(it["passed"] and it["n"] <= k for it in r["steps"]) for r in runs)
        best = [max(it["reward"] or 0.0 for it in r["steps"] if it["n"] <= k) for r in runs
                if any(it["n"] <= k for it in r["steps"])]
        rows.append({"n": k, "pass_rate": passed / len(runs), "passed": passed, "mean_reward": sum(best) / len(best) if best else None,
                     "active": sum(any(it["n"] == k for it in r["steps"]) for r in runs)})
    for prev, row in zip([None, *rows], rows):
        row["gain"] = row["pass_rate"] - (prev["pass_rate"] if prev else 0.0)
    final = rows[-1]["pass_rate"] if rows else 0.0
    settled = next((row["n"] for row in rows if math.isclose(row["pass_rate"], final)), None)
    if not rows:
        words = "No iteration finished."
    elif final == 0:
        words = f"No iteration passed the checks, up to iteration {depth}."
    elif depth == 1:
        words = f"Every run stopped after its first iteration ({pct(final)} passed it)."
    elif settled == depth:
        words = f"The pass rate was still rising at the last iteration ({pct(final)} after iteration {depth})."
    else:
        words = (f"The pass rate reaches {pct(final)} at iteration {settled} and gains nothing after it: "
                 + (f"iteration {depth} costs" if settled + 1 == depth else f"iterations {settled + 1}–{depth} cost")
                 + " money without adding a pass.")
    chart = charts.line_chart(
        "Pass rate and mean best reward by iteration",
        [charts.Series("passed by this iteration", [(row["n"], row["pass_rate"]) for row in rows]),
         charts.Series("mean best reward so far", [(row["n"], row["mean_reward"]) for row in rows])],
        x_label="iteration", y_label="share / reward", y_fmt=lambda v: f"{v:.1f}", x_fmt=lambda v: f"{v:.0f}", y_range=(0.0, 1.0)) if rows else None
    return {"rows": rows, "words": words, "chart": chart}


def attach_human(ledger: Ledger, runs: list[dict[str, Any]], *, batch_id: str | None = None, run_id: str | None = None) -> None:
    """Give each run its `human`: the minutes its reviews took (`minutes`, recorded in `human_time`), their `usd`
    where a rate priced them, and for a run still waiting for a person the minutes its hand-off expects
    (`waiting_minutes`, else DEFAULT_REVIEW_MINUTES) and their price at the hand-off's rate (`waiting_usd`);
    `total` and `total_usd` are both."""
    recorded = human_by_run(ledger, batch_id=batch_id, run_id=run_id)
    waiting = {w["run_id"]: (w["minutes"] or DEFAULT_REVIEW_MINUTES, w["usd_per_hour"])
               for w in pending_reviews(ledger, batch_id=batch_id, run_id=run_id)}
    for run in runs:
        row = recorded.get(run["id"]) or {}
        spent, (expected, rate) = row.get("minutes"), waiting.get(run["id"], (None, None))
        paid, owed = row.get("usd") or 0.0, usd_for(expected, rate) or 0.0
        run["human"] = {"reviews": row.get("reviews", 0), "minutes": spent, "usd": paid, "waiting_minutes": expected,
                        "waiting_usd": owed, "total": (spent or 0.0) + (expected or 0.0), "total_usd": paid + owed}


def human_headline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch's person-time: minutes its reviews took, their USD, and the runs still waiting with what they expect."""
    waiting = [r["human"]["waiting_minutes"] for r in runs if r["human"]["waiting_minutes"] is not None]
    return {"reviews": sum(r["human"]["reviews"] for r in runs), "minutes": sum(r["human"]["minutes"] or 0.0 for r in runs),
            "usd": sum(r["human"]["usd"] for r in runs), "waiting_runs": len(waiting), "waiting_minutes": sum(waiting)}


def escalations(ledger: Ledger, batch_id: str, runs: int, human: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Where runs went up the ladder or to a person, and what they spent from then on: model spend, and for
    the runs handed to a person that person's minutes (reviewed, or expected while they wait)."""
    human = human or {}
    events = escalation_spend(ledger, batch_id)
    rungs: dict[str, dict[str, Any]] = {}
    for e in events:
        target = "a person" if e["human"] is not None else f"model {e['to_model']}"
        rung = rungs.setdefault(target, {"target": target, "human": e["human"] is not None, "runs": set(), "passed": set(),
                                         "waiting": set(), "cost_after": 0.0})
        rung["runs"].add(e["run_id"])
        rung["cost_after"] += e["cost_after"] or 0.0
        if e["success"]:
            rung["passed"].add(e["run_id"])
        if e["status"] == RunStatus.NEEDS_REVIEW:
            rung["waiting"].add(e["run_id"])
    rows = [{**r, "runs": len(r["runs"]), "passed": len(r["passed"]), "waiting": len(r["waiting"]),
             "minutes": sum(human.get(run_id, {}).get("total", 0.0) for run_id in r["runs"]) if r["human"] else None,
             "person_usd": sum(human.get(run_id, {}).get("total_usd", 0.0) for run_id in r["runs"]) if r["human"] else 0.0}
            for r in sorted(rungs.values(), key=lambda r: (r["human"], r["target"]))]  # the ladder's models, then a person
    escalated = len({e["run_id"] for e in events})
    to_person = len({e["run_id"] for e in events if e["human"] is not None})
    person = sum(r["minutes"] or 0.0 for r in rows)
    words = (f"{escalated} of {runs} runs escalated" + (f", {to_person} of them to a person" if to_person else "")
             + f"; spent after escalating: {usd(sum(r['cost_after'] for r in rows))}"
             + (f" and {minutes(person)} of a person's time (reviewed or expected)" if to_person else "") + "."
             if escalated else "No run escalated.")
    return {"rows": rows, "words": words, "escalated": escalated, "to_person": to_person}


def costs(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    rows = batch_cost_by_model(ledger, batch_id)
    chart = charts.hbars("Spend by model and role", [(f"{r['model']} ({r['role']})", r["cost_usd"]) for r in rows], fmt=usd) if rows else None
    return {"rows": rows, "chart": chart}


def latency(ledger: Ledger, batch_id: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run wall time as a histogram with p50/p95; model time per call, per model."""
    walls = [s for s in (seconds_between(r["started_at"], r["ended_at"]) for r in runs) if s is not None]
    p50, p95 = stats.quantile(walls, 0.5), stats.quantile(walls, 0.95)
    marks = [(v, name) for v, name in ((p50, "p50"), (p95, "p95")) if v is not None]
    chart = charts.histogram("Run wall time", walls, x_label="run wall time (start to end)", x_fmt=duration, marks=marks) if walls else None
    by_model: dict[tuple[str, str], list[float]] = {}
    for c in call_latencies(ledger, batch_id):
        by_model.setdefault((c["model"], c["role"]), []).append(c["latency_ms"] / 1000)
    models = [{"model": m, "role": role, "calls": len(v), "p50": stats.quantile(v, 0.5), "p95": stats.quantile(v, 0.95)}
              for (m, role), v in sorted(by_model.items())]
    return {"chart": chart, "p50": p50, "p95": p95, "runs_timed": len(walls), "models": models}


def case_row(run: dict[str, Any]) -> dict[str, Any]:
    """What the case table shows and sorts on for one run."""
    targets = [("person" if e["detail"].get("human") is not None else str(e["detail"].get("to")))
               for e in run["events"] if e["kind"] == "escalation"]
    seconds = seconds_between(run["started_at"], run["ended_at"])
    search = " ".join(str(x) for x in (run["case_id"], run["status"], run["stop_reason"], run.get("variant"),
                                         "suspect" if run.get("suspect") else None, *targets) if x).lower()
    return {"seconds": seconds, "escalated_to": targets, "search": search}


def batch_page(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """Everything batch.html draws, read from the ledger."""
    batch = dict(ledger.batch(batch_id) or {})
    if is_stale(batch):
        batch["status"] = BatchStatus.INTERRUPTED
    runs = run_details(ledger, batch_id=batch_id)
    attach_human(ledger, runs, batch_id=batch_id)
    for run in runs:
        run["row"] = case_row(run)
    totals = batch_call_totals(ledger, batch_id)
    n = len(runs)
    passed = sum(bool(r["success"]) for r in runs)
    errors = sum(r["status"] == RunStatus.ERROR for r in runs)
    cost = float(totals.get("cost_usd") or 0.0)
    spec = ledger.spec_text(batch["spec_hash"]) if batch.get("spec_hash") else None
    headline = {
        "runs": n, "cases": len({r["case_id"] for r in runs}), "passed": passed, "pass_rate": passed / n if n else None,
        "cost_usd": cost, "cost_per_success": cost / passed if passed else None, "errors": errors,
        "needs_review": sum(r["status"] == RunStatus.NEEDS_REVIEW for r in runs),
        "suspect": sum(bool(r["suspect"]) for r in runs), "human": human_headline(runs),
        "exit_code": batch_exit_code(batch, pass_rate=passed / n if n else 0.0, errors=errors), "calls": totals,
        "statuses": {s: sum(r["status"] == s for r in runs) for s in sorted({r["status"] for r in runs})},
    }
    return {
        "batch": batch, "spec_name": spec["name"] if spec else (runs[0]["spec_name"] if runs else "-"),
        "tags": json.loads(batch.get("tags") or "{}"), "headline": headline, "runs": runs,
        "suspects": [r for r in runs if r["suspect"]], "convergence": convergence(runs),
        "escalations": escalations(ledger, batch_id, n, {r["id"]: r["human"] for r in runs}),
        "costs": costs(ledger, batch_id), "latency": latency(ledger, batch_id, runs), "limit": text_limit(runs),
        "statuses": sorted({r["status"] for r in runs}),
    }
