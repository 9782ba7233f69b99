"""Tables and documents shared by several commands.

Every piece of user data (case ids, spec names, outputs, feedback, messages) reaches rich as `Text`;
loopkit's own emphasis is a `Text` style, never markup, so nothing a model writes can break a table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from ..formatting import local_time, local_zone
from .app import money, out

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


@dataclass(frozen=True)
class Column:
    """A column of a table that fits the terminal: `drop` > 0 columns may be left out when narrow (highest
    first); the one `flexible` column folds its text to fit, everything else stays on one line, uncut."""

    name: str
    justify: str = "left"
    drop: int = 0
    flexible: bool = False
    min_width: int = 12
    footer: str | None = None


def fitted_table(columns: list[Column], rows: list[list[str | Text]], *, width: int | None = None, title: str | None = None) -> Table:
    """A table no wider than `width` (the console's): left-out columns are named in its caption."""
    width = width or out.width
    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    natural = [max([cell_len(col.name), cell_len(col.footer or "")] + [row[i].cell_len for row in cells]) for i, col in enumerate(columns)]
    kept = list(range(len(columns)))

    def needed() -> int:  # a box edge, then per column two of padding and a border
        return 1 + sum(3 + (min(natural[i], columns[i].min_width) if columns[i].flexible else natural[i]) for i in kept)

    droppable = sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop)
    for i in droppable:
        if needed() <= width:
            break
        kept.remove(i)
    for i in reversed(droppable):  # a smaller column left out on the way may fit after all
        if i not in kept:
            kept.append(i)
            kept.sort()
            if needed() > width:
                kept.remove(i)
    left_out = [columns[i].name for i in range(len(columns)) if i not in kept]
    caption = Text(f"too narrow for: {', '.join(left_out)} (see --json)", style="dim", no_wrap=False) if left_out else None
    table = Table(title=Text(title) if title else None, title_justify="left", caption=caption, caption_justify="left",
                  show_footer=any(columns[i].footer is not None for i in kept))
    for i in kept:
        col = columns[i]
        table.add_column(col.name, justify=col.justify, footer=col.footer or "", no_wrap=not col.flexible,  # type: ignore[arg-type]
                         overflow="fold", min_width=min(natural[i], col.min_width) if col.flexible else natural[i])
    for row in cells:
        table.add_row(*(row[i] for i in kept))
    return table


def runs_table(rows: list[dict[str, Any]], *, title: str | None = None, one_batch: bool = False, width: int | None = None) -> Table:
    """Runs as a table that fits the terminal. `one_batch`: the rows share a spec and a start, so those
    columns are left out. Start times are local; the zone is named once in the header when all rows share it."""
    zones = {local_zone(r.get("started_at")) for r in rows}
    one_zone = next(iter(zones)) if len(zones) == 1 else None
    columns = [Column("run"), Column("case", flexible=True, min_width=16), Column("spec", drop=2, flexible=False),
               Column("status"), Column("stop", drop=3), Column("reward", "right", drop=1), Column("iters", "right", drop=4),
               Column("cost", "right"), Column(f"started ({one_zone})" if one_zone else "started")]
    if one_batch:
        columns = [c for c in columns if c.name != "spec" and not c.name.startswith("started")]
    table_rows = []
    for r in rows:
        flag = " ⚠" if r.get("suspect") else ""
        cells = {"run": r["id"][:10], "case": short(str(r["case_id"]), 80), "spec": short(r["spec_name"], 30),
                 "status": status_text(r["status"], flag), "stop": r.get("stop_reason") or "",
                 "reward": f"{r['reward']:.2f}" if r.get("reward") is not None else "-", "iters": str(r.get("iterations") or 0),
                 "cost": money(r.get("cost_usd")),
                 "started": local_time(r.get("started_at"), seconds=False, with_zone=one_zone is None)}
        table_rows.append([cells[c.name.split(" ")[0]] for c in columns])
    return fitted_table(columns, table_rows, width=width, title=title)


def error_lines(kinds: list[dict[str, Any]]) -> list[Text]:
    """Why runs errored: each kind with its count and its first message (`show RUN` has that run whole)."""
    if not kinds:
        return []
    total = sum(k["runs"] for k in kinds)
    lines = [Text(f"why {total:,} run{'s' if total != 1 else ''} errored:", style="magenta")]
    for k in kinds:
        lines.append(Text.assemble(f"  {k['runs']:,} × ", (k["kind"], "bold"), f": {short(k['message'], 240) or '-'}",
                                   (f" (first: run {k['run_id'][:10]}, case {short(str(k['case_id']), 40)})", "dim")))
    return lines


def cache_line(use: dict[str, Any]) -> str:
    """answered from the cache: 3 of 3 calls; would have cost $0.0123 (what the original calls cost)."""
    text = f"answered from the cache: {use['cached']:,} of {use['calls']:,} calls; would have cost {money(use['would_have_cost_usd'])}"
    if use["without_original"]:
        text += f" (and {use['without_original']:,} whose original call was not in the ledger)"
    return text


def suspect_lines(suspects: list[dict[str, Any]], total: int) -> list[Text]:
    """Runs that passed their reward but failed an audit: the first few, and how many more."""
    lines = [Text(f"⚠ run {r['id'][:10]} (case {r['case_id']}): {r['suspect']}", style="yellow") for r in suspects]
    if total > len(suspects):
        lines.append(Text(f"⚠ … and {total - len(suspects):,} more: loopkit runs --suspect", style="yellow"))
    return lines


def more_runs_line(shown: int, total: int, batch_id: str) -> list[Text]:
    """Under a batch's first runs: how to list the rest."""
    if total <= shown:
        return []
    return [Text(f"showing {shown:,} of {total:,} runs; loopkit runs --batch {batch_id[:10]} --limit {total} for all", style="dim")]


def public_run(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row as --json shows it: the case as an object, no internal resume state."""
    shown = {k: v for k, v in row.items() if k not in ("state", "case_json")}
    if row.get("case_json") is not None:
        shown["case"] = json.loads(row["case_json"])
    return shown
