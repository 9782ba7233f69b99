"""`loopkit runs` and `loopkit show`: read the ledger, never import litellm."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import UsageError
from ..formatting import duration, local_time
from ..timewindow import seconds_between
from .app import JsonOpt, LedgerOpt, app, ledger_option, money, out, print_json, print_json_streaming
from .render import cache_line, error_lines, more_runs_line, pass_mark, public_run, runs_table, status_text, suspect_lines
from .render_human import human_parts, run_parts

if TYPE_CHECKING:
    from ..views import BatchSummary, RunDetail

RUN_STATUSES = ("passed", "failed", "needs_review", "error", "interrupted", "running")


@app.command()
def runs(
    ctx: typer.Context,
    spec: Annotated[Optional[str], typer.Option("--spec", help="Only runs of this spec name.")] = None,
    status: Annotated[Optional[str], typer.Option("--status", help="Only runs with this status (passed, failed, needs_review, error, "
                                                  "interrupted, running).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Started at or after: now, today, yesterday, 30m, 2h, 7d, 2w, "
                                                 "2026-11-20 or 2026-11-20T14:30 (local time unless an offset is given).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Started before this time (exclusive); same forms as --since.")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", help="Only runs of this batch (ID or prefix).")] = None,
    suspect: Annotated[bool, typer.Option("--suspect", help="Only runs that passed their reward but failed an audit.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """List runs, newest first."""
    from ..ledger import Ledger
    from ..ledger.queries import count_runs, list_runs
    from ..timewindow import parse_time, to_iso

    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"--status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    since_iso = to_iso(parse_time(since)) if since else None
    until_iso = to_iso(parse_time(until)) if until else None
    store = Ledger(ledger_option(ctx, ledger), readonly=True)
    batch_id = None
    if batch:
        kind, batch_id = store.resolve(batch)
        if kind != "batch":
            raise UsageError(f"{batch} is a run, not a batch")
    where = {"spec": spec, "status": status, "since": since_iso, "until": until_iso, "batch_id": batch_id, "suspect": suspect}
    rows = list_runs(store, **where, limit=limit)
    if as_json:
        print_json([public_run(r) for r in rows])
        return
    out.print(runs_table(rows) if rows else Text("no runs match"))
    if len(rows) == limit and (total := count_runs(store, **where)) > limit:
        out.print(Text(f"showing {limit:,} of {total:,} runs; --limit N for more", style="dim"))


def _show_run(r: RunDetail, *, calls: bool) -> None:
    out.print(Text.assemble((f"run {r.id}", "bold"), f" · spec {r.spec_name} · case {r.case_id}",
                            f" · variant {r.variant}" if r.variant else "", f" · batch {r.batch_id[:10]}" if r.batch_id else ""))
    out.print(Text.assemble("status ", status_text(r.status), f" ({r.stop_reason or '-'}) · reward {r.reward or 0:.2f} · "
                            f"best iteration {r.best_iteration or '-'} of {len(r.iterations)} · cost {money(r.cost_usd)} · "
                            f"tokens {r.prompt_tokens or 0}+{r.completion_tokens or 0}"))
    took = seconds_between(r.started_at, r.ended_at)
    out.print(Text(f"started {local_time(r.started_at)}" + (f" · took {duration(took)}" if took is not None else "")))
    if r.cache.cached:
        out.print(Text(cache_line(r.cache.__dict__)))
    for line in run_parts(r.human):
        out.print(Text(line))
    if r.message:
        out.print(Text(f"message: {r.message}"))
    if r.suspect:
        out.print(Text(f"⚠ {r.suspect}", style="yellow"))
    out.print(Text(f"case: {json.dumps(r.case, ensure_ascii=False)}"))
    for it in r.iterations:
        out.print()
        out.print(Text.assemble((f"iteration {it['n']}", "bold"), f" · {it['model']} · reward {it['reward']:.2f} ", pass_mark(it["passed"]),
                                f" · cost {money(it['cost_usd'])} · tokens {it['prompt_tokens']}+{it['completion_tokens']}"))
        out.print(Text(it["output"] or ""))
        table = Table(show_edge=False, box=None, pad_edge=False)
        for col in ("checker", "score", "passed", "feedback"):  # feedback whole, wrapped: it is what the model was told
            table.add_column(col, overflow="fold")
        for c in it["checks"]:
            name = c["checker"] + (" (audit)" if c["audit"] else "")
            table.add_row(Text(name), f"{c['score']:.2f}", Text("yes") if c["passed"] else Text("no", style="red"), Text(c["feedback"] or ""))
        out.print(table)
        _print_calls(r, it["n"], calls=calls)
    cut_short = sorted({c["iteration"] for c in r.calls} - {it["n"] for it in r.iterations})
    for n in cut_short:  # calls (and tool calls) of an iteration a stop cut short were paid for too
        out.print()
        out.print(Text.assemble((f"iteration {n}", "bold"), " · cut short, not checked"))
        _print_calls(r, n, calls=calls)
    for e in r.events:
        out.print(Text(f"event {e['kind']}: {json.dumps(e['detail'], ensure_ascii=False)}"))


def _print_calls(r: RunDetail, n: int, *, calls: bool) -> None:
    """Iteration n's model calls, each followed by the tool calls its reply asked for, as they ran."""
    for call in (c for c in r.calls if c["iteration"] == n):
        cached = " (cached)" if call["cached"] else ""
        out.print(Text(f"  call {call['role']} {call['model']}: {call['prompt_tokens']}+{call['completion_tokens']} tokens, "
                       f"{money(call['cost_usd'])}, {call['latency_ms'] or 0:.0f} ms{cached}"))
        if calls:
            for m in call["messages"]:
                out.print(Text(f"    [{m['role']}] {m.get('content') or ''}{_asked(m.get('tool_calls'))}"))
            out.print(Text(f"    [response] {call['response'] or call['error'] or ''}{_asked(call.get('tool_calls'))}"))
        for t in (t for t in r.tool_calls if t["call_id"] == call["id"]):
            said = f"error: {t['error']}" if t["error"] is not None else t["result"] or ""
            out.print(Text(f"  tool {t['tool']}({json.dumps(t['arguments'], ensure_ascii=False)}) → "
                           f"{said if calls else _one_line(said)}  ({t['latency_ms'] or 0:.0f} ms)"))


