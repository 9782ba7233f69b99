"""What changed between two runs, two batches or two spec versions: pure logic, no SQL, no terminal.

`loopkit diff` reads rows with `loopkit.ledger.diffs` and hands them here:

- `text_diff` — a unified diff of two spec texts;
- `match_cases` / `matched_cases` — cases matched by (case_id, repeat), each classified as a regression (passed →
  not passed), a fix (not passed → passed), changed (status, stop reason, reward or iterations
  differ), same, or only on one side; regressions first, then fixes, then the rest;
- `batch_metrics` / `metric_deltas` — pass rate, mean reward, cost, cost per pass, mean
  iterations and mean latency of each side, and B − A;
- `iteration_pairs` — two runs iteration by iteration, with checker score changes.

Every function takes and returns plain dicts and lists, ready for `--json`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .redact import scrubber

__all__ = [
    "CHANGE_ORDER",
    "METRICS",
    "batch_metrics",
    "case_outcome",
    "classify",
    "iteration_pairs",
    "match_cases",
    "matched_cases",
    "metric_deltas",
    "summarize_changes",
    "text_diff",
]

Row = Mapping[str, Any]

# How cases are ordered in a diff: what a reviewer must see first comes first.
CHANGE_ORDER = ("regression", "fix", "changed", "removed", "added", "same")

# name → (label, which direction is better)
METRICS: dict[str, tuple[str, str]] = {
    "runs": ("runs", "none"),
    "pass_rate": ("pass rate", "higher"),
    "mean_reward": ("mean reward", "higher"),
    "cost_usd": ("cost", "lower"),
    "cost_per_pass": ("cost per pass", "lower"),
    "mean_iterations": ("mean iterations", "lower"),
    "mean_latency_ms": ("mean latency (ms)", "lower"),
}

_EPS = 1e-9


def text_diff(a: str | None, b: str | None, a_name: str = "a", b_name: str = "b", *, context: int = 3) -> list[str]:
    """A unified diff of two texts (lines without newlines); empty when they are equal. Keys in either text
    (a spec file read from disk may hold one) are shown as [REDACTED]."""
    if (a or "") == (b or ""):
        return []
    clean = scrubber()
    return list(difflib.unified_diff((clean(a) or "").splitlines(), (clean(b) or "").splitlines(), fromfile=a_name,
                                     tofile=b_name, n=context, lineterm=""))


def _passed(row: Row | None) -> bool:
    return bool(row and row.get("success"))


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def classify(a: Row | None, b: Row | None) -> str:
    """regression | fix | changed | same | removed (only in A) | added (only in B)."""
    if a is None and b is None:
        raise ValueError("classify needs at least one side")
    if b is None:
        return "removed"
    if a is None:
        return "added"
    if _passed(a) and not _passed(b):
        return "regression"
    if not _passed(a) and _passed(b):
        return "fix"
    if (a.get("status") != b.get("status") or a.get("stop_reason") != b.get("stop_reason")
            or abs(_num(a.get("reward")) - _num(b.get("reward"))) > _EPS or (a.get("iterations") or 0) != (b.get("iterations") or 0)):
        return "changed"
    return "same"


def case_outcome(row: Row | None, latency_ms: float | None = None) -> dict[str, Any] | None:
    """The part of a run a case diff shows."""
    if row is None:
        return None
    return {
        "run_id": row.get("id"), "status": row.get("status"), "stop_reason": row.get("stop_reason"),
        "success": bool(row.get("success")), "reward": row.get("reward"), "iterations": row.get("iterations") or 0,
        "cost_usd": _num(row.get("cost_usd")), "latency_ms": latency_ms,
    }


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _case_sort_key(case_id: Any) -> tuple[int, int, str]:
    """Numbers in numeric order, then text; so cases 2 and 10 sort as a person expects."""
    text = str(case_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def match_cases(a_rows: Iterable[Row], b_rows: Iterable[Row], *, a_latency: Mapping[str, float] | None = None,
                b_latency: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Cases of two batches matched by (case_id, repeat), regressions first, then fixes, then the rest.

    Each entry: `case_id`, `repeat`, `change`, `a` and `b` (see `case_outcome`; None on the side that
    lacks the case) and `delta` (B − A of reward, cost_usd, iterations, latency_ms).
    """
    return matched_cases(a_rows, b_rows, a_latency=a_latency, b_latency=b_latency)[0]


