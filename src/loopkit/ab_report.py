"""The report of an A/B test, recomputed from the ledger: metrics per variant, deltas with
intervals, fixed-sample and anytime-valid tests, and the verdict.

`loopkit ab`, `loopkit ab --show` and `loopkit show` of an ab batch all print this, so they agree
(`cli/render_ab.py` turns it into a table and markdown). All differences are B - A. The case is the
unit: a case's repeats are averaged per variant before any test. See `loopkit.ab` for the design and
`loopkit.stats` for the tests.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from . import stats
from .ab_cases import VARIANTS, case_means, case_summary, complete_prefix
from .ab_verdict import fmt_p, pts, verdict
from .errors import UsageError
from .human import human_usd_by_run
from .ledger import Ledger
from .ledger.ab_queries import ab_runs
from .liveness import is_stale
from .status import exit_code
from .timewindow import seconds_between

__all__ = ["ab_report", "fmt_p", "pts", "report_tests"]

LATENCY_BASIS = "run wall time (runs.started_at to runs.ended_at): model calls, checkers and queueing"
MODEL_LATENCY_BASIS = "sum of calls.latency_ms per run (model time, retries included)"


# --------------------------------------------------------------------------- metrics


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _variant_metrics(rows: list[dict[str, Any]], *, level: float) -> dict[str, Any]:
    n = len(rows)
    passed = sum(r["ok"] for r in rows)
    cost = math.fsum(r["cost"] for r in rows)
    human = math.fsum(r["human_usd"] for r in rows)
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
        "model_cost_usd": cost - human,
        "human_usd": human,
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


def _load_runs(ledger: Ledger, batch_id: str, human_usd: Mapping[str, float]) -> list[dict[str, Any]]:
    """The batch's runs, each with its cost: every call of the run (runs.cost_usd sums them, judges
    included) plus the person's time in USD."""
    runs, calls, escalations = ab_runs(ledger, batch_id)
    out = []
    for r in runs:
        wall = seconds_between(r["started_at"], r["ended_at"])
        call = calls.get(r["id"], {})
        human = float(human_usd.get(r["id"]) or 0.0)
        out.append({**r, "ok": bool(r["success"]), "reward": float(r["reward"] or 0.0), "human_usd": human,
                    "cost": float(r["cost_usd"] or 0.0) + human,
                    "iterations": int(r["iterations"] or 0), "wall_ms": None if wall is None else wall * 1000,
                    "model_ms": float(call.get("ms") or 0.0), "cached": int(call.get("cached") or 0),
                    "escalations": escalations.get(r["id"], 0)})
    return out


# --------------------------------------------------------------------------- tests


