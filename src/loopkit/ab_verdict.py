"""The verdict of an A/B test in words and in fields, from the anytime-valid tests (`stats.SequentialMonitor`).

`kind` is `SequentialMonitor.kind` (the set is `stats.VERDICT_KINDS`); `winner` is the variant a
superiority test named, as before `--margin` existed: a non-inferior, cheaper B is no "winner", it is
`non_inferior_cheaper`. The text leads with what the user asked: "B is as good as A (within 2 pts)
and 71% cheaper per case", each claim with its anytime-valid interval.
"""

from __future__ import annotations

from typing import Any

from . import stats
from .formatting import usd

__all__ = ["fmt_p", "pts", "verdict"]

DETECT_PTS = 0.05  # the success-rate change the "would need about M more cases" hint is sized for


def pts(x: float) -> str:
    return f"{x * 100:+.0f} pts"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _level(monitor: stats.SequentialMonitor) -> str:
    return f"{(1 - monitor.each) * 100:g}%"


def _against(winner: str, decided: list[str], deltas: dict[str, Any]) -> tuple[str | None, str]:
    """(metric, words) where the winner is worse on the metric that did not decide: said, not hidden."""
    sign = 1.0 if winner == "B" else -1.0
    success, reward = deltas["success_rate"]["estimate"] * sign, deltas["mean_reward"]["estimate"] * sign
    if "success" not in decided and success < 0:
        return "success", f"; against the success direction: {winner} passes less often ({pts(success)}, not significant)"
    if "reward" not in decided and reward < 0:
        return "reward", f"; against the reward direction: {winner} earns less reward ({reward:+.3f}, not significant)"
    return None, ""


def _superiority(monitor: stats.SequentialMonitor, winner: str, deltas: dict[str, Any],
                 view: str | None = None) -> tuple[list[str], str | None, str]:
    """(the deciding tests' figures, the metric against the winner, its words) for a superiority winner; the
    figures are the winner's lead, or `view`'s difference to the other variant ("B": B - A) when given."""
    s, r = monitor.success, monitor.reward
    sign = 1.0 if (view or winner) == "B" else -1.0
    parts = []
    decided = [k for k, t in (("success", s), ("reward", r)) if t.winner == winner]
    if "success" in decided:
        d = deltas["success_rate"]
        lo_hi = sorted([sign * d["ci_low"], sign * d["ci_high"]]) if d["ci_low"] is not None else None
        ci = f" ({d['level']:.0%} CI {pts(lo_hi[0])} to {pts(lo_hi[1])})" if lo_hi else ""
        parts.append(f"success {pts(sign * d['estimate'])}{ci}, p = {fmt_p(min(1.0, monitor.tests * s.p_value))}")
    if "reward" in decided:
        d = deltas["mean_reward"]
        lo_hi = sorted([sign * d["ci_low"], sign * d["ci_high"]]) if d["ci_low"] is not None else None
        ci = f" ({d['level']:.0%} CI {lo_hi[0]:+.3f} to {lo_hi[1]:+.3f})" if lo_hi else ""
        parts.append(f"reward {sign * d['estimate']:+.3f}{ci}, p = {fmt_p(min(1.0, monitor.tests * r.p_value))}")
    against, words = _against(winner, decided, deltas)
    return [" and ".join(decided)] + parts, against, words


def cost_per_case(monitor: stats.SequentialMonitor, a_mean_cost: float | None) -> dict[str, Any] | None:
    """B - A in USD per case with its anytime-valid interval, and relative to A's mean cost per case."""
    if monitor.cost is None:
        return None
    c = monitor.cost.result()
    base = a_mean_cost if a_mean_cost else None

    def rel(x: float | None) -> float | None:
        return None if x is None or base is None else x / base

    return {"estimate_usd": c.estimate, "ci_low_usd": c.ci_low, "ci_high_usd": c.ci_high, "relative": rel(c.estimate),
            "relative_ci": [rel(c.ci_low), rel(c.ci_high)], "direction": monitor.cost_side,
            "relative_to": "A's mean cost per case"}


def _cost_words(monitor: stats.SequentialMonitor, cost: dict[str, Any] | None) -> str:
    """'71% cheaper per case (-$0.0123, 98.75% CS -$0.0145 to -$0.0101)', or what is known so far."""
    if cost is None or monitor.cost is None:
        return ""
    est, lo, hi = cost["estimate_usd"], cost["ci_low_usd"], cost["ci_high_usd"]
    if lo is None or hi is None:
        return f"cost per case {usd(est, signed=True)} (too few cases for its interval)"
    interval = f"{usd(est, signed=True)}, {_level(monitor)} CS {usd(lo, signed=True)} to {usd(hi, signed=True)}"
    side = monitor.cost_side
    if side is None:
        return f"no cost difference shown ({interval} per case)"
    rel = cost["relative"]
    if side == "dearer" and rel is not None and rel >= 1:  # "31250000% dearer" reads as noise: say the multiple
        ratio = 1 + rel
        return f"{ratio:,.0f}× as dear per case ({interval})" if ratio >= 10 else f"{ratio:.1f}× as dear per case ({interval})"
    share = f"{abs(rel):.0%} " if rel is not None else ""
    return f"{share}{side} per case ({interval})"


