"""The SQL behind `loopkit report`: a batch's runs with everything under them, and the sums its charts draw.

Money and tokens always come from `calls` (the source of truth the run and batch totals derive
from), so every figure on a page agrees with `cost`, `show` and a `SUM` over the ledger.
"""

from __future__ import annotations

import json
from typing import Any

from .store import Ledger

__all__ = ["batch_call_totals", "batch_cost_by_model", "call_latencies", "escalation_spend", "latest_batch_id",
           "run_details", "spend_series", "variant_runs"]

# Time buckets of the cost page, in local time like `cost --by day`.
BUCKETS = {"hour": "strftime('%Y-%m-%d %H:00', c.created_at, 'localtime')", "day": "date(c.created_at, 'localtime')"}
SERIES = {"model": "c.model", "spec": "r.spec_name"}


def latest_batch_id(ledger: Ledger) -> str | None:
    """The newest batch a person ran (`run`, `ab`, `fleet`); a `resume` row stands for the batch it resumed."""
    row = ledger.one("SELECT id FROM batches WHERE kind != 'resume' ORDER BY started_at DESC, rowid DESC LIMIT 1")
    return row["id"] if row else None


def _runs_where(batch_id: str | None, run_id: str | None) -> tuple[str, list[Any]]:
    """The runs in scope: one batch's, or one run."""
    return ("batch_id = ?", [batch_id]) if batch_id is not None else ("id = ?", [run_id])


def run_details(ledger: Ledger, *, batch_id: str | None = None, run_id: str | None = None,
                messages: bool = False) -> list[dict[str, Any]]:
    """Runs (by case, repeat, variant) each with `case`, `events` and `steps` (its iterations), each with its
    `checks`, `calls` and `tool_calls`. A call carries the last message it sent (`sent_role`, `sent`)
    and, with `messages=True`, the whole conversation (for one run's page)."""
    where, args = _runs_where(batch_id, run_id)
    runs = ledger.query(
        "SELECT id, batch_id, spec_name, variant, case_id, case_json, repeat, status, stop_reason, success, reward, iterations, "
        "best_iteration, output, cost_usd, prompt_tokens, completion_tokens, started_at, ended_at, message, suspect "
        f"FROM runs WHERE {where} ORDER BY case_id, repeat, variant, started_at", args)
    scope = f"run_id IN (SELECT id FROM runs WHERE {where})"
    iterations = _by_run(ledger.query(f"SELECT * FROM iterations WHERE {scope} ORDER BY run_id, n", args))
    checks = _by_iteration(ledger.query(f"SELECT * FROM checks WHERE {scope} ORDER BY rowid", args))
    extra = ", messages" if messages else ""
    calls = _by_run(ledger.query(
        "SELECT id, run_id, iteration, role, model, prompt_tokens, completion_tokens, cost_usd, latency_ms, cached, error, "
        f"response, created_at, json_extract(messages, '$[#-1].role') AS sent_role, "
        f"json_extract(messages, '$[#-1].content') AS sent{extra} FROM calls WHERE {scope} ORDER BY created_at, rowid", args))
    tools = _by_iteration(ledger.query(f"SELECT * FROM tool_calls WHERE {scope} ORDER BY iteration, step", args)
                          if _has_table(ledger, "tool_calls") else [])
    events = _by_run(ledger.query(f"SELECT run_id, kind, detail, created_at FROM events WHERE {scope} ORDER BY id", args))
    for run in runs:
        run["case"] = json.loads(run.pop("case_json") or "{}")
        run["events"] = [{**e, "detail": json.loads(e["detail"] or "{}")} for e in events.get(run["id"], [])]
        run["steps"] = iterations.get(run["id"], [])
        mine = calls.get(run["id"], [])
        if messages:
            mine = [{**c, "messages": json.loads(c["messages"] or "[]")} for c in mine]
        for it in run["steps"]:
            key = (run["id"], it["n"])
            it["checks"], it["tool_calls"] = checks.get(key, []), tools.get(key, [])
            it["calls"] = [c for c in mine if c["iteration"] == it["n"]]
        # Calls of an iteration that never committed (interrupted, budget-stopped) were paid for all the same.
        known = {it["n"] for it in run["steps"]}
        run["orphan_calls"] = [c for c in mine if c["iteration"] not in known]
    return runs


