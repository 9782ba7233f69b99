"""`loopkit ab`: paired A/B test of two loop specs, and the A/B report (also used by `loopkit show`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

from ..errors import SpecError, UsageError
from .app import JsonOpt, LedgerOpt, app, err, ledger_option, print_json
from .report_cmd import report_option
from .run_cmd import AddressOpt, EngineOpt


def print_ab(report: dict[str, Any], *, as_json: bool) -> None:
    """An A/B report as JSON or as the terminal table (`ab`, `ab --show`, `show` of an ab batch)."""
    from .render_ab import render_ab

    if as_json:
        print_json(report)
    else:
        render_ab(report)


def show_ab(store: Any, batch_id: str, *, as_json: bool) -> dict[str, Any]:
    """Recompute and print the report of a stored ab batch."""
    from ..ab_report import ab_report
    from ..views import ABReport

    shown = ABReport.of(ab_report(store, batch_id))  # as `loopkit.show` reads an ab batch
    print_ab(shown.to_dict(), as_json=as_json)
    return shown.to_dict()


def _finish(report: dict[str, Any], *, as_json: bool) -> NoReturn:
    """Print the report of a test that just ran, append it to $GITHUB_STEP_SUMMARY, exit with its code."""
    from .render_ab import append_ab_summary

    print_ab(report, as_json=as_json)
    append_ab_summary(report)
    raise typer.Exit(report["exit_code"])


def resume_ab_batch(store: Any, batch_id: str, *, concurrency: int | None, max_usd: float | None, retry_errors: bool,
                    as_json: bool, engine: Any = None) -> NoReturn:
    """`loopkit resume` of an ab batch: finish it with its saved specs, options and seed, then report as `ab` does."""
    if retry_errors:
        raise UsageError("--retry-errors does not apply to an A/B batch: a run's error counts as that variant failing the case")
    from ..ab import resume_ab
    from .progress import batch_progress

    with batch_progress(not as_json) as on_progress:
        try:
            report = resume_ab(store, batch_id, concurrency=concurrency, max_usd=max_usd, argv=sys.argv[1:], on_progress=on_progress,
                               engine=engine)
        except KeyboardInterrupt:
            err.print(f"interrupted again: `loopkit resume {batch_id[:10]}` continues", markup=False)
            raise typer.Exit(130) from None
    _finish(report, as_json=as_json)


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
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Run each case K times per variant; the tests average them into one unit per case.")] = 1,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Runs in flight at once (both variants).")] = 16,
    max_usd: Annotated[Optional[float], typer.Option("--max-usd", min=0, help="Budget in USD across both variants (with the specs' total_usd, the lowest wins).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Level of the anytime-valid tests that declare a winner (0 < alpha < 1).")] = 0.05,
    margin: Annotated[Optional[float], typer.Option("--margin", metavar="M", help="Also ask whether B is as good as A within M (0.02 = 2 points of success rate) and cheaper per case: adds anytime-valid non-inferiority and cost tests (alpha split over 4 tests).", show_default=False)] = None,
    human_usd_per_hour: Annotated[Optional[float], typer.Option("--human-usd-per-hour", min=0, help="Price a person's minutes in both variants (instead of each spec's human_rate): cost per case and per success include them.", show_default=False)] = None,
    no_early_stop: Annotated[bool, typer.Option("--no-early-stop", help="Run every case even once the verdict is clear.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the shuffled case order and of which variant runs first; default: drawn at random and recorded with the batch.", show_default=False)] = None,
    max_retries: Annotated[int, typer.Option("--max-retries", min=1, help="Attempts per model call (rate limits, 5xx, timeouts).")] = 6,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", help="Label the batch: key=value (repeatable).")] = None,
    show: Annotated[Optional[str], typer.Option("--show", metavar="ID", help="Re-render a stored ab batch instead of running one.")] = None,
    html: Annotated[Optional[Path], typer.Option("--report", help="Write the test's HTML report (one self-contained file) here.")] = None,
    engine: EngineOpt = "asyncio",
    address: AddressOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Paired A/B test of two loops on the same cases; stops early once an anytime-valid test names a winner.

    With --margin it asks "is B as good, and cheaper?": it stops once B is shown better, worse or within the
    margin, and cheaper or dearer per case.

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
    if margin is not None and not 0.0 <= margin < 1.0:
        raise UsageError(f"--margin {margin:g}: use a fraction of the success rate, e.g. 0.02 for 2 points")

    from ..ab import ABOptions, ABTest
    from ..ray_engine import engine_for
    from .progress import batch_progress
    from .run_cmd import _tags

    runner = engine_for(engine, address)  # a missing Ray is exit 2 before anything else
    spec_a, spec_b = _load_both(specs)
    labels = _tags(tag)
    store = Ledger(ledger_option(ctx, ledger))
    options = ABOptions(inputs=inputs, repeat=repeat, concurrency=concurrency, max_usd=max_usd, alpha=alpha,
                        early_stop=not no_early_stop, no_cache=no_cache, max_retries=max_retries, seed=seed, margin=margin,
                        human_usd_per_hour=human_usd_per_hour)
    with batch_progress(not as_json) as on_progress:
        test = ABTest(spec_a, spec_b, store, options, argv=sys.argv[1:], tags=labels, on_progress=on_progress, engine=runner)
        try:
            report = test.run()
        except KeyboardInterrupt:
            err.print(f"interrupted: ab batch {test.batch_id[:10]} saved; `loopkit resume {test.batch_id[:10]}` continues it, "
                      f"`loopkit ab --show {test.batch_id[:10]}` shows the cases that finished", markup=False)
            raise typer.Exit(130) from None
    report_option(store, html, test.batch_id)
    _finish(report, as_json=as_json)
