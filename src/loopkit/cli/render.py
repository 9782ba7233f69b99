"""Tables and documents shared by several commands."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .app import money

STATUS_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "needs_review": "yellow", "interrupted": "yellow"}


def short(text: str | None, limit: int = 60) -> str:
    text = (text or "").strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def runs_table(rows: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in [("run", "left"), ("case", "left"), ("spec", "left"), ("status", "left"), ("stop", "left"),
                          ("reward", "right"), ("iters", "right"), ("cost", "right"), ("started", "left")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        style = STATUS_STYLE.get(r["status"], "")
        flag = " ⚠" if r.get("suspect") else ""
        table.add_row(r["id"][:10], short(str(r["case_id"]), 20), short(r["spec_name"], 20), f"[{style}]{r['status']}[/]{flag}",
                      r.get("stop_reason") or "", f"{r['reward']:.2f}" if r.get("reward") is not None else "-",
                      str(r.get("iterations") or 0), money(r.get("cost_usd")), (r.get("started_at") or "")[:19].replace("T", " "))
    return table


def public_run(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row as --json shows it (no internal resume state)."""
    return {k: v for k, v in row.items() if k not in ("state", "case_json")}
