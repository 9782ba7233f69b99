"""The run page: one case's loop in full, every message of every call included."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..ledger import Ledger
from ..ledger.report_queries import run_details
from . import charts
from .batch_page import attach_human, case_row


def run_page(ledger: Ledger, run_id: str) -> dict[str, Any]:
    found = run_details(ledger, run_id=run_id, messages=True)
    if not found:
        raise UsageError(f"no run {run_id}")
    attach_human(ledger, found, run_id=run_id)
    run = found[0]
    run["row"] = case_row(run)
    its = run["steps"]
    chart = charts.line_chart(
        "Reward by iteration", [charts.Series("reward", [(it["n"], it["reward"]) for it in its])], x_label="iteration",
        y_label="reward", y_range=(0.0, 1.0), y_fmt=lambda v: f"{v:.1f}", x_fmt=lambda v: f"{v:.0f}") if len(its) > 1 else None
    return {"run": run, "chart": chart, "limit": None}
