"""A person's time has a price (SPEC.md §6): the rate, what a hand-off expects, what reviews took.

Human time is kept apart from model spend: reviews are rows of their own in the ledger (`human_time`,
kind `human`), never calls. A rate (`human_rate: {usd_per_hour: H}`, or `--human-usd-per-hour`)
prices them; without one their minutes are still counted.

    import loopkit.human as human
    usd = human.human_usd_by_run(ledger, batch_id)   # {run_id: USD of a person's time}, e.g. for A/B cost per case
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ledger import Ledger
    from .records import RunResult
    from .spec import LoopSpec

__all__ = ["DEFAULT_REVIEW_MINUTES", "batch_human", "expected_human_usd", "human_minutes_by_run", "human_usd_by_run", "rate_of", "record_review", "run_human",
           "usd_for", "with_rate"]

# The stated prior for how long a review takes when neither the spec (`human: {minutes}`) nor the ledger says.
DEFAULT_REVIEW_MINUTES = 5.0


def rate_of(spec: LoopSpec) -> float | None:
    """USD per hour of a person's time for this spec, or None when it sets no rate."""
    return spec.human_rate.usd_per_hour if spec.human_rate is not None else None


def with_rate(spec: LoopSpec, usd_per_hour: float | None) -> LoopSpec:
    """The spec with its human rate set (`--human-usd-per-hour`); unchanged when None."""
    if usd_per_hour is None:
        return spec
    from .spec.schema import HumanRate

    return spec.model_copy(update={"human_rate": HumanRate(usd_per_hour=usd_per_hour)})


def usd_for(minutes: float | None, usd_per_hour: float | None) -> float | None:
    """What `minutes` of a person cost at the rate; None when either is unknown."""
    if minutes is None or usd_per_hour is None:
        return None
    return minutes * usd_per_hour / 60.0


def expected_human_usd(spec: LoopSpec, result: RunResult) -> float:
    """USD a run that just ended is expected to cost in a person's time: a run parked for a person, its hand-off's
    `minutes` (else DEFAULT_REVIEW_MINUTES) at the spec's rate; 0 otherwise or without a rate. The same figure
    `human_usd_by_run` gives a run still waiting, so a live A/B test and its report price a hand-off alike."""
    from .records import RunStatus

    if result.status != RunStatus.NEEDS_REVIEW or not result.state.fired:
        return 0.0
    esc = spec.escalate[result.state.fired[-1]]
    return usd_for(esc.human_minutes or DEFAULT_REVIEW_MINUTES, rate_of(spec)) or 0.0


def human_minutes_by_run(ledger: Ledger, batch_id: str, *, pending: bool = True) -> dict[str, float]:
    """A person's minutes per run of a batch: what reviews recorded, plus (with `pending`) what each run still
    waiting for a person is expected to take (its hand-off's `minutes`, else DEFAULT_REVIEW_MINUTES)."""
    from .ledger.human import human_by_run, pending_reviews

    found = {run_id: row["minutes"] for run_id, row in human_by_run(ledger, batch_id=batch_id).items()}
    if pending:
        for row in pending_reviews(ledger, batch_id=batch_id):
            found[row["run_id"]] = found.get(row["run_id"], 0.0) + (row["minutes"] or DEFAULT_REVIEW_MINUTES)
    return found


def human_usd_by_run(ledger: Ledger, batch_id: str, *, usd_per_hour: float | None = None, pending: bool = True) -> dict[str, float]:
    """USD of a person's time per run of a batch (runs without any are absent), for cost per case in `ab`.

    Reviews count at the rate recorded with them, or every minute at `usd_per_hour` when given; with
    `pending`, a run still waiting for a person adds its expected minutes (its hand-off's `minutes`, else
    DEFAULT_REVIEW_MINUTES) at its rate. Minutes with no rate at all cost nothing here (see
    `human_minutes_by_run`). Read-only: one query for the reviews, one for the runs still waiting."""
    from .ledger.human import human_by_run, pending_reviews

    found = {run_id: row["usd"] for run_id, row in human_by_run(ledger, batch_id=batch_id, usd_per_hour=usd_per_hour).items()}
    if pending:
        for row in pending_reviews(ledger, batch_id=batch_id):
            rate = usd_per_hour if usd_per_hour is not None else row["usd_per_hour"]
            usd = usd_for(row["minutes"] or DEFAULT_REVIEW_MINUTES, rate)
            if usd is not None:
                found[row["run_id"]] = found.get(row["run_id"], 0.0) + usd
    return {run_id: usd for run_id, usd in found.items() if usd}


def run_human(ledger: Ledger, run_id: str) -> dict[str, Any]:
    """One run's human time: `{reviews, minutes, usd, unpriced_minutes, waiting_minutes}`; `waiting_minutes`
    is what a run still waiting for a person is expected to take (None when it is not waiting)."""
    from .ledger.human import human_by_run, pending_reviews

    row = human_by_run(ledger, run_id=run_id).get(run_id) or {"reviews": 0, "minutes": 0.0, "usd": 0.0, "unpriced_minutes": 0.0}
    waiting = pending_reviews(ledger, run_id=run_id)
    return {**row, "waiting_minutes": (waiting[0]["minutes"] or DEFAULT_REVIEW_MINUTES) if waiting else None}


def batch_human(ledger: Ledger, batch_id: str) -> dict[str, Any]:
    """A batch's human time: recorded reviews (`reviews`, `minutes`, `usd`, `unpriced_minutes`) and the runs still
    waiting for a person (`waiting_runs`, `waiting_minutes` expected, `waiting_usd` where a rate is set)."""
    from .ledger.human import human_by_run, pending_reviews

    total = {"reviews": 0, "minutes": 0.0, "usd": 0.0, "unpriced_minutes": 0.0}
    for row in human_by_run(ledger, batch_id=batch_id).values():
        for name in total:
            total[name] += row[name] or 0
    waiting = pending_reviews(ledger, batch_id=batch_id)
    minutes = [(w["minutes"] or DEFAULT_REVIEW_MINUTES, w["usd_per_hour"]) for w in waiting]
    return {**total, "waiting_runs": len(waiting), "waiting_minutes": sum(m for m, _ in minutes),
            "waiting_usd": sum(usd_for(m, r) or 0.0 for m, r in minutes)}


def record_review(ledger: Ledger, run_id: str, event: dict[str, Any], *, minutes: float | None) -> dict[str, Any]:
    """Record a person's decision on a parked run with the time it took: `minutes` as given (`--minutes`),
    else what the hand-off expected (marked `estimated`), priced at the rate the run was parked under.
    Returns the event as written (with `minutes`, and `usd` when priced)."""
    from .ledger.human import last_escalation_to_person, record_review as write

    parked = last_escalation_to_person(ledger, run_id)
    rate = parked.get("usd_per_hour")
    estimated = minutes is None
    spent = parked.get("minutes") if estimated else minutes
    event = {**event, "minutes": spent, **({"minutes_estimated": True} if estimated and spent is not None else {})}
    if (usd := usd_for(spent, rate)) is not None:
        event["usd"] = usd
    write(ledger, run_id, event, minutes=spent, usd_per_hour=rate, estimated=estimated)
    return event