def _asked(tool_calls: list[dict[str, Any]] | None) -> str:
    """A message's tool calls, as `show --calls` prints them after its text."""
    if not tool_calls:
        return ""
    return " " + " ".join(f"→ {c.get('function', {}).get('name')}({c.get('function', {}).get('arguments') or ''})" for c in tool_calls)


def _one_line(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_batch(store: Any, s: BatchSummary, *, as_json: bool) -> None:
    if as_json:  # every run, as before, streamed: one row in memory at a time
        from ..ledger.queries import bare_run, iter_batch_runs

        print_json_streaming(s.to_dict(), "run_rows", (bare_run(r) for r in iter_batch_runs(store, s.id)))
        return
    out.print(Text.assemble((f"batch {s.id}", "bold"), f" · {s.batch_kind} · {s.spec_name or '-'} · {s.status} · "
                            f"started {local_time(s.started_at)}" + (f" · ended {local_time(s.ended_at)}" if s.ended_at else "")))
    if s.resume:
        out.print(Text(f"its process is gone: finish it with `{s.resume}`", style="yellow"))
    out.print(f"runs {s.runs:,} · passed {s.passed:,} ({s.pass_rate:.0%}) · cost {money(s.cost_usd)} · cost per passed case {money(s.cost_per_pass)}")
    out.print(Text("stop reasons: " + ", ".join(f"{k} {v:,}" for k, v in s.stop_reasons.items())))
    for line in error_lines([e.__dict__ for e in s.errors]):
        out.print(line)
    if s.cache.cached:
        out.print(Text(cache_line(s.cache.__dict__)))
    if people := human_parts(s.human):
        out.print(Text(" · ".join(people)))
    if s.slowest:
        out.print(Text("slowest: " + ", ".join(f"{r['case_id']} ({r['seconds']:.1f}s)" for r in s.slowest)))
    if s.most_expensive:
        out.print(Text("most expensive: " + ", ".join(f"{r['case_id']} ({money(r['cost_usd'])})" for r in s.most_expensive)))
    for line in suspect_lines(s.suspects, s.suspect_runs):
        out.print(line)
    out.print(runs_table(s.first_runs, one_batch=True))
    for line in more_runs_line(len(s.first_runs), s.runs, s.id):
        out.print(line)


@app.command()
def show(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(metavar="ID", help="A run or batch ID, or a unique prefix.")],
    calls: Annotated[bool, typer.Option("--calls", help="Also print every call's messages and response.")] = False,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """One run (iterations, outputs, checker scores, feedback, escalations, cost) or one batch."""
    from ..ledger import Ledger
    from ..views import BatchSummary, RunDetail
    from ..views import show as read

    store = Ledger(ledger_option(ctx, ledger), readonly=True)
    shown = read(id, ledger=store)
    if isinstance(shown, RunDetail):
        if as_json:
            print_json(shown.to_dict(messages=calls))
        else:
            _show_run(shown, calls=calls)
    elif isinstance(shown, BatchSummary):
        _show_batch(store, shown, as_json=as_json)
    else:  # an A/B test: its report, as `loopkit ab --show` prints it
        from .ab_cmd import print_ab

        print_ab(shown.to_dict(), as_json=as_json)
