"""`loopkit run`, `loopkit check`, `loopkit resume`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from ..errors import UsageError
from .app import JsonOpt, LedgerOpt, app, err, ledger_option, money, out, print_json, print_json_streaming
from .render import cache_line, error_lines, more_runs_line, public_run, runs_table, suspect_lines
from .render_human import human_line
from .report_cmd import report_option

SUMMARY_ROWS = 50
EngineOpt = Annotated[str, typer.Option("--engine", help="Where cases run: asyncio (in this process) or ray (a Ray cluster; needs loopkit[ray]).")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="With --engine ray: the cluster (auto, HOST:PORT, ray://HOST:PORT); default: a local Ray on this machine's CPUs.")]


def _tags(values: list[str] | None) -> dict[str, str]:
    tags = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {value!r}: use key=value")
        tags[key] = val
    return tags


def _report(ledger: Any, result: Any, *, as_json: bool, fail_under: float | None, spec_name: str) -> int:
    """Print a batch's outcome (table or JSON) and return the exit code. Figures come aggregated from SQL and the
    table takes the first runs only, so a batch of a million runs prints in the memory of fifty."""
    from ..ledger.queries import SHOWN_SUSPECTS, batch_runs, cache_use, count_runs, error_kinds, iter_batch_runs, suspect_runs

    code = result.exit_code(fail_under)
    kinds = error_kinds(ledger, result.batch_id) if result.errors else []
    if as_json:
        print_json_streaming({
            "batch_id": result.batch_id, "spec": spec_name, "status": result.status, "total": result.total,
            "finished": result.finished, "passed": result.passed, "pass_rate": result.pass_rate, "errors": result.errors,
            "error_kinds": kinds, "not_run_budget": result.refused, "cost_usd": result.cost_usd, "statuses": result.statuses,
            "exit_code": code}, "runs", (public_run(r) for r in iter_batch_runs(ledger, result.batch_id)))
        return code
    shown = batch_runs(ledger, result.batch_id, limit=SUMMARY_ROWS)
    out.print(runs_table(shown, title=f"batch {result.batch_id[:10]} · {spec_name}", one_batch=True))
    for line in more_runs_line(len(shown), result.runs, result.batch_id):
        out.print(line)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(result.statuses.items()))
    out.print(f"passed {result.passed}/{result.finished} ({result.pass_rate:.0%}) · {statuses} · cost {money(result.cost_usd)}")
    for line in error_lines(kinds):
        out.print(line)
    if (use := cache_use(ledger, batch_id=result.batch_id))["cached"]:
        out.print(Text(cache_line(use)))
    if people := human_line(ledger, batch_id=result.batch_id):
        out.print(Text(people))
    suspects = suspect_runs(ledger, result.batch_id)
    flagged = count_runs(ledger, batch_id=result.batch_id, suspect=True) if len(suspects) >= SHOWN_SUSPECTS else len(suspects)
    for line in suspect_lines(suspects, flagged):
        out.print(line)
    if result.refused:
        out.print(Text(f"the batch budget kept {result.refused} case(s) from running", style="red"))
    if fail_under is not None and result.pass_rate < fail_under:
        out.print(Text(f"pass rate {result.pass_rate:.0%} is under --fail-under {fail_under:.0%}", style="red"))
    return code


@app.command()
def run(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The loop spec (YAML).")],
    inputs: Annotated[Optional[str], typer.Option("--inputs", help="Cases file (.jsonl/.csv/.yaml) instead of the spec's.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Run on this litellm model instead of the spec's.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Cases in flight at once.")] = 16,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Run each case K times.")] = 1,
    max_usd: Annotated[Optional[float], typer.Option("--max-usd", min=0, help="Batch budget in USD (with the spec's total_usd, the lower wins).")] = None,
    fail_under: Annotated[Optional[float], typer.Option("--fail-under", min=0, max=1, help="Exit 1 when the pass rate is under this fraction.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    html: Annotated[Optional[Path], typer.Option("--report", help="Write the batch's HTML report (one self-contained file) here.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", help="Label the batch: key=value (repeatable).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    replay: Annotated[Optional[str], typer.Option("--replay", help="Answer every call from this batch's recorded responses.")] = None,
    max_retries: Annotated[int, typer.Option("--max-retries", min=1, help="Attempts per model call (rate limits, 5xx, timeouts).")] = 6,
    engine: EngineOpt = "asyncio",
    address: AddressOpt = None,
    human_usd_per_hour: Annotated[Optional[float], typer.Option("--human-usd-per-hour", min=0, help="Price a person's review "
                                                                "minutes at this rate (instead of the spec's human_rate).")] = None,
    explore: Annotated[Optional[str], typer.Option("--explore", metavar="M1,M2", help="Run every case on each of these models "
                                                   "alone (one batch each, no escalation), so `loopkit plan` has data; "
                                                   "names of the spec's models keep their mappings.")] = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Run the loop over every case; exit 1 under --fail-under, 3 when the batch budget stopped cases, 4 on errors.

    To plan a loop from data, start with `--explore cheap-model,strong-model --repeat 3`, then `loopkit plan SPEC`."""
    from ..batch import Batch, BatchOptions
    from ..ledger import Ledger
    from ..ray_engine import engine_for
    from ..spec import load_spec
    from .progress import batch_progress

    runner = engine_for(engine, address)  # a missing Ray is exit 2 before anything else
    loop_spec = load_spec(spec)
    store = Ledger(ledger_option(ctx, ledger))
    if replay:
        kind, replay = store.resolve(replay)
        if kind != "batch":
            raise UsageError("--replay takes a batch ID")
    options = BatchOptions(concurrency=concurrency, repeat=repeat, max_usd=max_usd, no_cache=no_cache, replay=replay,
                           max_retries=max_retries, fail_under=fail_under, inputs=inputs, model=model,
                           human_usd_per_hour=human_usd_per_hour)
    if explore is not None:
        from .plan_cmd import run_explore

        raise typer.Exit(run_explore(store, loop_spec, explore, options, tags=_tags(tag), as_json=as_json, engine=runner))
    with batch_progress(not as_json) as on_progress:
        batch = Batch(loop_spec, store, options, argv=sys.argv[1:], tags=_tags(tag), on_progress=on_progress)
        batch.engine = runner
        try:
            result = batch.run()
        except KeyboardInterrupt:
            if not batch.batch_id:  # stopped while checking the cases and models: nothing ran, nothing was paid
                err.print("interrupted before any case ran; nothing was recorded", markup=False)
            else:
                err.print(f"interrupted: batch {batch.batch_id[:10]} saved; finish it with `loopkit resume {batch.batch_id[:10]}`",
                          markup=False)
            raise typer.Exit(130) from None
    _ci_outputs(store, result, junit=junit, spec_name=batch.spec.name)  # first: a failure here is the exit code
    report_option(store, html, result.batch_id)
    raise typer.Exit(_report(store, result, as_json=as_json, fail_under=fail_under, spec_name=batch.spec.name))


