"""A spec's history in the ledger, as `plan` and `cheapest:` read it: attempts per model, hand-offs to people.

History is every recorded run of any version of the spec that does the same task: versions that
differ only in how the loop is run (`model`, `escalate`, `stop`, `budget`, `human_rate`, `inputs`,
`name`, `description`) count together, so `run --explore`, an A/B test and a spec `plan --write` wrote
all feed the next plan. A run is cut into *segments*: its consecutive iterations on one model, up to
a person's hand-off (what follows a person's feedback is theirs, not the model's). Attempt k of a
segment passed or not; its cost is known unless one of its calls came from the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .spec.schema import HUMAN, ModelRef

if TYPE_CHECKING:
    from .cheapest import Estimates
    from .ledger import Ledger
    from .spec import LoopSpec

__all__ = ["LOOP_KEYS", "HumanOutcome", "Segment", "SpecHistory", "cheapest_estimates", "fingerprint", "load_history"]

# What a plan may change: versions differing only here do the same task.
LOOP_KEYS = ("model", "escalate", "stop", "budget", "human_rate", "inputs", "name", "description")
MIN_AFTER_ESCALATION = 5  # segments that began after an escalation needed before `cheapest:` prefers them


def fingerprint(text: str) -> str | None:
    """The task a spec text describes, whatever loop runs it (None when the text is not a YAML mapping)."""
    import yaml

    from .spec.safe_yaml import LimitedLoader

    try:
        data = yaml.load(text, Loader=LimitedLoader)  # noqa: S506 - a safe loader with limits
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    task = {k: v for k, v in data.items() if k not in LOOP_KEYS}
    return hashlib.sha256(json.dumps(task, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Segment:
    """Consecutive iterations of one run on one model: whether each attempt passed, and what it cost (None: cached)."""

    run_id: str
    case_id: str
    model: str
    after_escalation: bool
    start: int = 1  # the run's iteration this segment began at (a step's cost grows with the conversation)
    passed: list[bool] = field(default_factory=list)
    costs: list[float | None] = field(default_factory=list)
    prompt_tokens: list[int | None] = field(default_factory=list)  # None where cached, like the cost
    stalled: bool = False  # the run stopped here on a plateau (or a repeated answer): no pass, and no further attempt


@dataclass
class HumanOutcome:
    """A run handed to a person: whether it ended in success (None: still waiting), and the minutes recorded."""

    run_id: str
    case_id: str
    success: bool | None
    minutes: float | None


@dataclass
class SpecHistory:
    runs: int = 0
    cases: int = 0
    batches: int = 0
    segments: list[Segment] = field(default_factory=list)
    people: list[HumanOutcome] = field(default_factory=list)
    tokens: tuple[float, float] | None = None  # mean prompt and completion tokens of an uncached iteration

    def of_model(self, model: str, *, after_escalation: bool | None = None) -> list[Segment]:
        return [s for s in self.segments if s.model == model and (after_escalation is None or s.after_escalation == after_escalation)]

    @property
    def models(self) -> list[str]:
        """Models with history, in the order they first appear."""
        return list(dict.fromkeys(s.model for s in self.segments))


def compatible_hashes(ledger: Ledger, spec: LoopSpec) -> list[str]:
    """Every recorded spec version doing this spec's task (see LOOP_KEYS), this one included."""
    from .ledger.history import spec_versions

    mine = fingerprint(spec.source)
    found = {spec.hash}
    if mine is None:
        return sorted(found)
    for row in spec_versions(ledger):
        if row["hash"] not in found and fingerprint(row["yaml"] or "") == mine:
            found.add(row["hash"])
    return sorted(found)


def _outcome(run: dict[str, Any], reviews: list[dict[str, Any]]) -> bool | None:
    for review in reviews:
        decision = review.get("decision")
        if decision in ("approve", "reject"):
            return decision == "approve"
    if run["status"] == "needs_review":
        return None
    return bool(run["success"])  # a person's feedback, and the loop went on to this end


def load_history(ledger: Ledger, spec: LoopSpec, *, since: str | None = None, until: str | None = None) -> SpecHistory:
    """The spec's recorded runs in [since, until), cut into segments and hand-offs to people."""
    from .ledger.history import read_history

    rows = read_history(ledger, compatible_hashes(ledger, spec), since=since, until=until)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for it in rows["iterations"]:
        by_run.setdefault(it["run_id"], []).append(it)
    events: dict[str, list[dict[str, Any]]] = {}
    for e in rows["events"]:
        events.setdefault(e["run_id"], []).append(e)
    history = SpecHistory(runs=len(rows["runs"]), cases=len({r["case_id"] for r in rows["runs"]}),
                          batches=len({r["batch_id"] for r in rows["runs"]}))
    prompt = completion = counted = 0
    for run in rows["runs"]:
        mine = events.get(run["id"], [])
        handoff = next((e["detail"].get("iteration") for e in mine if e["kind"] == "escalation" and "human" in e["detail"]), None)
        current: Segment | None = None
        for it in by_run.get(run["id"], []):
            if handoff is not None and it["n"] > handoff:
                break
            if current is None or current.model != it["model"]:
                current = Segment(run["id"], str(run["case_id"]), it["model"], after_escalation=current is not None, start=it["n"])
                history.segments.append(current)
            current.passed.append(bool(it["passed"]))
            current.costs.append(None if it["cached"] else float(it["cost_usd"] or 0.0))
            current.prompt_tokens.append(None if it["cached"] else int(it["prompt_tokens"] or 0))
            if not it["cached"]:
                prompt, completion, counted = prompt + (it["prompt_tokens"] or 0), completion + (it["completion_tokens"] or 0), counted + 1
        if current is not None and handoff is None and run["stop_reason"] == "plateau" and not any(current.passed):
            current.stalled = True
        if handoff is not None:
            reviews = [e["detail"] for e in mine if e["kind"] == "review"]
            minutes = rows["human"].get(run["id"])
            if minutes is None:
                timed = [r["minutes"] for r in reviews if isinstance(r.get("minutes"), (int, float))]
                minutes = sum(timed) if timed else None
            history.people.append(HumanOutcome(run["id"], str(run["case_id"]), _outcome(run, reviews), minutes))
    if counted:
        history.tokens = (prompt / counted, completion / counted)
    return history


