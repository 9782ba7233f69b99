"""`loopkit diff A B`: two runs, two batches or two spec files; never imports litellm."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from .app import JsonOpt, LedgerOpt, app, ledger_option, money, out, print_json

SHOWN_PER_CLASS = 20  # a screenful per class; --json lists every case
_CLASS_STYLE = {"regression": "red", "fix": "green", "changed": "yellow", "removed": "magenta", "added": "cyan", "same": "dim"}
_CLASS_TITLE = {"regression": "regressions (passed → not passed)", "fix": "fixes (not passed → passed)", "changed": "changed",
                "removed": "only in A", "added": "only in B", "same": "same"}


def _signed_money(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 5e-7:
        return "$0"
    return ("+" if value > 0 else "−") + money(abs(value))


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name in ("cost_usd", "cost_per_pass"):
        return money(value)
    if name == "pass_rate":
        return f"{value:.1%}"
    if name == "runs":
        return f"{value:,}"
    if name == "mean_latency_ms":
        return f"{value:,.0f}"
    return f"{value:.3f}" if name == "mean_reward" else f"{value:.2f}"


def _fmt_delta(name: str, delta: float | None, better: str) -> Text:
    if delta is None:
        return Text("-")
    if name in ("cost_usd", "cost_per_pass"):
        text = _signed_money(delta)
    elif name == "pass_rate":
        text = f"{delta * 100:+.1f} pts"
    elif name == "runs":
        text = f"{delta:+,}"
    elif name == "mean_latency_ms":
        text = f"{delta:+,.0f}"
    else:
        text = f"{delta:+.3f}" if name == "mean_reward" else f"{delta:+.2f}"
    if abs(delta) < 1e-12 or better == "none":
        return Text(text)
    good = delta > 0 if better == "higher" else delta < 0
    return Text(text, style="green" if good else "red")


def _print_spec_diff(spec: dict[str, Any]) -> None:
    if spec["same"]:
        out.print(f"spec: same version ({spec['a_hash']})", markup=False)
        return
    if not spec["diff"]:
        missing = ", ".join(spec.get("text_missing") or []) or "?"
        out.print(f"spec: versions {spec['a_hash']} → {spec['b_hash']} (text not in the ledger for {missing})", markup=False)
        return
    out.print(f"spec: {spec['a_hash']} → {spec['b_hash']}", markup=False)
    for line in spec["diff"]:
        style = ("bold" if line.startswith(("---", "+++")) else "green" if line.startswith("+") else "red" if line.startswith("-")
                 else "cyan" if line.startswith("@@") else "")
        out.print(Text(line, style=style))


def _metrics_table(metrics: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    from ..diffing import METRICS

    table = Table(title="metrics", title_justify="left")
    for name, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B − A", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, m in metrics.items():
        table.add_row(METRICS[name][0], _fmt(name, m["a"]), _fmt(name, m["b"]), _fmt_delta(name, m["delta"], m["better"]))
    return table


def _outcome(o: dict[str, Any] | None) -> str:
    if o is None:
        return "-"
    reward = f" {o['reward']:.2f}" if o.get("reward") is not None else ""
    return f"{o['status']} ({o.get('stop_reason') or '-'}){reward}"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _print_cases(doc: dict[str, Any]) -> None:
    from rich.table import Table

    from .render import short

    counts = doc["changes"]
    matched = sum(counts[k] for k in ("regression", "fix", "changed", "same"))
    out.print(Text.assemble(f"cases: {matched:,} matched · ", (_count(counts["regression"], "regression"), "red"), " · ",
                            (_count(counts["fix"], "fix", "fixes"), "green"), f" · {counts['changed']:,} changed · {counts['same']:,} same · "
                            f"{counts['removed']:,} only in A · {counts['added']:,} only in B"))
    with_variant = any("variant" in c for c in doc["cases"])
    for change in ("regression", "fix", "changed", "removed", "added"):
        cases = [c for c in doc["cases"] if c["change"] == change]
        if not cases:
            continue
        table = Table(title=f"{_CLASS_TITLE[change]} ({counts[change]:,})", title_justify="left", title_style=_CLASS_STYLE[change])
        columns = ["case"] + (["variant"] if with_variant else []) + ["repeat", "A", "B", "Δ reward", "Δ cost", "runs A → B"]
        for col in columns:
            table.add_column(col, justify="right" if col.startswith("Δ") else "left")  # type: ignore[arg-type]
        for c in cases:  # the first SHOWN_PER_CLASS: `compute` was asked for no more
            d = c["delta"]
            runs = f"{(c['a'] or {}).get('run_id', '-') or '-'}"[:10] + " → " + f"{(c['b'] or {}).get('run_id', '-') or '-'}"[:10]
            row = [short(str(c["case_id"]), 30)] + ([c.get("variant") or ""] if with_variant else []) + [
                str(c["repeat"]), _outcome(c["a"]), _outcome(c["b"]),
                f"{d['reward']:+.2f}" if d["reward"] is not None else "-", _signed_money(d["cost_usd"]), runs]
            table.add_row(*(Text(cell) for cell in row))
        out.print(table)
        if counts[change] > SHOWN_PER_CLASS:
            out.print(f"… {counts[change] - SHOWN_PER_CLASS:,} more {_CLASS_TITLE[change]}: see --json", markup=False)


def _side_text(side: dict[str, Any]) -> str:
    variant = f":{side['variant']}" if side.get("variant") else ""
    from ..formatting import local_time

    when = local_time(side.get("started_at"))
    return f"batch {side['batch_id'][:10]}{variant} ({side.get('spec_name') or '-'}, {side.get('status') or '-'}, {when})"


def _print_batches(doc: dict[str, Any], *, spec: bool = True) -> None:
    out.print(Text(f"{_side_text(doc['a'])} → {_side_text(doc['b'])}", style="bold"))
    if spec:
        _print_spec_diff(doc["spec"])
    out.print(_metrics_table(doc["metrics"]))
    _print_cases(doc)


def _print_runs(doc: dict[str, Any]) -> None:
    import json

    from rich.table import Table

    a, b = doc["a"], doc["b"]
    out.print(Text(f"run {a['run_id'][:10]} ({a['spec_name']}, case {a['case_id']}) → run {b['run_id'][:10]} "
                   f"({b['spec_name']}, case {b['case_id']})", style="bold"))
    _print_spec_diff(doc["spec"])
    if doc["case_same"]:
        out.print(f"case: {json.dumps(a['case'], ensure_ascii=False)}", markup=False)
    else:
        out.print(f"case A: {json.dumps(a['case'], ensure_ascii=False)}", markup=False)
        out.print(f"case B: {json.dumps(b['case'], ensure_ascii=False)}", markup=False)
    style = _CLASS_STYLE[doc["change"]]
    out.print(Text.assemble(f"outcome: {_outcome(a)} → {_outcome(b)} · ", (doc["change"], style)))
    d = doc["delta"]
    out.print(f"iterations {a['iterations']} → {b['iterations']} · cost {money(a['cost_usd'])} → {money(b['cost_usd'])} "
              f"({_signed_money(d['cost_usd'])}) · latency {a['latency_ms'] or 0:,.0f} → {b['latency_ms'] or 0:,.0f} ms", markup=False)
    for pair in doc["iterations"]:
        table = Table(title=f"iteration {pair['n']}" + ("" if pair["output_changed"] else " (same output)"), title_justify="left",
                      show_lines=True, expand=True)
        table.add_column("", no_wrap=True)
        table.add_column("A", ratio=1)
        table.add_column("B", ratio=1)
        ia, ib = pair["a"] or {}, pair["b"] or {}
        table.add_row("model", Text(ia.get("model") or "-"), Text(ib.get("model") or "-"))
        table.add_row("output", Text(ia.get("output") or "-"), Text(ib.get("output") or "-"))
        table.add_row("reward", _pass_text(ia), _pass_text(ib))
        for c in pair["checks"]:
            name = c["checker"] + (" (audit)" if c["audit"] else "")
            delta = c["delta"]
            change = Text("") if delta is None or abs(delta) < 1e-12 else Text(f" ({delta:+.2f})", style="green" if delta > 0 else "red")
            table.add_row(Text(name), _score(c["a_score"], c["a_passed"]), Text.assemble(_score(c["b_score"], c["b_passed"]), change))
        out.print(table)


def _pass_text(side: dict[str, Any]) -> Text:
    if not side:
        return Text("-")
    mark = Text("pass", style="green") if side.get("passed") else Text("fail", style="red")
    return Text.assemble(f"{side.get('reward') or 0:.2f} ", mark)


def _score(score: float | None, passed: bool | None) -> Text:
    if score is None:
        return Text("-")
    return Text.assemble(f"{score:.2f} ", "pass" if passed else ("fail", "red"))


def _print_specs(doc: dict[str, Any]) -> None:
    a, b = doc["a"], doc["b"]
    out.print(Text(f"spec {a['path']} ({a['hash']}) → {b['path']} ({b['hash']})", style="bold"))
    if doc["spec"]["same"]:
        out.print("spec text: the same", markup=False)
    else:
        _print_spec_diff(doc["spec"])
    for note in doc["missing"]:
        out.print(Text(note, style="yellow"))
    if doc["batches"] is not None:
        out.print("latest batch of each version:", markup=False)
        _print_batches(doc["batches"], spec=False)


@app.command()
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="A", help="A run or batch ID (unique prefix; ID:A / ID:B for a variant of an A/B "
                                                       "batch), or a spec file.")],
    b: Annotated[str, typer.Argument(metavar="B", help="The same kind as A; compared against A.")],
    fail_on_regression: Annotated[bool, typer.Option("--fail-on-regression",
                                                     help="Exit 1 when any case passed in A and does not in B.")] = False,
    as_json: JsonOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Compare two runs, two batches or two spec files: spec diff, outcome changes per case (regressions first), metric deltas.

    Two spec files: their text, and the latest batch of each version (by content hash). The same A/B batch given
    twice compares its variant A with its variant B.
    """
    from ..ledger.diffs import diff as compute

    doc = compute(ledger_option(ctx, ledger), a, b, cases_per_class=None if as_json else SHOWN_PER_CLASS)
    code = 1 if fail_on_regression and doc["regressions"] else 0
    if as_json:
        print_json({**doc, "exit_code": code})
    else:
        {"batches": _print_batches, "runs": _print_runs, "specs": _print_specs}[doc["kind"]](doc)
        if code:
            out.print(Text(f"{_count(doc['regressions'], 'regression')}: exit 1 (--fail-on-regression)", style="red"))
    raise typer.Exit(code)