def _ci_outputs(store: Any, result: Any, *, junit: Path | None, spec_name: str) -> None:
    from ..report import append_step_summary, write_junit

    if junit is not None:
        write_junit(store, result.batch_id, junit, spec_name=spec_name)
    append_step_summary(store, result.batch_id, spec_name=spec_name)


@app.command()
def resume(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(metavar="BATCH", help="The interrupted batch (ID or unique prefix).")],
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Also re-run runs that ended in error.")] = False,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", min=1, help="Override the batch's concurrency.")] = None,
    max_usd: Annotated[Optional[float], typer.Option("--max-usd", min=0, help="Override the batch budget.")] = None,
    fail_under: Annotated[Optional[float], typer.Option("--fail-under", min=0, max=1, help="Override the quality gate.")] = None,
    engine: EngineOpt = "asyncio",
    address: AddressOpt = None,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Finish an interrupted batch: finished cases are neither run nor paid for again."""
    from ..api import resume as resume_batch
    from ..ledger import Ledger
    from ..ray_engine import engine_for
    from .progress import batch_progress

    runner = engine_for(engine, address)
    store = Ledger(ledger_option(ctx, ledger))
    kind, full = store.resolve(batch_id)
    row = store.batch(full) if kind == "batch" else None
    if row is not None and row["kind"] == "ab":  # the A/B runner resumes its own batches (same seed, same order)
        from .ab_cmd import resume_ab_batch

        resume_ab_batch(store, full, concurrency=concurrency, max_usd=max_usd, retry_errors=retry_errors, as_json=as_json,
                        engine=runner)
    with batch_progress(not as_json) as on_progress:
        try:
            result = resume_batch(batch_id, ledger=store, retry_errors=retry_errors, concurrency=concurrency, max_usd=max_usd,
                                  fail_under=fail_under, argv=sys.argv[1:], on_progress=on_progress, engine=runner)
        except KeyboardInterrupt:
            err.print(f"interrupted again: `loopkit resume {full[:10]}` continues", markup=False)
            raise typer.Exit(130) from None
    raise typer.Exit(_report(store, result, as_json=as_json, fail_under=result.fail_under, spec_name=result.spec_name))


@app.command()
def check(
    specs: Annotated[list[Path], typer.Argument(help="Loop specs to validate.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate specs without calling a model; print the worst-case cost of one case."""
    from ..api import check as check_specs

    report = check_specs(specs)
    if as_json:
        print_json(report.to_dict())
        raise typer.Exit(0 if report.ok else 2)
    for spec in report.specs:
        if spec.ok and spec.kind == "fleet":
            out.print(f"ok {spec.path} (fleet {spec.name}): {spec.cases} case(s) over its loops", markup=False)
        elif spec.ok and spec.worst_case is not None:
            out.print(f"ok {spec.path} ({spec.name}): {spec.cases} case(s); worst case per case {_worst(spec.worst_case)}",
                      markup=False)
    for warning in report.warnings:
        err.print(f"warning: {warning}", markup=False)
    for problem in report.problems:
        err.print(f"error: {problem}", markup=False)
    raise typer.Exit(0 if report.ok else 2)


def _worst(worst: Any) -> str:
    """$0.0123 and 45,000 tokens in 15 calls over 5 iterations (case 7), or why there is no figure."""
    if worst.unbounded:
        return f"unbounded: no `max_tokens` for {', '.join(worst.unbounded)}"
    usd = money(worst.usd) if worst.usd is not None else f"unknown (no price for {', '.join(worst.unpriced)})"
    return (f"{usd}, {worst.tokens:,} tokens in {worst.calls} call(s) over {worst.iterations} iteration(s)"
            + (f" (case {worst.case_id})" if worst.case_id else "") + ("; held there by the per-case budget" if worst.capped else ""))
