"""`loopkit fleet run | status | resume-loop`: many loops under one budget and one reviewer capacity."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from .app import JsonOpt, LedgerOpt, app, err, ledger_option, money, out, print_json
from .run_cmd import AddressOpt, EngineOpt

fleet_app = typer.Typer(help="Run many loops under one budget, one reviewer capacity and one time window.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(fleet_app, name="fleet")

FleetArg = Annotated[Path, typer.Argument(metavar="FLEET", help="The fleet file (YAML).")]


@fleet_app.command("run")
def run(
    ctx: typer.Context,
    fleet: FleetArg,
    once: Annotated[bool, typer.Option("--once", help="Outside the window (or with the day's budget spent) exit instead of "
                                        "waiting: for cron.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    max_retries: Annotated[int, typer.Option("--max-retries", min=1, help="Attempts per model call (rate limits, 5xx, timeouts).")] = 6,
    engine: EngineOpt = "asyncio",
    address: AddressOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Drain the loops' cases, higher priority first, under the fleet's budget, reviewer minutes and window.

    Rerun it (or after a crash) and finished cases are skipped. Exit 3 when the total budget kept cases from
    running, 4 when runs ended in errors."""
    from ..fleet import load_fleet
    from ..fleet.runner import FleetOptions, FleetRun
    from ..ledger import Ledger
    from ..ray_engine import engine_for

    runner_engine = engine_for(engine, address)  # a missing Ray is exit 2 before anything else
    plan = load_fleet(fleet)
    store = Ledger(ledger_option(ctx, ledger))
    def note(text: str) -> None:
        err.print(Text(text, style="dim"))

    runner = FleetRun(plan, store, FleetOptions(once=once, no_cache=no_cache, max_retries=max_retries, argv=sys.argv[1:],
                                                on_note=None if as_json else note, engine=runner_engine))
    try:
        result = runner.run()
    except KeyboardInterrupt:
        err.print(f"interrupted: run `loopkit fleet run {fleet}` again to go on; finished cases are skipped", markup=False)
        raise typer.Exit(130) from None
    if as_json:
        print_json({"fleet_id": result.fleet_id, "name": result.name, "status": result.status, "spent_usd": result.spent_usd,
                    "loops": result.loops, "exit_code": result.exit_code})
        raise typer.Exit(result.exit_code)
    table = Table(title=Text(f"fleet {result.name} · {result.status}"))
    for column in ("loop", "priority", "ran", "skipped (done before)", "not run (budget)", "errors", "state"):
        table.add_column(column)
    for lp in result.loops:
        state = f"paused: {lp['paused']}" if lp["paused"] else (f"out of its {lp['out_of_money']}" if lp["out_of_money"] else
                                                                 "drained" if lp["drained"] else "queued")
        table.add_row(Text(lp["loop"]), str(lp["priority"]), str(lp["finished"]), str(lp["skipped"]), str(lp["not_run_budget"]),
                      str(lp["errors"]), Text(state))
    out.print(table)
    out.print(Text(f"spent {money(result.spent_usd)} in all · `loopkit fleet status {fleet}` for shares, reviews and the ETA"))
    raise typer.Exit(result.exit_code)


@fleet_app.command("status")
def status(
    ctx: typer.Context,
    fleet: Annotated[Optional[str], typer.Argument(metavar="[FLEET]", help="A fleet file, or a fleet's name or ID; default: "
                                                   "the latest fleet.")] = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Per loop: spent and left of its share, cases done and queued, pass rate, cost per success, reviews
    pending, paused and why; the day's budget and reviewer minutes left; the ETA at the current rate."""
    from ..fleet.status import fleet_status
    from ..ledger import Ledger

    store = Ledger(ledger_option(ctx, ledger), readonly=True)
    path = str(Path(fleet).resolve()) if fleet and Path(fleet).is_file() else None
    report = fleet_status(store, None if path else fleet, path=path)
    if as_json:
        print_json(report)
        return
    _print_status(report)


def _usd(value: float | None) -> str:
    return "-" if value is None else money(value)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 5400 else f"{seconds / 3600:.1f}h"


def _print_status(report: dict[str, Any]) -> None:
    table = Table(title=Text(f"fleet {report['name']} · {report['status']}"))
    for column in ("loop", "prio", "spent", "left of share", "done", "queued", "pass rate", "$/success", "reviews", "ETA", "paused"):
        table.add_column(column)
    for lp in report["loops"]:
        reviews = f"{lp['reviews_pending']}" + (f" ({lp['reviews_held']} held)" if lp["reviews_held"] else "")
        table.add_row(Text(lp["loop"]), str(lp["priority"]), money(lp["spent_usd"]), _usd(lp["left_usd"]), str(lp["done"]),
                      str(lp["queued"]), "-" if lp["pass_rate"] is None else f"{lp['pass_rate']:.0%}", _usd(lp["cost_per_success_usd"]),
                      reviews, _eta(lp["eta_seconds"]), Text(lp["paused_why"] or "no"))
    out.print(table)
    b, r = report["budget"], report["reviewers"]
    day = f"today {money(b['spent_today_usd'])}" + (f" of {money(b['usd_per_day'])} ({_usd(b['left_today_usd'])} left)" if b["usd_per_day"] else "")
    total = f"in all {money(b['spent_usd'])}" + (f" of {money(b['total_usd'])} ({_usd(b['left_usd'])} left)" if b["total_usd"] else "")
    out.print(Text(f"budget: {day}; {total}"))
    if r["minutes_per_day"] is not None:
        out.print(Text(f"reviewer minutes today: {r['used_today_minutes']:g} of {r['minutes_per_day']:g} used, "
                       f"{r['left_today_minutes']:g} left"))
    out.print(Text(f"queued {report['queued']} case(s) · ETA at the current rate {_eta(report['eta_seconds'])}"
                   + (f" · window {report['window']}" if report["window"] else "")))


@fleet_app.command("resume-loop")
def resume_loop(
    ctx: typer.Context,
    fleet: FleetArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The loop to un-pause (its name in the fleet).")],
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Un-pause a loop the fleet paused (a `fleet_resume` event); the next `fleet run` runs its cases again."""
    from ..fleet.pausing import resume_loop as resume

    detail = resume(ledger_option(ctx, ledger), fleet, name)
    if as_json:
        print_json(detail)
        return
    out.print(Text(f"loop {name} resumed (it was paused: {detail['was_paused']}); `loopkit fleet run {fleet}` runs it again"))
