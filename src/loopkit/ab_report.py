"""The report of an A/B test, recomputed from the ledger: metrics per variant, deltas with
intervals, fixed-sample and anytime-valid tests, the verdict, and its text and markdown forms.

`loopkit ab`, `loopkit ab --show` and `loopkit show` of an ab batch all print this, so they agree.
All differences are B - A. See `loopkit.ab` for the design and `loopkit.stats` for the tests.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from . import stats
from .status import FINISHED
from .formatting import usd
from .errors import UsageError
from .ledger import Ledger
from .ledger.ab_queries import ab_runs
from .liveness import is_stale
from .timewindow import seconds_between

__all__ = ["ab_markdown", "ab_report", "ab_table_rows", "append_ab_summary", "report_tests", "report_title", "sequential_lines"]

VARIANTS = ("A", "B")
DETECT_PTS = 0.05  # the success-rate change the "would need about M more cases" hint is sized for
LATENCY_BASIS = "run wall time (runs.started_at to runs.ended_at): model calls, checkers and queueing"
MODEL_LATENCY_BASIS = "sum of calls.latency_ms per run (model time, retries included)"


# --------------------------------------------------------------------------- running


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _variant_metrics(rows: list[dict[str, Any]], *, level: float) -> dict[str, Any]:
    n = len(rows)
    passed = sum(r["ok"] for r in rows)
    cost = math.fsum(r["cost"] for r in rows)
    lo, hi = stats.wilson_ci(passed, n, level=level) if n else (None, None)
    walls = [r["wall_ms"] for r in rows if r["wall_ms"] is not None]
    models = [r["model_ms"] for r in rows]
    return {
        "runs": n,
        "passed": passed,
        "success_rate": passed / n if n else None,
        "success_rate_ci": [lo, hi],
        "mean_reward": _mean([r["reward"] for r in rows]),
        "mean_cost_usd": cost / n if n else None,
        "cost_usd": cost,
        "cost_per_success_usd": cost / passed if passed else None,
        "mean_iterations": _mean([r["iterations"] for r in rows]),
        "latency_ms": {"basis": LATENCY_BASIS, "p50": stats.quantile(walls, 0.5), "p95": stats.quantile(walls, 0.95)},
        "model_latency_ms": {"basis": MODEL_LATENCY_BASIS, "p50": stats.quantile(models, 0.5), "p95": stats.quantile(models, 0.95)},
        "escalations": sum(r["escalations"] for r in rows),
        "runs_escalated": sum(r["escalations"] > 0 for r in rows),
        "errors": sum(r["status"] == "error" for r in rows),
        "needs_review": sum(r["status"] == "needs_review" for r in rows),
        "cached_calls": sum(r["cached"] for r in rows),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
    }


def _delta(estimate: float | None, lo: float | None, hi: float | None, *, level: float, method: str,
           p_value: float | None = None, test: str | None = None) -> dict[str, Any]:
    return {"estimate": estimate, "ci_low": lo, "ci_high": hi, "level": level, "method": method, "p_value": p_value, "test": test}


def _test(result: stats.TestResult, *, metric: str, method: str, level: float, anytime: bool, interval_of: str,
          p_value: float | None = None, estimate: float | None = None, ci: tuple[float | None, float | None] | None = None,
          **extra: Any) -> dict[str, Any]:
    lo, hi = ci if ci is not None else (result.ci_low, result.ci_high)
    return {"name": result.name, "metric": metric, "method": method, "anytime_valid": anytime,
            "statistic": result.statistic, "p_value": result.p_value if p_value is None else p_value,
            "estimate": result.estimate if estimate is None else estimate, "ci_low": lo, "ci_high": hi,
            "level": level, "interval_of": interval_of, **extra}


def _load_runs(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    runs, calls, escalations = ab_runs(ledger, batch_id)
    out = []
    for r in runs:
        wall = seconds_between(r["started_at"], r["ended_at"])
        call = calls.get(r["id"], {})
        out.append({**r, "ok": bool(r["success"]), "reward": float(r["reward"] or 0.0), "cost": float(r["cost_usd"] or 0.0),
                    "iterations": int(r["iterations"] or 0), "wall_ms": None if wall is None else wall * 1000,
                    "model_ms": float(call.get("ms") or 0.0), "cached": int(call.get("cached") or 0),
                    "escalations": escalations.get(r["id"], 0)})
    return out


def ab_report(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """The A/B report of an `ab` batch, recomputed from its runs (the same live and from `--show`).

    Pairs are fed to the sequential tests in the order they finished (the later of the two runs'
    `ended_at`), as the live test saw them.
    """
    batch = ledger.batch(batch_id)
    if batch is None:
        raise UsageError(f"no batch {batch_id}")
    if batch["kind"] != "ab":
        raise UsageError(f"batch {batch_id[:10]} is a `{batch['kind']}` batch, not an A/B test; use `loopkit show {batch_id[:10]}`")
    options = json.loads(batch.get("options") or "{}")
    alpha = float(options.get("alpha", 0.05))
    level = 1.0 - alpha
    names = {}
    for v, h in (("A", batch["spec_hash"]), ("B", batch["spec_hash_b"])):
        spec = ledger.spec_text(h) if h else None
        names[v] = spec["name"] if spec else (h or "?")

    runs = _load_runs(ledger, batch_id)
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in runs:
        by_key.setdefault((r["case_id"], r["repeat"] or 0), {})[r["variant"]] = r
    pairs = [(k, v["A"], v["B"]) for k, v in by_key.items()
             if "A" in v and "B" in v and v["A"]["status"] in FINISHED and v["B"]["status"] in FINISHED]
    pairs.sort(key=lambda p: (max(p[1]["ended_at"] or "", p[2]["ended_at"] or ""), p[0]))
    n = len(pairs)
    pairs_available = int(options.get("pairs_available") or n)
    target_n = max(1, pairs_available)

    monitor = stats.SequentialMonitor(alpha=alpha, target_n=target_n)
    for _, a, b in pairs:
        monitor.update(a["ok"], b["ok"], b["reward"] - a["reward"])

    rows = {"A": [p[1] for p in pairs], "B": [p[2] for p in pairs]}
    variants = {v: {"spec": names[v], "spec_hash": batch["spec_hash" if v == "A" else "spec_hash_b"],
                    **_variant_metrics(rows[v], level=level)} for v in VARIANTS}

    deltas: dict[str, Any] = {}
    tests: dict[str, Any] = {}
    if n:
        b_cnt = sum(a["ok"] and not b["ok"] for _, a, b in pairs)
        c_cnt = sum(b["ok"] and not a["ok"] for _, a, b in pairs)
        boot = stats.Resamples(n, seed=int(options.get("seed") or 0))
        ab_pairs = [(a, b) for _, a, b in pairs]

        both = sum(a["ok"] and b["ok"] for _, a, b in pairs)
        mc = stats.mcnemar_test(b_cnt, c_cnt, n, level=level)
        ci = stats.paired_diff_ci(both, b_cnt, c_cnt, n - both - b_cnt - c_cnt, level=level)
        tests["success_mcnemar"] = _test(mc, metric="success_rate", method="exact McNemar test on discordant pairs (fixed-sample)",
                                         level=level, anytime=False, interval_of="success rate B - A (Newcombe paired score interval)",
                                         ci=ci, discordant={"a_only": b_cnt, "b_only": c_cnt})
        deltas["success_rate"] = _delta(mc.estimate, *ci, level=level, method="Newcombe paired score interval",
                                        p_value=mc.p_value, test="success_mcnemar")

        for metric, key, test_name in (("mean_reward", "reward", "reward_wilcoxon"), ("mean_iterations", "iterations", "iterations_wilcoxon")):
            w = stats.wilcoxon_signed_rank([b[key] - a[key] for a, b in ab_pairs], level=level)
            tests[test_name] = _test(w, metric=metric, method="Wilcoxon signed-rank test (fixed-sample, normal approximation)",
                                     level=level, anytime=False, interval_of=f"mean {key} B - A (normal)")
            deltas[metric] = _delta(w.estimate, w.ci_low, w.ci_high, level=level, method="normal interval of the mean difference",
                                    p_value=w.p_value, test=test_name)

        cost_diffs = [b["cost"] - a["cost"] for a, b in ab_pairs]
        lo, hi = stats.paired_bootstrap_ci(cost_diffs, level=level, seed=int(options.get("seed") or 0))
        p_cost = boot.p_value_mean(cost_diffs)
        mean_cost = statistics.fmean(cost_diffs)
        tests["cost_bootstrap"] = _test(stats.TestResult("cost_paired_bootstrap", mean_cost, p_cost, mean_cost, lo, hi),
                                        metric="mean_cost_usd", method="paired bootstrap (percentile CI; p from centred resamples)",
                                        level=level, anytime=False, interval_of="mean cost B - A in USD")
        deltas["mean_cost_usd"] = _delta(mean_cost, lo, hi, level=level, method="paired bootstrap", p_value=p_cost, test="cost_bootstrap")

        def cps(sample: list[Any], v: int) -> float | None:
            wins = sum(p[v]["ok"] for p in sample)
            return math.fsum(p[v]["cost"] for p in sample) / wins if wins else None

        def cps_diff(sample: list[Any]) -> float | None:
            x, y = cps(sample, 0), cps(sample, 1)
            return None if x is None or y is None else y - x

        est = cps_diff(ab_pairs)
        lo, hi = boot.ci(ab_pairs, cps_diff, level) if est is not None else (None, None)
        deltas["cost_per_success_usd"] = _delta(est, lo, hi, level=level, method="paired bootstrap (resamples with no success in a variant skipped)")

        walled = [(a, b) for a, b in ab_pairs if a["wall_ms"] is not None and b["wall_ms"] is not None]
        for name, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95)):
            def qdiff(sample: list[Any], q: float = q) -> float | None:
                x, y = stats.quantile([p[0]["wall_ms"] for p in sample], q), stats.quantile([p[1]["wall_ms"] for p in sample], q)
                return None if x is None or y is None else y - x

            est = qdiff(walled)
            resamples = boot if len(walled) == n else stats.Resamples(len(walled), seed=1)
            lo, hi = resamples.ci(walled, qdiff, level) if walled else (None, None)
            deltas[name] = _delta(est, lo, hi, level=level, method=f"paired bootstrap; {LATENCY_BASIS}")

        esc = [float(b["escalations"] - a["escalations"]) for a, b in ab_pairs]
        lo, hi = boot.ci(esc, lambda s: statistics.fmean(s), level)
        deltas["escalations_per_run"] = _delta(statistics.fmean(esc), lo, hi, level=level, method="paired bootstrap")
    else:
        b_cnt = c_cnt = 0

    # The anytime-valid tests: these alone declare a winner.
    s, r = monitor.success, monitor.reward
    share = c_cnt / (b_cnt + c_cnt) if b_cnt + c_cnt else None
    tests["success_sequential"] = {**_test(
        s.result(), metric="success_rate", anytime=True, level=1 - monitor.each,
        method=f"beta-binomial mixture e-value on discordant pairs, level alpha/2 = {monitor.each:g}; p Bonferroni-adjusted x2",
        interval_of="P(B is the one that passes | exactly one variant passes), anytime-valid",
        p_value=min(1.0, 2 * s.p_value), ci=monitor.discordant,
        e_value=s.e, threshold=1 / monitor.each, winner=s.winner, decided_after=s.stopped_at,
        success_rate_diff=s.result().estimate), "estimate": share}
    tests["reward_sequential"] = _test(
        r.result(), metric="mean_reward", anytime=True, level=1 - monitor.each,
        method=f"normal-mixture confidence sequence for mean reward B - A, level alpha/2 = {monitor.each:g}; p Bonferroni-adjusted x2",
        interval_of="mean reward B - A, anytime-valid", p_value=min(1.0, 2 * r.p_value),
        winner=r.winner, decided_after=r.stopped_at)

    for key, entry in tests.items():
        entry["name"] = key
        entry["interval"] = [entry["ci_low"], entry["ci_high"]]
    status = "interrupted" if is_stale(batch) else batch["status"]  # a `running` batch whose process is gone
    errors = sum(x["status"] == "error" for x in runs)
    not_run = max(0, 2 * pairs_available - len(runs)) if status == "budget" else 0
    stopped_early = status == "done" and bool(options.get("early_stop", True)) and n < pairs_available
    verdict = _verdict(monitor, variants, deltas, names, n=n, available=pairs_available, status=status,
                       stopped_early=stopped_early, repeat=int(options.get("repeat") or 1), b=b_cnt, c=c_cnt)
    exit_code = 3 if status == "budget" else 4 if errors else 0
    return _finite({
        "batch_id": batch_id,
        "kind": "ab",
        "status": status,
        "started_at": batch["started_at"],
        "ended_at": batch["ended_at"],
        "alpha": alpha,
        "repeat": int(options.get("repeat") or 1),
        "cases_available": int(options.get("cases_available") or n),
        "pairs_available": pairs_available,
        "cases_run": len({k[0] for k, _, _ in pairs}),
        "pairs_run": n,
        "runs": len(runs),
        "unpaired_runs": len(runs) - 2 * n,
        "stopped_early": stopped_early,
        "early_stop": bool(options.get("early_stop", True)),
        "not_run_budget": not_run,
        "errors": errors,
        "cost_usd": math.fsum(x["cost"] for x in runs),
        "variants": variants,
        "deltas": deltas,
        "tests": list(tests.values()),  # a list of tests, each named, with its p_value and interval
        "verdict": verdict,
        "exit_code": exit_code,
        "notes": _notes(variants, runs, n),
    })


def _finite(value: Any) -> Any:
    """The report with inf/nan replaced by None, so --json stays strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _notes(variants: dict[str, Any], runs: list[dict[str, Any]], n: int) -> list[str]:
    notes = ["Per-variant metrics cover the runs of complete pairs only; deltas are B - A.",
             "Fixed-sample p-values (McNemar, Wilcoxon, bootstrap) are for information: the test looked after every pair, "
             "so only the anytime-valid tests (success_sequential, reward_sequential) declare a winner.",
             f"Latency is {LATENCY_BASIS}."]
    cached = sum(v["cached_calls"] for v in variants.values())
    if cached:
        notes.append(f"{cached} call(s) were answered from the response cache at cost 0; run with --no-cache for comparable costs.")
    if len(runs) > 2 * n:
        notes.append(f"{len(runs) - 2 * n} run(s) have no finished partner and are left out.")
    return notes


