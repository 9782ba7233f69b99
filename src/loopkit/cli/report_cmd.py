"""`loopkit report`: write one self-contained HTML page; never imports litellm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .app import JsonOpt, LedgerOpt, app, err, ledger_option, out, print_json

DEFAULT_OUTPUT = Path("report.html")


def report_option(store: Any, path: Path | None, batch_id: str) -> None:
    """`run --report FILE`, `ab --report FILE`: the batch's page, noted on stderr (stdout may carry --json)."""
    if path is None:
        return
    from ..html import write_report

    written = write_report(store, path, target=batch_id)
    err.print(f"report: {path} ({written.title})", markup=False)


@app.command()
def report(
    ctx: typer.Context,
    id: Annotated[Optional[str], typer.Argument(metavar="ID", help="A batch, A/B test or run (ID or unique prefix); "
                                                "default: the latest batch.", show_default=False)] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Instead of a batch: the cost of the calls made at or after "
                                                 "this time (now, today, yesterday, 30m, 2h, 7d, 2w, 2026-11-20 or 2026-11-20T14:30).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="With a cost page: calls before this time (exclusive).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Write the page here.")] = DEFAULT_OUTPUT,
    open_it: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Write one self-contained HTML page (no network needed to view it) for a batch, an A/B test, a run,
    or the spend of a time window (--since/--until): charts, every case down to its calls, all text escaped."""
    from ..ledger import Ledger
    from ..timewindow import parse_time, to_iso

    since_iso = to_iso(parse_time(since)) if since else None
    until_iso = to_iso(parse_time(until)) if until else None
    from ..html import write_report

    with Ledger(ledger_option(ctx, ledger), readonly=True) as store:
        written = write_report(store, output, target=id, since=since_iso, until=until_iso)
    size = output.stat().st_size
    if open_it:
        import webbrowser

        webbrowser.open(output.resolve().as_uri())
    if as_json:
        print_json({"path": str(output), "kind": written.kind, "id": written.id, "title": written.title, "bytes": size})
    else:
        out.print(f"wrote {output} ({size / 1024:,.0f} KB): {written.title}", markup=False)