def _success_test(pairs: list[tuple[dict[str, Any], dict[str, Any]]], boot: stats.Resamples, *, repeat: int,
                  level: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(test, delta) for success B - A: exact McNemar with Newcombe's interval for one run per case;
    over repeats, Wilcoxon on the cases' pass-rate differences with a bootstrap over cases."""
    if repeat == 1:
        both = sum(a["ok"] == b["ok"] == 1 for a, b in pairs)
        a_only = sum(a["ok"] > b["ok"] for a, b in pairs)
        b_only = sum(b["ok"] > a["ok"] for a, b in pairs)
        mc = stats.mcnemar_test(a_only, b_only, len(pairs), level=level)
        ci = stats.paired_diff_ci(both, a_only, b_only, len(pairs) - both - a_only - b_only, level=level)
        test = _test(mc, metric="success_rate", method="exact McNemar test on discordant pairs (fixed-sample)", level=level,
                     anytime=False, interval_of="success rate B - A (Newcombe paired score interval)", ci=ci,
                     discordant={"a_only": a_only, "b_only": b_only})
        return test, _delta(mc.estimate, *ci, level=level, method="Newcombe paired score interval", p_value=mc.p_value,
                             test="success_mcnemar")
    diffs = [b["ok"] - a["ok"] for a, b in pairs]
    w = stats.wilcoxon_signed_rank(diffs, level=level)
    ci = boot.ci(diffs, statistics.fmean, level)
    test = _test(w, metric="success_rate", method="Wilcoxon signed-rank test on the cases' pass-rate differences (fixed-sample)",
                 level=level, anytime=False, interval_of="success rate B - A (paired bootstrap over cases)", ci=ci)
    return test, _delta(w.estimate, *ci, level=level, method="paired bootstrap over cases", p_value=w.p_value,
                        test="success_wilcoxon")


def _fixed_tests(pairs: list[tuple[dict[str, Any], dict[str, Any]]], *, repeat: int, level: float,
                 seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-metric deltas and the fixed-sample tests behind them, one (A, B) pair per case."""
    deltas: dict[str, Any] = {}
    tests: dict[str, Any] = {}
    n = len(pairs)
    boot = stats.Resamples(n, seed=seed)
    test, deltas["success_rate"] = _success_test(pairs, boot, repeat=repeat, level=level)
    tests[deltas["success_rate"]["test"]] = test

    for metric, key, test_name in (("mean_reward", "reward", "reward_wilcoxon"), ("mean_iterations", "iterations", "iterations_wilcoxon")):
        w = stats.wilcoxon_signed_rank([b[key] - a[key] for a, b in pairs], level=level)
        tests[test_name] = _test(w, metric=metric, method="Wilcoxon signed-rank test (fixed-sample, normal approximation)",
                                 level=level, anytime=False, interval_of=f"mean {key} B - A (normal)")
        deltas[metric] = _delta(w.estimate, w.ci_low, w.ci_high, level=level, method="normal interval of the mean difference",
                                p_value=w.p_value, test=test_name)

    cost_diffs = [b["cost"] - a["cost"] for a, b in pairs]
    lo, hi = stats.paired_bootstrap_ci(cost_diffs, level=level, seed=seed)
    p_cost = boot.p_value_mean(cost_diffs)
    mean_cost = statistics.fmean(cost_diffs)
    tests["cost_bootstrap"] = _test(stats.TestResult("cost_paired_bootstrap", mean_cost, p_cost, mean_cost, lo, hi),
                                    metric="mean_cost_usd", method="paired bootstrap (percentile CI; p from centred resamples)",
                                    level=level, anytime=False, interval_of="mean cost B - A in USD")
    deltas["mean_cost_usd"] = _delta(mean_cost, lo, hi, level=level, method="paired bootstrap", p_value=p_cost, test="cost_bootstrap")

    def cps(sample: list[Any], v: int) -> float | None:
        wins = math.fsum(p[v]["ok"] for p in sample)
        return math.fsum(p[v]["cost"] for p in sample) / wins if wins else None

    def cps_diff(sample: list[Any]) -> float | None:
        x, y = cps(sample, 0), cps(sample, 1)
        return None if x is None or y is None else y - x

    est = cps_diff(pairs)
    lo, hi = boot.ci(pairs, cps_diff, level) if est is not None else (None, None)
    deltas["cost_per_success_usd"] = _delta(est, lo, hi, level=level, method="paired bootstrap (resamples with no success in a variant skipped)")

    walled = [(a, b) for a, b in pairs if a["wall_ms"] is not None and b["wall_ms"] is not None]
    for name, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95)):
        def qdiff(sample: list[Any], q: float = q) -> float | None:
            x, y = stats.quantile([p[0]["wall_ms"] for p in sample], q), stats.quantile([p[1]["wall_ms"] for p in sample], q)
            return None if x is None or y is None else y - x

        est = qdiff(walled)
        resamples = boot if len(walled) == n else stats.Resamples(len(walled), seed=1)
        lo, hi = resamples.ci(walled, qdiff, level) if walled else (None, None)
        deltas[name] = _delta(est, lo, hi, level=level, method=f"paired bootstrap; {LATENCY_BASIS}")

    esc = [b["escalations"] - a["escalations"] for a, b in pairs]
    lo, hi = boot.ci(esc, statistics.fmean, level)
    deltas["escalations_per_run"] = _delta(statistics.fmean(esc), lo, hi, level=level, method="paired bootstrap")
    return deltas, tests


def _sequential_tests(monitor: stats.SequentialMonitor) -> dict[str, Any]:
    """The anytime-valid tests: these alone end the experiment and make the verdict, each at its share of alpha."""
    s, r, k = monitor.success, monitor.reward, monitor.tests
    share = f"level alpha/{k} = {monitor.each:g}; p Bonferroni-adjusted x{k}"
    tests = {
        "success_sequential": {**_test(
            s.result(), metric="success_rate", anytime=True, level=1 - monitor.each,
            method=f"beta-binomial mixture e-value on discordant cases, {share}",
            interval_of="P(B is the one that passes | exactly one variant passes), anytime-valid",
            p_value=min(1.0, k * s.p_value), ci=monitor.discordant,
            e_value=s.e, threshold=1 / monitor.each, winner=s.winner, decided_after=s.stopped_at,
            success_rate_diff=s.result().estimate), "estimate": s.c / (s.b + s.c) if s.b + s.c else None},
        "reward_sequential": _test(
            r.result(), metric="mean_reward", anytime=True, level=1 - monitor.each,
            method=f"normal-mixture confidence sequence for mean reward B - A, {share}",
            interval_of="mean reward B - A, anytime-valid", p_value=min(1.0, k * r.p_value),
            winner=r.winner, decided_after=r.stopped_at),
    }
    ni, cost = monitor.noninferiority, monitor.cost
    if ni is not None and monitor.margin is not None:
        tests["success_noninferiority"] = _test(
            ni.result(), metric="success_rate", anytime=True, level=1 - monitor.each,
            method=(f"betting e-process against 'B passes less often than A by {monitor.margin * 100:g} pts or more' "
                    f"(Waudby-Smith & Ramdas 2023, mixture of bets on every case), {share}"),
            interval_of="success rate B - A: anytime-valid lower bound (one-sided; the upper end is 1)",
            p_value=min(1.0, k * ni.p_value), margin=monitor.margin, e_value=ni.e, threshold=1 / monitor.each,
            non_inferior=ni.crossed, winner=ni.winner, decided_after=ni.stopped_at)
    if cost is not None:
        tests["cost_sequential"] = _test(
            cost.result(), metric="mean_cost_usd_per_case", anytime=True, level=1 - monitor.each,
            method=(f"asymptotic confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas 2024), {share}; "
                    f"no claim before {cost.min_cases} cases"),
            interval_of="mean cost per case B - A in USD (every call of the case's runs, plus a person's time when priced)",
            p_value=min(1.0, k * cost.p_value), winner=cost.winner, direction=monitor.cost_side,
            decided_after=cost.stopped_at)
    return tests


# --------------------------------------------------------------------------- the report


def ab_report(ledger: Ledger, batch_id: str, *, with_path: bool = False, human_usd: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The A/B report of an `ab` batch, recomputed from its runs (the same live and from `--show`).

    Cases reach the sequential tests as the live test fed them: in the batch's seeded scheduling
    order, each once all its runs and every earlier case's runs have finished. `with_path` adds
    `path`: the anytime-valid tests after each case (what `loopkit report` draws). `human_usd`: a
    person's time per run in USD, added to the run's cost (default: `human_usd_by_run`).
    """
    batch = ledger.batch(batch_id)
    if batch is None:
        raise UsageError(f"no batch {batch_id}")
    if batch["kind"] != "ab":
        raise UsageError(f"batch {batch_id[:10]} is a `{batch['kind']}` batch, not an A/B test; use `loopkit show {batch_id[:10]}`")
    options = json.loads(batch.get("options") or "{}")
    alpha = float(options.get("alpha", 0.05))
    level = 1.0 - alpha
    repeat = int(options.get("repeat") or 1)
    seed = int(options.get("seed") or 0)
    names = {}
    for v, h in (("A", batch["spec_hash"]), ("B", batch["spec_hash_b"])):
        spec = ledger.spec_text(h) if h else None
        names[v] = spec["name"] if spec else (h or "?")

    margin = options.get("margin")
    margin = None if margin is None else float(margin)
    if human_usd is None:  # a person's time: reviews at their recorded rate, runs still waiting at their hand-off's
        human_usd = human_usd_by_run(ledger, batch_id, usd_per_hour=options.get("human_usd_per_hour"))
    runs = _load_runs(ledger, batch_id, human_usd)
    cases = complete_prefix(runs, seed=seed, repeat=repeat)
    n = len(cases)
    cases_available = int(options.get("cases_available") or n)
    monitor = stats.SequentialMonitor(alpha=alpha, target_n=max(1, cases_available), margin=margin)
    path = []
    for rows in cases:
        monitor.update(*case_summary((r["variant"], r["ok"], r["reward"], r["cost"]) for r in rows))
        path.append({"cases": monitor.n, "e_value": monitor.success.e, "reward_mean": monitor.reward.mean,
                     "reward_low": monitor.reward.lo, "reward_high": monitor.reward.hi,
                     **({"ni_e_value": monitor.noninferiority.e} if monitor.noninferiority is not None else {})})

    included = [r for rows in cases for r in rows]
    variants = {v: {"spec": names[v], "spec_hash": batch["spec_hash" if v == "A" else "spec_hash_b"],
                    **_variant_metrics([r for r in included if r["variant"] == v], level=level)} for v in VARIANTS}
    deltas, tests = _fixed_tests([case_means(rows) for rows in cases], repeat=repeat, level=level, seed=seed) if n else ({}, {})
    tests.update(_sequential_tests(monitor))
    for key, entry in tests.items():
        entry["name"] = key
        entry["interval"] = [entry["ci_low"], entry["ci_high"]]

    status = "interrupted" if is_stale(batch) else batch["status"]  # a `running` batch whose process is gone
    errors = sum(x["status"] == "error" for x in runs)
    pairs_available = int(options.get("pairs_available") or n * repeat)
    stopped_early = status == "done" and bool(options.get("early_stop", True)) and n < cases_available
    failures = {s: sum(r["status"] == s for r in included) for s in ("error", "needs_review")}
    return _finite({
        "batch_id": batch_id,
        "kind": "ab",
        "status": status,
        "started_at": batch["started_at"],
        "ended_at": batch["ended_at"],
        "alpha": alpha,
        "margin": margin,
        "alpha_split": monitor.alpha_split,
        "seed": seed,
        "order": "cases shuffled by seed; each case (its repeats under both variants) is one unit of evidence",
        "repeat": repeat,
        "cases_available": cases_available,
        "pairs_available": pairs_available,
        "cases_run": n,
        "pairs_run": n * repeat,
        "runs": len(runs),
        "unpaired_runs": len(runs) - len(included),
        "stopped_early": stopped_early,
        "early_stop": bool(options.get("early_stop", True)),
        "not_run_budget": max(0, 2 * pairs_available - len(runs)) if status == "budget" else 0,
        "errors": errors,
        "counted_as_failures": failures,
        "cost_usd": math.fsum(x["cost"] for x in runs),
        "variants": variants,
        "deltas": deltas,
        "tests": list(tests.values()),  # a list of tests, each named, with its p_value and interval
        "verdict": verdict(monitor, variants, deltas, names, n=n, available=cases_available, status=status,
                           stopped_early=stopped_early),
        "exit_code": int(exit_code(budget_refused=status == "budget", errors=bool(errors), gate_failed=False)),
        "notes": _notes(variants, len(runs) - len(included), seed=seed, repeat=repeat, failures=failures, monitor=monitor),
        **({"path": path} if with_path else {}),
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


def _notes(variants: dict[str, Any], left_out: int, *, seed: int, repeat: int, failures: dict[str, int],
           monitor: stats.SequentialMonitor) -> list[str]:
    split = ", ".join(f"{name} {share:g}" for name, share in monitor.alpha_split.items())
    notes = ["Per-variant metrics cover the runs of the tested cases only; deltas are B - A.",
             "Fixed-sample p-values (McNemar, Wilcoxon, bootstrap) are for information: the test looked after every case, "
             f"so only the anytime-valid tests make the verdict, alpha {monitor.alpha:g} split between them: {split}.",
             f"Cases ran in an order shuffled with seed {seed} (`--seed {seed}` repeats it); a case reached the tests once "
             "it and every case before it had finished, so how long a run took cannot steer them.",
             f"Latency is {LATENCY_BASIS}."]
    if repeat > 1:
        notes.append(f"Each case ran {repeat} times per variant; the case is the unit: its repeats are averaged per variant before any test.")
    if failures["error"] or failures["needs_review"]:
        notes.append(f"{failures['error']} run(s) that ended in error and {failures['needs_review']} waiting for review "
                     "count as failures (not passed) in the success rates and the tests.")
    cached = sum(v["cached_calls"] for v in variants.values())
    if cached:
        notes.append(f"{cached} call(s) were answered from the response cache at cost 0; run with --no-cache for comparable costs.")
    if monitor.cost is not None:
        human = sum(v["human_usd"] for v in variants.values())
        notes.append("A case's cost is every call of its runs (worker, judges, agents), averaged over its repeats"
                     + (", plus a person's time in USD" if human else "") + "; the cost test is asymptotic (valid as cases "
                     f"accrue, like a CLT interval) and claims nothing before {monitor.cost.min_cases} cases.")
    if left_out:
        notes.append(f"{left_out} run(s) are left out: their case, or a case scheduled before it, has a run that did not finish.")
    return notes


def report_tests(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's tests keyed by name (`success_mcnemar`, `reward_sequential`, ...)."""
    return {t["name"]: t for t in report["tests"]}
