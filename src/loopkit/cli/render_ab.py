"""The A/B report on the terminal (a table, the anytime-valid tests in words, notes, the verdict) and
as markdown for $GITHUB_STEP_SUMMARY. The numbers come from `loopkit.ab_report`; this only lays them out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text

from ..ab_report import fmt_p, pts, report_tests
from ..formatting import usd
from ..redact import scrub
from .app import out

__all__ = ["ab_markdown", "ab_table_rows", "append_ab_summary", "render_ab", "report_title", "sequential_lines"]


def render_ab(report: dict[str, Any]) -> None:
    """Metrics table with deltas, intervals and p-values, the anytime-valid tests, notes, then the verdict."""
    level = f"{1 - report['alpha']:.0%}"
    table = Table(title=Text(report_title(report)), title_justify="left")
    for name, justify in (("metric", "left"), ("A", "right"), ("B", "right"), (f"Δ B − A [{level} CI]", "right"), ("p", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in ab_table_rows(report):
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)
    for line in sequential_lines(report):
        out.print(line, markup=False)
    if report["not_run_budget"]:
        out.print(Text(f"the batch budget kept {report['not_run_budget']} run(s) from starting", style="red"))
    if report["errors"]:
        out.print(Text(f"{report['errors']} run(s) ended in model/infrastructure errors", style="magenta"))
    for note in report["notes"][1:]:
        out.print(f"note: {note}", markup=False, style="dim")
    good = report["verdict"].get("kind") in ("better", "non_inferior_cheaper") or report["verdict"]["winner"]
    style = "bold green" if good else "bold"
    out.print(f"verdict: {report['verdict']['text']}", markup=False, style=style)


def _ms(x: float | None, *, signed: bool = False) -> str:
    if x is None:
        return "-"
    sign = ("+" if x >= 0 else "-") if signed else ""
    a = abs(x)
    if a >= 1000:
        return f"{sign}{a / 1000:.2f} s"
    return f"{sign}{a:.1f} ms" if a < 10 else f"{sign}{a:.0f} ms"


def _interval(d: dict[str, Any] | None, fmt: Callable[[float], str], ci_fmt: Callable[[float], str] | None = None) -> str:
    if not d or d.get("estimate") is None:
        return "-"
    text = fmt(d["estimate"])
    if d.get("ci_low") is not None and d.get("ci_high") is not None:
        end = ci_fmt or fmt
        text += f" [{end(d['ci_low'])}, {end(d['ci_high'])}]"
    return text


def ab_table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(metric, A, B, delta B - A [CI], p) as text, for the terminal table and the markdown summary."""
    A, B, d = report["variants"]["A"], report["variants"]["B"], report["deltas"]

    def rate(v: dict[str, Any]) -> str:
        return "-" if v["success_rate"] is None else f"{v['success_rate']:.0%} ({v['passed']}/{v['runs']})"

    def num(x: float | None, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    def p(key: str) -> str:
        return fmt_p((d.get(key) or {}).get("p_value"))

    rows = [
        ("success rate", rate(A), rate(B), _interval(d.get("success_rate"), pts, lambda x: f"{x * 100:+.0f}"), p("success_rate")),
        ("mean reward", num(A["mean_reward"]), num(B["mean_reward"]), _interval(d.get("mean_reward"), lambda x: f"{x:+.3f}"), p("mean_reward")),
        ("mean cost", usd(A["mean_cost_usd"]), usd(B["mean_cost_usd"]), _interval(d.get("mean_cost_usd"), lambda x: usd(x, signed=True)),
         p("mean_cost_usd")),
        ("cost per success", usd(A["cost_per_success_usd"]), usd(B["cost_per_success_usd"]),
         _interval(d.get("cost_per_success_usd"), lambda x: usd(x, signed=True)), "-"),
        ("mean iterations", num(A["mean_iterations"], 2), num(B["mean_iterations"], 2),
         _interval(d.get("mean_iterations"), lambda x: f"{x:+.2f}"), p("mean_iterations")),
        ("latency p50 (wall)", _ms(A["latency_ms"]["p50"]), _ms(B["latency_ms"]["p50"]),
         _interval(d.get("latency_p50_ms"), lambda x: _ms(x, signed=True)), "-"),
        ("latency p95 (wall)", _ms(A["latency_ms"]["p95"]), _ms(B["latency_ms"]["p95"]),
         _interval(d.get("latency_p95_ms"), lambda x: _ms(x, signed=True)), "-"),
        ("escalations", str(A["escalations"]), str(B["escalations"]),
         _interval(d.get("escalations_per_run"), lambda x: f"{x:+.2f}/run"), "-"),
    ]
    if A.get("human_usd") or B.get("human_usd"):  # a person's time is inside the costs above; say how much of them
        def person(v: dict[str, Any]) -> str:
            return usd(v["human_usd"] / v["runs"]) if v["runs"] else "-"

        rows.insert(3, ("  of which a person", person(A), person(B), "-", "-"))
    return rows


def sequential_lines(report: dict[str, Any]) -> list[str]:
    """The anytime-valid tests in words."""
    t = report_tests(report)
    s, r = t["success_sequential"], t["reward_sequential"]
    alpha = report["alpha"]
    disc = s.get("estimate")
    share = "no discordant cases yet" if disc is None else (
        f"B won {disc:.0%} of the discordant outcomes (exactly one variant passed) "
        f"({s['level']:.1%} CS {s['ci_low']:.0%}-{s['ci_high']:.0%})")
    split = report.get("alpha_split") or {}
    lines = [
        f"anytime-valid tests (alpha {alpha:g}, split over {len(split) or 2} tests; p adjusted):",
        f"  success: e-value {'inf' if s['e_value'] is None else format(s['e_value'], '.3g')} (winner at >= {s['threshold']:.3g}), "
        f"p = {fmt_p(s['p_value'])}; {share}",
        f"  reward: mean B - A {r['estimate']:+.3f}, {r['level']:.1%} CS [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], p = {fmt_p(r['p_value'])}",
    ]
    ni, cost = t.get("success_noninferiority"), t.get("cost_sequential")
    if ni:
        e = "inf" if ni["e_value"] is None else format(ni["e_value"], ".3g")
        found = "B is non-inferior" if ni["non_inferior"] else "not shown yet"
        lines.append(f"  non-inferiority (margin {ni['margin'] * 100:g} pts): e-value {e} (non-inferior at >= {ni['threshold']:.3g}), "
                     f"p = {fmt_p(ni['p_value'])}; success B - A {pts(ni['estimate'])}, at worst {pts(ni['ci_low'])} "
                     f"({ni['level']:.2%} anytime-valid bound); {found}")
    if cost:
        if cost["ci_low"] is None or cost["ci_high"] is None:
            interval = "no interval yet (too few cases)"
        else:
            interval = f"{cost['level']:.2%} CS [{usd(cost['ci_low'], signed=True)}, {usd(cost['ci_high'], signed=True)}]"
        found = f"B is {cost['direction']}" if cost["direction"] else "no difference shown yet"
        lines.append(f"  cost per case: B - A {usd(cost['estimate'], signed=True)}, {interval}, p = {fmt_p(cost['p_value'])}; {found}")
    return lines


def report_title(report: dict[str, Any]) -> str:
    A, B = report["variants"]["A"], report["variants"]["B"]
    return f"A/B {report['batch_id'][:10]} · A = {A['spec']} vs B = {B['spec']} · {report['status']}"


def ab_markdown(report: dict[str, Any]) -> str:
    """The report as GitHub-flavoured markdown (for $GITHUB_STEP_SUMMARY)."""
    A, B = report["variants"]["A"], report["variants"]["B"]
    level = f"{1 - report['alpha']:.0%}"
    lines = [f"### loopkit ab · {A['spec']} (A) vs {B['spec']} (B)", "", f"**{report['verdict']['text']}**", "",
             f"| metric | A | B | Δ B − A [{level} CI] | p |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {a} | {b} | {dl} | {p} |" for m, a, b, dl, p in ab_table_rows(report)]
    lines += [""] + [f"- {line.strip()}" for line in sequential_lines(report)[1:]] + [f"- {note}" for note in report["notes"][2:]]
    repeats = f" × {report['repeat']} repeats" if report["repeat"] > 1 else ""
    lines += ["", f"batch `{report['batch_id'][:10]}` · {report['cases_run']} of {report['cases_available']} cases{repeats} · "
                  f"seed {report['seed']} · cost ${report['cost_usd']:.4f}", ""]
    return scrub("\n".join(lines) + "\n") or ""


def append_ab_summary(report: dict[str, Any]) -> None:
    """Append the markdown report to $GITHUB_STEP_SUMMARY when it is set."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(ab_markdown(report))