def _pts(x: float) -> str:
    return f"{x * 100:+.0f} pts"


def _cases_word(repeat: int) -> str:
    return "pairs" if repeat > 1 else "cases"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _verdict(monitor: stats.SequentialMonitor, variants: dict[str, Any], deltas: dict[str, Any], names: dict[str, str], *, n: int,
             available: int, status: str, stopped_early: bool, repeat: int, b: int, c: int) -> dict[str, Any]:
    word = _cases_word(repeat)
    s, r = monitor.success, monitor.reward
    if stopped_early:
        tail = f"stopped after {n} of {available} {word}"
    elif status == "budget":
        tail = f"the batch budget stopped the test after {n} of {available} {word}"
    elif status in ("interrupted", "running"):
        tail = f"{status} after {n} of {available} {word}"
    else:
        tail = f"after {n} of {available} {word}"
    base = {"winner": None, "winner_variant": None, "decided_by": None, "alpha": monitor.alpha}
    if n == 0:
        return {**base, "text": f"no finished pairs yet: nothing to compare ({tail})"}
    if monitor.mixed:
        sw = s.winner
        other = "B" if sw == "A" else "A"
        text = (f"mixed result: {sw} ({names[sw]}) passes more often but {other} ({names[other]}) earns more reward; "
                f"no winner declared — {tail}")
        return {**base, "decided_by": "success and reward disagree", "text": text}
    winner = monitor.winner
    if winner is None:
        rate = (b + c) / n
        more = stats.required_pairs_for(DETECT_PTS, rate, alpha=monitor.each, already=n)
        sized = (f"would need about {more} more {word} to detect a {DETECT_PTS * 100:.0f}-pt change" if more
                 else f"enough {word} to detect a {DETECT_PTS * 100:.0f}-pt change: any difference is likely smaller")
        if status == "done":
            return {**base, "text": f"no significant difference after {n} {word} ({sized})"}
        return {**base, "text": f"no significant difference yet: {tail} ({sized})"}
    loser = "A" if winner == "B" else "B"
    sign = 1.0 if winner == "B" else -1.0
    parts = []
    decided = [k for k, t in (("success", s), ("reward", r)) if t.winner == winner]
    if "success" in decided:
        d = deltas["success_rate"]
        lo_hi = sorted([sign * d["ci_low"], sign * d["ci_high"]]) if d["ci_low"] is not None else None
        ci = f" ({d['level']:.0%} CI {_pts(lo_hi[0])} to {_pts(lo_hi[1])})" if lo_hi else ""
        parts.append(f"success {_pts(sign * d['estimate'])}{ci}, p = {_fmt_p(min(1.0, 2 * s.p_value))}")
    if "reward" in decided:
        d = deltas["mean_reward"]
        lo_hi = sorted([sign * d["ci_low"], sign * d["ci_high"]]) if d["ci_low"] is not None else None
        ci = f" ({d['level']:.0%} CI {lo_hi[0]:+.3f} to {lo_hi[1]:+.3f})" if lo_hi else ""
        parts.append(f"reward {sign * d['estimate']:+.3f}{ci}, p = {_fmt_p(min(1.0, 2 * r.p_value))}")
    text = f"{winner} ({names[winner]}) is better: " + "; ".join(parts)
    cw, cl = variants[winner]["cost_per_success_usd"], variants[loser]["cost_per_success_usd"]
    if cw is not None and cl is not None and cl > 0:
        change = 1 - cw / cl
        if abs(change) >= 0.005:
            text += f"; {abs(change):.0%} {'cheaper' if change > 0 else 'dearer'} per success"
    elif cw is not None and cl is None:
        text += f"; {loser} had no success to compare cost with"
    text += f" — {tail}"
    return {**base, "winner": names[winner], "winner_variant": winner, "decided_by": " and ".join(decided), "text": text}


