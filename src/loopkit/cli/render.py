"""Tables and documents shared by several commands.

Every piece of user data (case ids, spec names, outputs, feedback, messages) reaches rich as `Text`;
loopkit's own emphasis is a `Text` style, never markup, so nothing a model writes can break a table.
"""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from .app import money

STATUS_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "needs_review": "yellow", "interrupted": "yellow",
                "running": "cyan"}


def status_text(status: str | None, suffix: str = "") -> Text:
    """A run status in its colour (any status, known or not, prints as itself)."""
    return Text.assemble((status or "-", STATUS_STYLE.get(status or "", "")), suffix)


def pass_mark(passed: Any) -> Text:
    return Text("pass", style="green") if passed else Text("fail", style="red")


def short(text: str | None, limit: int = 60) -> str:
    text = (text or "").strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def runs_table(rows: list[dict[str, Any]], *, title: str | None = None, one_batch: bool = False) -> Table:
    """Runs as a table. `one_batch`: the rows share a spec and a start, so those columns are left out."""
    table = Table(title=Text(title) if title else None, title_justify="left")
    columns = [("run", "left"), ("case", "left"), ("spec", "left"), ("status", "left"), ("stop", "left"),
               ("reward", "right"), ("iters", "right"), ("cost", "right"), ("started", "left")]
    if one_batch:
        columns = [c for c in columns if c[0] not in ("spec", "started")]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "case")  # type: ignore[arg-type]
    for r in rows:
        flag = " ⚠" if r.get("suspect") else ""
        cells = {"run": r["id"][:10], "case": short(str(r["case_id"]), 30), "spec": short(r["spec_name"], 20),
                 "status": status_text(r["status"], flag), "stop": r.get("stop_reason") or "",
                 "reward": f"{r['reward']:.2f}" if r.get("reward") is not None else "-", "iters": str(r.get("iterations") or 0),
                 "cost": money(r.get("cost_usd")), "started": (r.get("started_at") or "")[:19].replace("T", " ")}
        table.add_row(*(Text(c) if isinstance(c, str) else c for c in (cells[name] for name, _ in columns)))
    return table


def public_run(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row as --json shows it: the case as an object, no internal resume state."""
    shown = {k: v for k, v in row.items() if k not in ("state", "case_json")}
    if row.get("case_json") is not None:
        shown["case"] = json.loads(row["case_json"])
    return shown