def _ni_words(monitor: stats.SequentialMonitor, deltas: dict[str, Any]) -> str:
    ni = monitor.noninferiority
    assert ni is not None
    return f"success {pts(deltas['success_rate']['estimate'])}, at worst {pts(ni.lower)} ({_level(monitor)} anytime-valid bound)"


def _tail(*, n: int, available: int, status: str, stopped_early: bool) -> str:
    if stopped_early:
        return f"stopped after {n} of {available} cases"
    if status == "budget":
        return f"the batch budget stopped the test after {n} of {available} cases"
    if status in ("interrupted", "running"):
        return f"{status} after {n} of {available} cases"
    return f"after {n} of {available} cases"


def verdict(monitor: stats.SequentialMonitor, variants: dict[str, Any], deltas: dict[str, Any], names: dict[str, str], *, n: int,
            available: int, status: str, stopped_early: bool) -> dict[str, Any]:
    """The verdict: `kind`, `winner` (by superiority, or None), `success`/`cost` sides, and `text`."""
    s = monitor.success
    tail = _tail(n=n, available=available, status=status, stopped_early=stopped_early)
    cost = cost_per_case(monitor, variants["A"]["mean_cost_usd"])
    kind = monitor.kind if n else "inconclusive"
    base = {"kind": kind, "winner": None, "winner_variant": None, "decided_by": None, "against": None, "alpha": monitor.alpha,
            "margin": monitor.margin, "success": monitor.success_side if n else None, "cost": monitor.cost_side if n else None,
            "cost_per_case": cost}
    margin = f"within {monitor.margin * 100:g} pts" if monitor.margin is not None else ""
    cost_words = _cost_words(monitor, cost)
    if n == 0:
        return {**base, "text": f"no finished cases yet: nothing to compare ({tail})"}
    if kind == "mixed":
        sw = s.winner or "A"
        other = "B" if sw == "A" else "A"
        text = (f"mixed result: {sw} ({names[sw]}) passes more often but {other} ({names[other]}) earns more reward; "
                f"no winner declared — {tail}")
        return {**base, "decided_by": "success and reward disagree", "text": text}
    if kind.startswith("non_inferior"):
        worse = "; A passes more often, but by less than the margin" if monitor.winner == "A" else ""
        joint = {"non_inferior_cheaper": " and ", "non_inferior_dearer": " but "}.get(kind, "; ")
        text = f"B ({names['B']}) is as good as A ({margin}): {_ni_words(monitor, deltas)}{worse}{joint}{cost_words} — {tail}"
        return {**base, "decided_by": "non-inferiority" + (" and cost" if monitor.cost_side else ""), "text": text}
    if kind == "inconclusive":
        if monitor.margin is not None:
            first = "not enough evidence yet" if status != "done" else f"not enough evidence after {n} cases"
            text = f"{first} that B ({names['B']}) is as good as A ({margin}): {_ni_words(monitor, deltas)}; {cost_words} — {tail}"
            return {**base, "text": text}
        more = stats.required_pairs_for(DETECT_PTS, (s.b + s.c) / n, alpha=monitor.each, already=n)
        sized = (f"would need about {more} more cases to detect a {DETECT_PTS * 100:.0f}-pt change" if more
                 else f"enough cases to detect a {DETECT_PTS * 100:.0f}-pt change: any difference is likely smaller")
        if status == "done":
            return {**base, "text": f"no significant difference after {n} cases ({sized})"}
        return {**base, "text": f"no significant difference yet: {tail} ({sized})"}

    winner = monitor.winner or "A"
    loser = "A" if winner == "B" else "B"
    (decided_by, *parts), against, words = _superiority(monitor, winner, deltas, view="B" if kind == "cheaper_but_worse" else None)
    if kind == "cheaper_but_worse":  # a sentence about B: its figures are B - A
        text = f"B ({names['B']}) is cheaper but worse: " + "; ".join(parts) + words + f"; {cost_words} — {tail}"
        return {**base, "winner": names["A"], "winner_variant": "A", "decided_by": decided_by, "against": against, "text": text}
    text = f"{winner} ({names[winner]}) is better: " + "; ".join(parts) + words
    if monitor.cost_side is not None:
        text += f"; B is {cost_words}"
    else:
        cw, cl = variants[winner]["cost_per_success_usd"], variants[loser]["cost_per_success_usd"]
        if cw is not None and cl is not None and cl > 0:
            change = 1 - cw / cl
            if abs(change) >= 0.005:
                text += f"; {abs(change):.0%} {'cheaper' if change > 0 else 'dearer'} per success"
        elif cw is not None and cl is None:
            text += f"; {loser} had no success to compare cost with"
    text += f" — {tail}"
    return {**base, "winner": names[winner], "winner_variant": winner, "decided_by": decided_by, "against": against, "text": text}
