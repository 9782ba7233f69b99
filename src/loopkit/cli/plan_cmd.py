"""`loopkit plan SPEC` (the loop design the ledger recommends) and `loopkit run SPEC --explore M1,M2`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.text import Text

from .app import JsonOpt, LedgerOpt, app, err, ledger_option, money, out, print_json

if TYPE_CHECKING:
    from ..plan import PlanReport
    from ..plan_model import Figures


def _fine(x: float) -> bool:
    """Whole percents would round this to 0% or 100% (or hide the gap to it): it needs a decimal."""
    return 0.995 <= x < 1 or 0 < x < 0.005


def _pct(x: float) -> str:
    return f"{x:.1%}" if _fine(x) else f"{x:.0%}"


def _pct_interval(lo: float, hi: float) -> str:
    """Both ends at one precision: 99.0%–100.0%, not 99%–100.0%."""
    lo = max(lo, 0.0)
    return f"{lo:.1%}–{hi:.1%}" if _fine(lo) or _fine(hi) else f"{lo:.0%}–{hi:.0%}"


def _interval(lo: float, hi: float, fmt: Any) -> str:
    return f"{fmt(max(lo, 0.0))}–{fmt(hi)}"


def _minutes(x: float) -> str:
    return f"{x:.2f}" if x < 1 else f"{x:.1f}"


def _print_attempts(report: PlanReport) -> None:
    from .render import Column, fitted_table

    columns = [Column("model", flexible=True, min_width=20), Column("attempt", "right"), Column("runs", "right"),
               Column("passes", "right"), Column("95% interval", "right", drop=2), Column("stalls", "right", drop=3),
               Column("step cost", "right"), Column("95% interval ", "right", drop=1)]
    rows = []
    for a in report.attempts:
        cost = a["step_usd_interval"]
        rows.append([a["model"], str(a["attempt"]), f"{a['made']:,}" + (" *" if a["small_sample"] else ""), _pct(a["pass_chance"]),
                     _pct_interval(*a["pass_interval"]), _pct(a["stall_chance"]) if a["stall_chance"] else "-",
                     money(a["step_usd"]), _interval(*cost, money) if cost else "-"])
    out.print(fitted_table(columns, rows, title="per model and attempt (after the earlier attempts on that model failed)"))
    if any(a["small_sample"] for a in report.attempts):
        from ..plan_model import SMALL_SAMPLE  # not at import: it pulls spec.schema (pydantic) into every command

        out.print(Text(f"* fewer than {SMALL_SAMPLE} runs made this attempt: a small sample, read its interval", style="dim"))


def _marks(report: PlanReport, f: Figures) -> str:
    marks = []
    if report.current is not None and f.design == report.current.design:
        marks.append("current")
    if report.chosen is not None and f.design == report.chosen.design:
        marks.append("chosen")
    flags = ("small sample" if f.small_sample else "", "beyond data" if f.beyond_data else "", "cost unknown" if f.cost_unknown else "")
    return ", ".join(marks + [x for x in flags if x])


def _print_frontier(report: PlanReport) -> None:
    from .render import Column, fitted_table

    rows_of = list(report.frontier)
    if report.current is not None and all(f.design != report.current.design for f in rows_of):
        rows_of.append(report.current)  # off the frontier: shown below it, so the gap is plain
    columns = [Column("#", "right"), Column("design", flexible=True, min_width=24), Column("accuracy", "right"),
               Column("95% interval", "right", drop=2), Column("$ / case", "right"), Column("$ / success", "right"),
               Column("human min / case", "right", drop=1), Column("", flexible=False)]
    rows = []
    for i, f in enumerate(rows_of, start=1):
        off = report.current is not None and f is report.current and i > len(report.frontier)
        rows.append(["-" if off else str(i), f.design.label, _pct(f.accuracy), _pct_interval(*f.accuracy_interval),
                     money(f.usd_per_case), money(None if f.accuracy <= 0 else f.usd_per_success),
                     _minutes(f.human_minutes) if f.design.human else "-", _marks(report, f)])
    out.print(fitted_table(columns, rows, title="cost/accuracy frontier (no design is both cheaper and more accurate)"))


def print_plan(report: PlanReport) -> None:
    since = f" since {report.since}" if report.since else ""
    out.print(Text.assemble((f"plan for {report.spec_name}", "bold"),
                            f": {report.runs:,} runs of {report.cases:,} cases in {report.batches:,} batch(es){since}"))
    if report.attempts:
        _print_attempts(report)
    if report.human is not None:
        h = report.human
        rate = f" at ${report.human_rate:g}/h = {money(h.usd)}" if report.human_rate is not None else ""
        out.print(Text(f"a person: {h.pass_chance:.0%} of hand-offs succeed ({h.source}); {h.minutes:g} min per review{rate}"))
    if report.frontier:
        _print_frontier(report)
    c, ch = report.current, report.chosen
    if c is not None and ch is not None and ch.design != c.design:
        saving = 1 - ch.usd_per_case / c.usd_per_case if c.usd_per_case else 0.0
        out.print(Text(f"chosen: {ch.design.label} — accuracy {ch.accuracy:.1%} vs {c.accuracy:.1%} now, "
                       f"{money(ch.usd_per_case)} vs {money(c.usd_per_case)} per case ({saving:.0%} cheaper)"))
    elif ch is not None and c is not None:
        out.print(Text("chosen: the current design; nothing cheaper comes within the margin of its accuracy"))
    for note in report.notes:
        out.print(Text(f"note: {note}", style="dim"))


@app.command()
def plan(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The loop spec (YAML) whose recorded runs to plan from.")],
    since: Annotated[Optional[str], typer.Option("--since", help="Only runs started at or after: today, 7d, 2026-11-20, … "
                                                 "(local time unless an offset is given).")] = None,
    write: Annotated[Optional[Path], typer.Option("--write", metavar="NEW.yaml", help="Write the chosen design as a spec that "
                                                  "differs from SPEC only in model, escalate and stop.")] = None,
    margin: Annotated[float, typer.Option("--margin", min=0, max=1, help="Choose the cheapest design within this much of the "
                                          "current design's accuracy (0.02 = 2 points).")] = 0.02,
    min_accuracy: Annotated[Optional[float], typer.Option("--min-accuracy", min=0, max=1, help="Choose the cheapest design at "
                                                          "least this accurate instead.")] = None,
    design: Annotated[Optional[int], typer.Option("--design", min=1, help="Choose this row of the frontier instead.")] = None,
    human_usd_per_hour: Annotated[Optional[float], typer.Option("--human-usd-per-hour", min=0, help="Price a person's minutes "
                                                                "at this rate (instead of the spec's human_rate).")] = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """The loop design the ledger recommends: per model and attempt the chance to pass and the step's cost, and
    the cost/accuracy frontier of designs (models in order, iterations each, a hand-off to a person), the
    current spec's design marked.

    No history yet? Start with `loopkit run SPEC --explore cheap-model,strong-model --repeat 3`."""
    import dataclasses

    from ..errors import UsageError
    from ..ledger import Ledger
    from ..plan import plan as make_plan
    from ..spec import load_spec
    from ..timewindow import parse_time, to_iso

    loop_spec = load_spec(spec)
    since_iso = to_iso(parse_time(since)) if since else None
    with Ledger(ledger_option(ctx, ledger), readonly=True) as store:
        report = make_plan(loop_spec, ledger=store, since=since_iso, human_usd_per_hour=human_usd_per_hour, margin=margin,
                           min_accuracy=min_accuracy)
    if design is not None:
        if design > len(report.frontier):
            raise UsageError(f"--design {design}: the frontier has {len(report.frontier)} row(s)")
        report = dataclasses.replace(report, chosen=report.frontier[design - 1])
    written = None
    if write is not None:
        if report.chosen is None:
            raise UsageError("no design to write: the ledger holds no runs of this spec (start with `loopkit run SPEC --explore ...`)")
        from ..plan_write import write_design

        write_design(loop_spec, report.chosen.design, write)
        written = str(write)
    if as_json:
        print_json({**report.to_dict(), "written": written})
        return
    print_plan(report)
    if written:
        out.print(Text(f"wrote {written}: compare it with `loopkit ab {spec} {written} --margin {margin:g}`"))


def _shown(path: Path) -> str:
    """The spec's path as the user would type it here: relative to the working folder when it is under it."""
    import os

    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def run_explore(store: Any, spec: Any, models_text: str, options: Any, *, tags: dict[str, str], as_json: bool,
                engine: Any = None) -> int:
    """`run --explore`: one batch per model; prints each model's pass rate and cost, returns the exit code."""
    from ..explore import explore_batches, parse_models
    from ..status import exit_code
    from .progress import batch_progress

    models = parse_models(models_text)
    results = []
    with batch_progress(not as_json) as on_progress:
        batches = explore_batches(spec, store, models, options, argv=sys.argv[1:], tags=tags, on_progress=on_progress)
        for batch in batches:
            batch.engine = engine
            try:
                results.append(batch.run())
            except KeyboardInterrupt:
                if batch.batch_id:
                    err.print(f"interrupted: batch {batch.batch_id[:10]} saved; finish it with `loopkit resume {batch.batch_id[:10]}`",
                              markup=False)
                raise typer.Exit(130) from None
    code = int(exit_code(budget_refused=any(r.refused for r in results), errors=any(r.errors for r in results),
                         gate_failed=any(options.fail_under is not None and r.pass_rate < options.fail_under for r in results)))
    rows = [{"model": m, "batch_id": r.batch_id, "status": r.status, "runs": r.runs, "passed": r.passed, "pass_rate": r.pass_rate,
             "cost_usd": r.cost_usd, "errors": r.errors, "not_run_budget": r.refused} for m, r in zip(models, results)]
    if as_json:
        print_json({"spec": spec.name, "explore": rows, "exit_code": code})
        return code
    from rich.table import Table

    table = Table(title=Text(f"explore · {spec.name} · each case on each model, no escalation"), title_justify="left")
    for col, justify in (("model", "left"), ("batch", "left"), ("passed", "right"), ("pass rate", "right"), ("cost", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(Text(row["model"]), row["batch_id"][:10], f"{row['passed']}/{row['runs']}", f"{row['pass_rate']:.0%}",
                      money(row["cost_usd"]))
    out.print(table)
    out.print(Text(f"next: `loopkit plan {_shown(spec.path) if spec.path else spec.name}` weighs the designs these runs allow"))
    return code
