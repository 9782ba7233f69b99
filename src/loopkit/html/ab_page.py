"""The A/B page: each metric per variant with the difference and its interval (a forest plot), the
anytime-valid tests' path to the verdict, and the cases the variants disagree on, side by side.

Every statistic comes from `ab_report` (the same report `ab --json` prints); this module only lays it out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ab_cases import VARIANTS, complete_prefix
from ..ab_report import ab_report, fmt_p, report_tests
from ..formatting import usd
from ..ledger import Ledger
from ..ledger.report_queries import variant_runs
from . import charts
from .render import duration, num, pct

OUTPUT_LIMIT = 1200


def _ms(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    text = duration(abs(v) / 1000)
    return (("+" if v >= 0 else "−") + text) if signed else text


# (label, variant value, delta key, how a difference reads)
METRICS: list[tuple[str, Callable[[dict[str, Any]], str], str | None, Callable[[float], str]]] = [
    ("success rate", lambda v: f"{pct(v['success_rate'])} ({pct(v['success_rate_ci'][0])}–{pct(v['success_rate_ci'][1])})",
     "success_rate", lambda d: f"{d * 100:+.1f} pts"),
    ("mean reward", lambda v: num(v["mean_reward"], 3), "mean_reward", lambda d: f"{d:+.3f}"),
    ("mean cost per run", lambda v: usd(v["mean_cost_usd"]), "mean_cost_usd", lambda d: usd(d, signed=True)),
    ("cost per success", lambda v: usd(v["cost_per_success_usd"]), "cost_per_success_usd", lambda d: usd(d, signed=True)),
    ("mean iterations", lambda v: num(v["mean_iterations"]), "mean_iterations", lambda d: f"{d:+.2f}"),
    ("latency p50", lambda v: _ms(v["latency_ms"]["p50"]), "latency_p50_ms", lambda d: _ms(d, signed=True)),
    ("latency p95", lambda v: _ms(v["latency_ms"]["p95"]), "latency_p95_ms", lambda d: _ms(d, signed=True)),
    ("escalations", lambda v: f"{v['escalations']} in {v['runs_escalated']} runs", "escalations_per_run", lambda d: f"{d:+.2f} per run"),
    ("errors", lambda v: str(v["errors"]), None, str),
    ("waiting for review", lambda v: str(v["needs_review"]), None, str),
    ("runs", lambda v: str(v["runs"]), None, str),
    ("total cost", lambda v: usd(v["cost_usd"]), None, str),
]


def metric_rows(report: dict[str, Any]) -> tuple[list[dict[str, Any]], list[charts.ForestRow]]:
    """The metrics table (A, B, B − A with its interval) and the forest plot's rows."""
    rows, forest = [], []
    for label, show, key, fmt in METRICS:
        delta = report["deltas"].get(key) if key else None
        text = "-"
        if delta and delta["estimate"] is not None:
            interval = (f" ({fmt(delta['ci_low'])} to {fmt(delta['ci_high'])})"
                        if delta["ci_low"] is not None and delta["ci_high"] is not None else "")
            text = fmt(delta["estimate"]) + interval
        if delta:
            forest.append(charts.ForestRow(label, delta["estimate"], delta["ci_low"], delta["ci_high"], text))
        rows.append({"label": label, "A": show(report["variants"]["A"]), "B": show(report["variants"]["B"]), "delta": text,
                     "p": fmt_p(delta["p_value"]) if delta else "", "method": delta["method"] if delta else ""})
    return rows, forest


def path_charts(report: dict[str, Any]) -> dict[str, Any]:
    """The e-value of the success test and the reward confidence sequence, case by case, to where they stopped."""
    path = report.get("path") or []
    if not path:
        return {}
    tests = report_tests(report)
    success, reward = tests["success_sequential"], tests["reward_sequential"]
    threshold = success["threshold"]

    def stop(test: dict[str, Any], what: str) -> tuple[float, str] | None:
        n = test.get("decided_after")
        return (float(n), f"{test['winner']} wins on {what} after {n} cases") if n else None

    e_chart = charts.line_chart(
        "Success: e-value after each case", [charts.Series("e-value", [(p["cases"], p["e_value"]) for p in path])],
        x_label="cases", y_label="e-value (log)", log_y=True, y_fmt=lambda v: f"{v:g}", x_fmt=lambda v: f"{v:.0f}",
        hlines=[(threshold, f"threshold 1/(α/2) = {threshold:g}")], vline=stop(success, "success"))
    r_chart = charts.line_chart(
        "Reward: anytime-valid interval for mean reward B − A after each case",
        [charts.Series("mean reward B − A", [(p["cases"], p["reward_mean"]) for p in path],
                       band=[(p["cases"], p["reward_low"], p["reward_high"]) for p in path])],
        x_label="cases", y_label="reward B − A", y_range=(-1.0, 1.0), y_fmt=lambda v: f"{v:+.1f}", x_fmt=lambda v: f"{v:.0f}",
        hlines=[(0.0, "no difference")], vline=stop(reward, "reward"))
    return {"e_value": e_chart, "reward": r_chart, "threshold": threshold, "success": success, "reward_test": reward}


def discordant(ledger: Ledger, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The tested cases on which A and B did not pass equally often, each with both variants' runs."""
    out = []
    for rows in complete_prefix(variant_runs(ledger, report["batch_id"]), seed=report["seed"], repeat=report["repeat"]):
        side = {v: sorted((r for r in rows if r["variant"] == v), key=lambda r: r["repeat"] or 0) for v in VARIANTS}
        rate = {v: sum(bool(r["success"]) for r in side[v]) / len(side[v]) for v in VARIANTS}
        if rate["A"] != rate["B"]:
            out.append({"case_id": rows[0]["case_id"], "rate": rate, "side": side, "better": "B" if rate["B"] > rate["A"] else "A"})
    return sorted(out, key=lambda c: (c["better"], str(c["case_id"])))


def ab_page(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """Everything ab.html draws."""
    report = ab_report(ledger, batch_id, with_path=True)
    rows, forest_rows = metric_rows(report)
    return {
        "report": report, "metrics": rows, "names": {v: report["variants"][v]["spec"] for v in VARIANTS},
        "forest": charts.forest("Difference B − A per metric, with its interval", forest_rows) if forest_rows else None,
        "path": path_charts(report), "discordant": discordant(ledger, report), "limit": OUTPUT_LIMIT,
    }
