"""`loopkit review`: the queue of runs parked for a person, and the person's decision."""

from __future__ import annotations

import getpass
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import UsageError
from .app import JsonOpt, LedgerOpt, app, ledger_option, money, out, print_json
from .render import short


@app.command()
def review(
    ctx: typer.Context,
    id: Annotated[Optional[str], typer.Argument(metavar="[ID]", help="A parked run (ID or prefix); none lists the queue.")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Mark the run passed by a person.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Mark the run failed by a person.")] = False,
    feedback: Annotated[Optional[str], typer.Option("--feedback", help="Resume the loop now with these words as feedback.")] = None,
    reviewer: Annotated[Optional[str], typer.Option("--reviewer", help="Who decides (default: $USER).")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", min=0, help="How many minutes the review took (recorded as "
                                                     "human time, priced at the spec's human_rate; default: what the "
                                                     "escalation's `minutes` expected).")] = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """List runs waiting for a person, or approve, reject, or resume one with feedback."""
    from ..ledger import Ledger
    from ..ledger.queries import review_queue

    store = Ledger(ledger_option(ctx, ledger))
    if id is None:
        if approve or reject or feedback is not None or minutes is not None:
            raise UsageError("--approve, --reject, --feedback and --minutes need a run ID")
        queue = review_queue(store)
        if as_json:
            print_json(queue)
            return
        if not queue:
            out.print("no runs wait for review")
            return
        table = Table()
        for col in ("run", "spec", "case", "message", "failed checks", "last output", "cost"):
            table.add_column(col)
        for r in queue:
            table.add_row(r["id"][:10], r["spec_name"], str(r["case_id"]), short(r["message"], 40), ", ".join(r["failed_checks"]),
                          short(r["last_output"], 40), money(r["cost_usd"]))
        out.print(table)
        return
    if sum([approve, reject, feedback is not None]) != 1:
        raise UsageError("give exactly one of --approve, --reject, --feedback TEXT")
    from ..review import decide

    kind, run_id = store.resolve(id)
    if kind != "run":
        raise UsageError(f"{id} is a batch; review takes a run ID")
    who = reviewer or getpass.getuser()
    decision = "approve" if approve else "reject" if reject else "feedback"
    result = decide(store, run_id, decision, reviewer=who, feedback=feedback, minutes=minutes)
    if as_json:
        print_json(result)
        return
    took = ""
    if result.get("minutes") is not None:
        took = f" · {result['minutes']:g} min of a person" + (f" ({money(result['usd'])})" if "usd" in result else "")
    out.print(f"run {run_id[:10]}: {result['status']} ({result['stop_reason']}) · decided by {who}{took}", markup=False)
    raise typer.Exit(0)