def matched_cases(a_rows: Iterable[Row], b_rows: Iterable[Row], *, a_latency: Mapping[str, float] | None = None,
                  b_latency: Mapping[str, float] | None = None, per_class: int | None = None,
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`match_cases` with every class counted (see `summarize_changes`) and, with `per_class`, only the first
    that many entries of each class built: a terminal shows a few, and 10,000 entries cost more than the SQL."""
    a_latency = a_latency or {}
    b_latency = b_latency or {}
    a_by = {(str(r["case_id"]), int(r.get("repeat") or 0)): r for r in a_rows}
    b_by = {(str(r["case_id"]), int(r.get("repeat") or 0)): r for r in b_rows}
    classes: dict[str, list[tuple[str, int]]] = {name: [] for name in CHANGE_ORDER}
    for key in list(a_by) + [k for k in b_by if k not in a_by]:
        classes[classify(a_by.get(key), b_by.get(key))].append(key)
    cases = []
    for change, keys in classes.items():
        keys.sort(key=lambda k: (_case_sort_key(k[0]), k[1]))
        for key in keys if per_class is None else keys[:per_class]:
            a, b = a_by.get(key), b_by.get(key)
            oa = case_outcome(a, a_latency.get(a["id"], 0.0) if a is not None else None)
            ob = case_outcome(b, b_latency.get(b["id"], 0.0) if b is not None else None)
            delta = {
                field: (_delta(_num(oa[field]) if oa[field] is not None else None, _num(ob[field]) if ob[field] is not None else None)
                        if oa is not None and ob is not None else None)
                for field in ("reward", "cost_usd", "iterations", "latency_ms")
            }
            cases.append({"case_id": key[0], "repeat": key[1], "change": change, "a": oa, "b": ob, "delta": delta})
    return cases, {change: len(keys) for change, keys in classes.items()}


def summarize_changes(cases: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many cases fall in each change class (every class present, zeros included)."""
    counts = dict.fromkeys(CHANGE_ORDER, 0)
    for c in cases:
        counts[c["change"]] += 1
    return counts


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def batch_metrics(rows: Iterable[Row], latency: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Metrics of one side: runs, pass rate, mean reward, cost, cost per pass, mean iterations, mean latency.

    `latency` maps run id → that run's model latency in ms (the sum of its calls' `latency_ms`).
    Means are over runs; a metric of no runs (or cost per pass with no pass) is None.
    """
    rows = list(rows)
    latency = latency or {}
    n = len(rows)
    passed = sum(1 for r in rows if _passed(r))
    cost = sum(_num(r.get("cost_usd")) for r in rows)
    return {
        "runs": n,
        "passed": passed,
        "pass_rate": passed / n if n else None,
        "mean_reward": _mean([_num(r.get("reward")) for r in rows]),
        "cost_usd": cost,
        "cost_per_pass": cost / passed if passed else None,
        "mean_iterations": _mean([float(r.get("iterations") or 0) for r in rows]),
        "mean_latency_ms": _mean([float(latency.get(r["id"], 0.0)) for r in rows]),
    }


def metric_deltas(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per metric: `a`, `b`, `delta` (B − A, None when either is None) and `better` (higher | lower | none)."""
    return {name: {"a": a.get(name), "b": b.get(name), "delta": _delta(a.get(name), b.get(name)), "better": better}
            for name, (_, better) in METRICS.items()}


def _checks_by_name(iteration: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {c["checker"]: c for c in (iteration or {}).get("checks", [])}


def _iteration_side(it: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if it is None:
        return None
    return {"model": it.get("model"), "output": it.get("output"), "reward": it.get("reward"), "passed": bool(it.get("passed")),
            "feedback": it.get("feedback"), "cost_usd": it.get("cost_usd")}


def iteration_pairs(a_iterations: Iterable[Mapping[str, Any]], b_iterations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Two runs' iterations side by side by number, with each checker's score in A and B and the change.

    Each entry: `n`, `a` / `b` (model, output, reward, passed, feedback, cost_usd; None past a run's
    last iteration), `output_changed`, and `checks`: one per checker in either iteration with
    `checker`, `audit`, `a_score`, `b_score`, `delta`, `a_passed`, `b_passed`.
    """
    a_by = {int(it["n"]): it for it in a_iterations}
    b_by = {int(it["n"]): it for it in b_iterations}
    pairs = []
    for n in sorted(set(a_by) | set(b_by)):
        a, b = a_by.get(n), b_by.get(n)
        a_checks, b_checks = _checks_by_name(a), _checks_by_name(b)
        names = list(a_checks) + [k for k in b_checks if k not in a_checks]
        checks = []
        for name in names:
            ca, cb = a_checks.get(name), b_checks.get(name)
            a_score = ca.get("score") if ca else None
            b_score = cb.get("score") if cb else None
            checks.append({
                "checker": name, "audit": bool((ca or cb or {}).get("audit")), "a_score": a_score, "b_score": b_score,
                "delta": _delta(a_score, b_score), "a_passed": bool(ca["passed"]) if ca else None,
                "b_passed": bool(cb["passed"]) if cb else None,
            })
        pairs.append({"n": n, "a": _iteration_side(a), "b": _iteration_side(b),
                      "output_changed": (a or {}).get("output") != (b or {}).get("output"), "checks": checks})
    return pairs