# --------------------------------------------------------------------------- rendering (plain text, for tables and markdown)


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
        return _fmt_p((d.get(key) or {}).get("p_value"))

    return [
        ("success rate", rate(A), rate(B), _interval(d.get("success_rate"), _pts, lambda x: f"{x * 100:+.0f}"), p("success_rate")),
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


def report_tests(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's tests keyed by name (`success_mcnemar`, `reward_sequential`, ...)."""
    return {t["name"]: t for t in report["tests"]}


def sequential_lines(report: dict[str, Any]) -> list[str]:
    """The anytime-valid tests in words."""
    t = report_tests(report)
    s, r = t["success_sequential"], t["reward_sequential"]
    alpha = report["alpha"]
    disc = s.get("estimate")
    share = "no discordant pairs yet" if disc is None else (
        f"B passed in {disc:.0%} of the pairs where exactly one passed "
        f"({s['level']:.1%} CS {s['ci_low']:.0%}-{s['ci_high']:.0%})")
    return [
        f"anytime-valid tests (alpha {alpha:g}, split over 2 tests; p adjusted):",
        f"  success: e-value {'inf' if s['e_value'] is None else format(s['e_value'], '.3g')} (winner at >= {s['threshold']:.3g}), "
        f"p = {_fmt_p(s['p_value'])}; {share}",
        f"  reward: mean B - A {r['estimate']:+.3f}, {r['level']:.1%} CS [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], p = {_fmt_p(r['p_value'])}",
    ]


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
    lines += [""] + [f"- {line.strip()}" for line in sequential_lines(report)[1:]]
    lines += ["", f"batch `{report['batch_id'][:10]}` · {report['pairs_run']} of {report['pairs_available']} pairs · "
                  f"cost ${report['cost_usd']:.4f}", ""]
    from .redact import scrub

    return scrub("\n".join(lines) + "\n") or ""


def append_ab_summary(report: dict[str, Any]) -> None:
    """Append the markdown report to $GITHUB_STEP_SUMMARY when it is set."""
    import os

    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(ab_markdown(report))
