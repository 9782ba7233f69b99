"""`loopkit ab`: paired A/B test of two loop specs, and the A/B report (also used by `loopkit show`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..errors import SpecError, UsageError
from .app import JsonOpt, LedgerOpt, app, err, ledger_option, out, print_json


def render_ab(report: dict[str, Any]) -> None:
    """The A/B report on the terminal: metrics table with deltas, intervals and p-values, then the verdict."""
    from ..ab_report import report_title, ab_table_rows, sequential_lines

    level = f"{1 - report['alpha']:.0%}"
    table = Table(title=report_title(report), title_justify="left")
    for name, justify in (("metric", "left"), ("A", "right"), ("B", "right"), (f"Δ B − A [{level} CI]", "right"), ("p", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in ab_table_rows(report):
        table.add_row(*row)
    out.print(table)
    for line in sequential_lines(report):
        out.print(line, markup=False)
    if report["not_run_budget"]:
        out.print(f"[red]the batch budget kept {report['not_run_budget']} run(s) from starting[/]")
    if report["errors"]:
        out.print(f"[magenta]{report['errors']} run(s) ended in model/infrastructure errors[/]")
    for note in report["notes"][1:]:
        out.print(f"note: {note}", markup=False, style="dim")
    style = "bold green" if report["verdict"]["winner"] else "bold"
    out.print(f"verdict: {report['verdict']['text']}", markup=False, style=style)


def show_ab(store: Any, batch_id: str, *, as_json: bool) -> dict[str, Any]:
    """Recompute and print the report of a stored ab batch."""
    from ..ab_report import ab_report

    report = ab_report(store, batch_id)
    if as_json:
        print_json(report)
    else:
        render_ab(report)
    return report


def _load_both(paths: list[Path]) -> tuple[Any, Any]:
    """Both specs, or every problem of both at once (exit 2)."""
    from ..spec import load_spec

    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append(load_spec(path))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return loaded[0], loaded[1]


@app.command()
def ab(
    ctx: typer.Context,
    specs: Annotated[Optional[list[Path]], typer.Argument(metavar="A.yaml B.yaml", help="The two loop specs: A (baseline) and B.", show_default=False)] = None,
    inputs: Annotated[Optional[str], typer.Option("--inputs", help="Cases file (.jsonl/.csv/.yaml) instead of A's inputs.")] = None,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Run each case K times per variant (K pairs per case).")] = 1,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Runs in flight at once (both variants).")] = 16,
    max_usd: Annotated[Optional[float], typer.Option("--max-usd", min=0, help="Budget in USD across both variants (with the specs' total_usd, the lowest wins).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Level of the anytime-valid tests that declare a winner (0 < alpha < 1).")] = 0.05,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop", help="Run every case even once the verdict is clear.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the per-pair A/B order.")] = 0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=1, help="Attempts per model call (rate limits, 5xx, timeouts).")] = 6,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", help="Label the batch: key=value (repeatable).")] = None,
    show: Annotated[Optional[str], typer.Option("--show", metavar="ID", help="Re-render a stored ab batch instead of running one.")] = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Paired A/B test of two loops on the same cases; stops early once an anytime-valid test names a winner.

    Exit 2 on a bad spec or usage, 3 when the batch budget kept cases from running, 4 when runs ended in errors.
    """
    from ..ledger import Ledger

    if show is not None:
        if specs:
            raise UsageError("--show takes a batch ID and no spec files")
        store = Ledger(ledger_option(ctx, ledger), readonly=True)
        kind, full = store.resolve(show)
        if kind != "batch":
            raise UsageError(f"{show} is a run; --show takes an ab batch ID")
        show_ab(store, full, as_json=as_json)
        return
    if not specs or len(specs) != 2:
        raise UsageError(f"ab takes exactly two spec files (A.yaml B.yaml), got {len(specs or [])}")
    if not 0.0 < alpha < 1.0:
        raise UsageError(f"--alpha {alpha:g}: use a level between 0 and 1, e.g. 0.05")

    from ..ab import ABOptions, ABTest
    from ..ab_report import append_ab_summary
    from .progress import batch_progress
    from .run_cmd import _tags

    spec_a, spec_b = _load_both(specs)
    labels = _tags(tag)
    store = Ledger(ledger_option(ctx, ledger))
    options = ABOptions(inputs=inputs, repeat=repeat, concurrency=concurrency, max_usd=max_usd, alpha=alpha,
                        early_stop=not no_early_stop, no_cache=no_cache, max_retries=max_retries, seed=seed)
    with batch_progress(not as_json) as on_progress:
        test = ABTest(spec_a, spec_b, store, options, argv=sys.argv[1:], tags=labels, on_progress=on_progress)
        try:
            report = test.run()
        except KeyboardInterrupt:
            err.print(f"interrupted: ab batch {test.batch_id[:10]} saved; `loopkit ab --show {test.batch_id[:10]}` shows the pairs "
                      "that finished", markup=False)
            raise typer.Exit(130) from None
    if as_json:
        print_json(report)
    else:
        render_ab(report)
    append_ab_summary(report)
    raise typer.Exit(report["exit_code"])