def _by_run(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["run_id"], []).append(row)
    return out


def _by_iteration(rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault((row["run_id"], row["iteration"]), []).append(row)
    return out


def _has_table(ledger: Ledger, name: str) -> bool:
    return ledger.one("SELECT 1 AS x FROM sqlite_master WHERE type='table' AND name=?", (name,)) is not None


def batch_call_totals(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """What a batch's calls cost: calls, cost_usd, prompt/completion tokens, cached calls, failed calls."""
    row = ledger.one(
        "SELECT COUNT(*) AS calls, TOTAL(cost_usd) AS cost_usd, CAST(TOTAL(prompt_tokens) AS INTEGER) AS prompt_tokens, "
        "CAST(TOTAL(completion_tokens) AS INTEGER) AS completion_tokens, COALESCE(SUM(cached), 0) AS cached_calls, "
        "COALESCE(SUM(error IS NOT NULL), 0) AS errors FROM calls WHERE batch_id=?", (batch_id,))
    return row or {}


def batch_cost_by_model(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    """Spend per (model, role) of a batch, highest first."""
    return ledger.query(
        "SELECT model, role, COUNT(*) AS calls, TOTAL(cost_usd) AS cost_usd, CAST(TOTAL(prompt_tokens) AS INTEGER) AS prompt_tokens, "
        "CAST(TOTAL(completion_tokens) AS INTEGER) AS completion_tokens, COALESCE(SUM(cached), 0) AS cached_calls "
        "FROM calls WHERE batch_id=? GROUP BY model, role ORDER BY cost_usd DESC, calls DESC, model", (batch_id,))


def call_latencies(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    """(model, role, latency_ms) of every call that reached a model (cached and failed calls left out)."""
    return ledger.query("SELECT model, role, latency_ms FROM calls WHERE batch_id=? AND cached=0 AND error IS NULL "
                        "AND latency_ms IS NOT NULL", (batch_id,))


def escalation_spend(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    """Each escalation of a batch's runs: to a model (`to`) or a person (`human`), after which iteration,
    what the run spent from then on, and how the run ended."""
    return ledger.query(
        "SELECT e.run_id, r.case_id, r.status, r.success, json_extract(e.detail, '$.iteration') AS iteration, "
        "json_extract(e.detail, '$.to') AS to_model, json_extract(e.detail, '$.human') AS human, "
        "(SELECT TOTAL(c.cost_usd) FROM calls c WHERE c.run_id = e.run_id "
        " AND c.iteration > json_extract(e.detail, '$.iteration')) AS cost_after "
        "FROM events e JOIN runs r ON r.id = e.run_id WHERE r.batch_id=? AND e.kind='escalation' ORDER BY e.id", (batch_id,))


def spend_series(ledger: Ledger, *, since: str | None, until: str | None, bucket: str, by: str) -> list[dict[str, Any]]:
    """Spend per (time bucket, model or spec) of the calls made in [since, until), in time order."""
    where, args = [], []
    for clause, value in (("c.created_at >= ?", since), ("c.created_at < ?", until)):
        if value is not None:
            where.append(clause)
            args.append(value)
    join = " LEFT JOIN runs r ON r.id = c.run_id" if by == "spec" else ""
    return ledger.query(
        f"SELECT {BUCKETS[bucket]} AS bucket, {SERIES[by]} AS series, TOTAL(c.cost_usd) AS cost_usd, COUNT(*) AS calls "
        f"FROM calls c{join}" + (" WHERE " + " AND ".join(where) if where else "") + " GROUP BY 1, 2 ORDER BY 1, 2", args)


def variant_runs(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    """An A/B batch's runs with their answers, for the cases the variants disagree on."""
    return ledger.query("SELECT id, variant, case_id, repeat, status, stop_reason, success, reward, iterations, cost_usd, output, "
                        "suspect, started_at FROM runs WHERE batch_id=? ORDER BY started_at, id", (batch_id,))