def hazards(segments: list[Segment]) -> tuple[list[float], list[int], list[float | None]]:
    """Per attempt k: the chance it passes given the earlier ones failed, how many segments reached it, and
    its mean cost over the attempts whose cost is known (None: none known)."""
    reached: list[int] = []
    passed: list[int] = []
    costs: list[list[float]] = []
    for seg in segments:
        for k, ok in enumerate(seg.passed):
            if k == len(reached):
                reached.append(0)
                passed.append(0)
                costs.append([])
            reached[k] += 1
            passed[k] += int(ok)
            if seg.costs[k] is not None:
                costs[k].append(seg.costs[k])
    return ([p / n for p, n in zip(passed, reached)], reached,
            [sum(c) / len(c) if c else None for c in costs])


def prior_step_usd(model: ModelRef, history: SpecHistory) -> float:
    """What one iteration of a model with no history is taken to cost: the spec's mean tokens per iteration
    (else PRIOR_TOKENS) at the model's price (0 when the price is unknown)."""
    from .cheapest import PRIOR_TOKENS
    from .prices import known_price

    price = known_price(model)
    prompt, completion = history.tokens or PRIOR_TOKENS
    return price.cost(int(prompt), int(completion)) if price else 0.0


def human_figures(history: SpecHistory, minutes_hint: float | None) -> tuple[float, int, float, str]:
    """(pass chance, decided hand-offs, expected minutes, source) of handing a run to a person."""
    from .cheapest import PRIOR_HUMAN_PASS
    from .human import DEFAULT_REVIEW_MINUTES

    decided = [p for p in history.people if p.success is not None]
    timed = [p.minutes for p in history.people if p.minutes is not None]
    minutes = sum(timed) / len(timed) if timed else (minutes_hint or DEFAULT_REVIEW_MINUTES)
    if decided:
        return sum(p.success for p in decided) / len(decided), len(decided), minutes, f"history: {len(decided)} review(s)"
    return PRIOR_HUMAN_PASS, 0, minutes, f"prior: {PRIOR_HUMAN_PASS:.0%} of reviews succeed"


def cheapest_estimates(ledger: Ledger, spec: LoopSpec) -> Estimates | None:
    """What history says of every `cheapest:` option of the spec, for the engine to choose with (None when the
    spec has no `cheapest:` entry). A model's figures come from its segments that began after an escalation
    when there are MIN_AFTER_ESCALATION of them (cases the earlier model failed are harder), else from all of
    its segments, else from the prior; a person's from the reviews of hand-offs."""
    from .cheapest import PRIOR_PASS, Estimates, OptionEstimate
    from .human import rate_of

    entries = [e for e in spec.escalate if e.cheapest is not None]
    if not entries:
        return None
    history = load_history(ledger, spec)
    found = Estimates()
    for esc in entries:
        for option in esc.cheapest or []:
            if option == HUMAN:
                p, n, minutes, source = human_figures(history, esc.human_minutes)
                rate = rate_of(spec) or 0.0
                found.options[HUMAN] = OptionEstimate(HUMAN, [p], [minutes * rate / 60.0], n, source, minutes)
                continue
            assert isinstance(option, ModelRef)
            after = history.of_model(option.label, after_escalation=True)
            segments = after if len(after) >= MIN_AFTER_ESCALATION else history.of_model(option.label)
            prior = prior_step_usd(option, history)
            if not segments:
                found.options[option.label] = OptionEstimate(option.label, [PRIOR_PASS], [prior], 0,
                                                             f"prior: {PRIOR_PASS:.0%} per iteration, cost from its price")
                continue
            chance, reached, costs = hazards(segments)
            which = "after an escalation" if segments is after else "all runs"
            found.options[option.label] = OptionEstimate(option.label, chance, [c if c is not None else prior for c in costs],
                                                         reached[0], f"history: {reached[0]} segment(s), {which}")
    return found


def with_history(spec: LoopSpec, ledger: Ledger) -> LoopSpec:
    """The spec carrying what its history says of its `cheapest:` options (`spec.estimates`), read before a
    batch starts so the engine chooses without reading the ledger. A person among the options needs a rate:
    unpriced, their time would always look cheapest."""
    from .errors import UsageError

    for i, esc in enumerate(spec.escalate):
        if esc.cheapest is not None and HUMAN in esc.cheapest and spec.human_rate is None:
            raise UsageError(f"escalate.{i}.cheapest lists `human`, whose time has no price: set `human_rate: "
                             "{usd_per_hour: H}` in the spec or pass --human-usd-per-hour H")
    estimates = cheapest_estimates(ledger, spec)
    return spec if estimates is None else spec.model_copy(update={"estimates": estimates})
