"""`loopkit cost`: spend, tokens and calls in a time window; never imports litellm."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from .app import JsonOpt, LedgerOpt, app, ledger_option, money, out, print_json

BY_CHOICES = ("model", "spec", "day", "batch")


def _local(iso: str) -> str:
    from ..formatting import local_time

    return local_time(iso)


def _window_text(since: str | None, until: str | None) -> str:
    if since and until:
        return f"from {_local(since)} to {_local(until)}"
    if since:
        return f"since {_local(since)}"
    if until:
        return f"before {_local(until)}"
    return "all time"


def _group_label(by: str, group: dict[str, Any]) -> str:
    key = group["key"]
    if key is None:
        return "(none)"
    if by == "batch":
        spec = f" {group.get('spec_name')}" if group.get("spec_name") else ""
        return f"{str(key)[:10]}{spec}"
    return str(key)


def _print_report(report: dict[str, Any], human_rate: float | None = None) -> None:
    from rich.text import Text

    from .render import Column, fitted_table

    total, roles, by = report["total"], report["roles"], report["by"]
    out.print(Text.assemble((f"spend {money(total['cost_usd'])}", "bold"),
                            f" in {total['calls']:,} calls, {_window_text(report['since'], report['until'])}"))
    parts = [f"{role} {money(r['cost_usd'])} ({r['calls']:,} calls)" for role, r in roles.items() if r["calls"] or role in ("worker", "judge")]
    out.print("  " + " · ".join(parts), markup=False)
    out.print(f"  tokens {total['prompt_tokens']:,} prompt + {total['completion_tokens']:,} completion", markup=False)
    cached = f"  cached {total['cached_calls']:,} calls, saved ≈ {money(total['saved_usd'])} (the cost of each one's original call)"
    if total["cached_without_original"]:
        cached += f"; {total['cached_without_original']:,} without an original in the ledger"
    out.print(cached, markup=False)
    if total["errors"]:
        out.print(f"  failed calls {total['errors']:,}", markup=False)
    human = bool(total["human_reviews"])
    if human:
        out.print(f"  {_human_line(total, human_rate)}", markup=False)
    if not by:
        return
    # The group's name stays whole (a model id like openrouter/anthropic/claude-3.5-sonnet-20241022); on a narrow
    # terminal the per-role and cache columns give way first (the lines above carry them for the whole window).
    columns = [Column(by, flexible=True, min_width=200, footer="total"), Column("spend", "right", footer=money(total["cost_usd"])),
               Column("worker", "right", drop=7, footer=money(roles["worker"]["cost_usd"])),
               Column("judge", "right", drop=6, footer=money(roles["judge"]["cost_usd"])),
               Column("calls", "right", drop=2, footer=f"{total['calls']:,}"),
               Column("cached", "right", drop=4, footer=f"{total['cached_calls']:,}"),
               Column("saved", "right", drop=5, footer=money(total["saved_usd"])),
               Column("prompt tok", "right", drop=3, footer=f"{total['prompt_tokens']:,}"),
               Column("compl. tok", "right", drop=3, footer=f"{total['completion_tokens']:,}")]
    rows = [[_group_label(by, g), money(g["cost_usd"]), money(g["worker_usd"]), money(g["judge_usd"]), f"{g['calls']:,}",
             f"{g['cached_calls']:,}", money(g["saved_usd"]), f"{g['prompt_tokens']:,}", f"{g['completion_tokens']:,}"]
            for g in report["groups"]]
    if human:  # a person's time beside model spend, never added into it
        columns[2:2] = [Column("human min", "right", footer=f"{total['human_minutes']:,.0f}"),
                        Column("human $", "right", footer=money(total["human_usd"]))]
        for row, g in zip(rows, report["groups"]):
            row[2:2] = [f"{g['human_minutes']:,.0f}" if g["human_reviews"] else "-", money(g["human_usd"]) if g["human_reviews"] else "-"]
    table = fitted_table(columns, rows, title=f"by {by}")
    out.print(table)


def _human_line(total: dict[str, Any], rate: float | None) -> str:
    """human 35 min in 7 reviews, $52.50 — a person's time, apart from model spend."""
    line = f"human {total['human_minutes']:,.0f} min in {total['human_reviews']:,} review(s), {money(total['human_usd'])}"
    if rate is not None:
        return line + f" (every minute at ${rate:g}/h)"
    if total["human_unpriced_minutes"]:
        line += f"; {total['human_unpriced_minutes']:,.0f} min without a rate (set human_rate, or --human-usd-per-hour)"
    return line + " (a person's time, apart from model spend)"


@app.command()
def cost(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option("--since", help="Calls made at or after: now, today, yesterday, 30m, 2h, 7d, 2w, "
                                                 "2026-11-20 or 2026-11-20T14:30 (local time unless an offset is given).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Calls made before this time (exclusive); same forms as --since.")] = None,
    by: Annotated[Optional[str], typer.Option("--by", metavar="model|spec|day|batch",
                                              help="A table per model, spec, local calendar day or batch, by spend.")] = None,
    human_usd_per_hour: Annotated[Optional[float], typer.Option("--human-usd-per-hour", min=0, help="Price every minute of a "
                                                                "person's reviews at this rate instead of the one recorded with it.")] = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Spend, tokens and calls in a time window, worker and judge apart; a person's review time beside it.

    Cached calls cost nothing; what they saved is the cost of the original call with the same cache key.
    Human minutes (`loopkit review --minutes`) are kept apart from model spend, priced at the spec's human_rate.
    """
    from ..errors import UsageError
    from ..ledger import Ledger
    from ..ledger.costs import cost_report
    from ..timewindow import parse_time, to_iso

    if by is not None and by not in BY_CHOICES:
        raise UsageError(f"--by {by!r}: use one of {', '.join(BY_CHOICES)}")
    since_iso = to_iso(parse_time(since)) if since else None
    until_iso = to_iso(parse_time(until)) if until else None
    with Ledger(ledger_option(ctx, ledger), readonly=True) as store:
        report = cost_report(store, since=since_iso, until=until_iso, by=by, human_usd_per_hour=human_usd_per_hour)
    if as_json:
        print_json(report)
        return
    _print_report(report, human_usd_per_hour)
