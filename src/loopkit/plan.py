"""`loopkit plan SPEC`: the loop design the ledger recommends (SPEC.md §6).

From the spec's recorded runs (history.py) it estimates, per model and attempt, the chance of passing
and the cost of the step (plan_model.py), evaluates every design — which models in which order, how
many iterations each, whether a person takes what is left — and keeps the cost/accuracy frontier: the
designs no other design beats on both. The current spec's design is evaluated the same way and marked;
the *chosen* design is the cheapest on the frontier within `margin` of the current design's accuracy
(or at least `min_accuracy`), ready for `plan --write` and `loopkit ab current.yaml new.yaml --margin`.

    from loopkit.plan import plan
    report = plan(load_spec("spec.yaml"), ledger="ledger.db")
    print(report.chosen.design.label, report.chosen.usd_per_case)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .history import SpecHistory, human_figures, load_history
from .plan_model import SMALL_SAMPLE, Design, Figures, HumanStage, Model, evaluate

if TYPE_CHECKING:
    from .ledger import Ledger
    from .spec import LoopSpec

__all__ = ["PlanReport", "current_design", "plan"]

MAX_STAGES = 3  # models in a ladder
MAX_ITERATIONS = 5  # per model
MAX_MODELS = 4  # the models with the most history, when there are more


@dataclass(frozen=True)
class PlanReport:
    """What `loopkit plan` prints: the history it rests on, per-model estimates, the frontier, the current and chosen designs."""

    spec_name: str
    runs: int
    cases: int
    batches: int
    since: str | None
    attempts: list[dict[str, Any]]  # per model and attempt: made, pass chance and interval, stall chance, step cost
    human: HumanStage | None
    human_rate: float | None
    frontier: list[Figures]
    current: Figures | None
    chosen: Figures | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def figures(f: Figures | None) -> dict[str, Any] | None:
            if f is None:
                return None
            return {"design": f.design.label, "stages": [{"model": m, "iterations": n} for m, n in f.design.stages],
                    "human": f.design.human, "accuracy": f.accuracy, "accuracy_interval": list(f.accuracy_interval),
                    "usd_per_case": f.usd_per_case, "usd_per_case_interval": list(f.usd_interval), "model_usd_per_case": f.model_usd,
                    "human_usd_per_case": f.human_usd, "human_minutes_per_case": f.human_minutes,
                    "usd_per_success": None if math.isinf(f.usd_per_success) else f.usd_per_success,
                    "small_sample": f.small_sample, "beyond_data": f.beyond_data, "cost_unknown": f.cost_unknown,
                    "current": self.current is not None and f.design == self.current.design,
                    "chosen": self.chosen is not None and f.design == self.chosen.design}

        human = None if self.human is None else {"pass_chance": self.human.pass_chance, "minutes": self.human.minutes,
                                                 "usd": self.human.usd, "reviews": self.human.reviews, "source": self.human.source}
        return {"spec": self.spec_name, "runs": self.runs, "cases": self.cases, "batches": self.batches, "since": self.since,
                "attempts": self.attempts, "human": human, "human_usd_per_hour": self.human_rate,
                "frontier": [figures(f) for f in self.frontier], "current": figures(self.current), "chosen": figures(self.chosen),
                "notes": self.notes}


def current_design(spec: LoopSpec) -> tuple[Design, list[str]]:
    """The spec's loop as a design, and what had to be approximated: an escalation with `when.iterations` is a
    step of the ladder, read as "after N iterations" whatever else it asks; one without (only `failed:`,
    `reward_below:`, `plateau:`) fires on what a case does, which plan cannot weigh: it is left out of the
    design (and `--write` keeps it as written). A `cheapest:` entry is read as its first model."""
    notes: list[str] = []
    entries = []
    for i, esc in enumerate(spec.escalate):
        w = esc.when
        if w.iterations is None:
            notes.append(f"escalate.{i} fires on a condition, not after a number of iterations: left out of the designs "
                         "(plan --write keeps it)")
            continue
        if w.reward_below is not None or w.failed is not None or w.plateau is not None:
            notes.append(f"escalate.{i} has conditions besides `iterations`: read as firing after iteration {w.iterations}")
        target = "human" if esc.model is None and not esc.models else (esc.model or esc.models[0]).label
        if esc.cheapest is not None:
            notes.append(f"escalate.{i} chooses with `cheapest:` per run: read as {target}")
        entries.append((w.iterations, target))
    stages: list[tuple[str, int]] = []
    model, done = spec.model.label, 0
    limit = spec.stop.max_iterations
    for at, target in sorted(entries, key=lambda e: e[0]):
        at = min(at, limit)
        if at > done:
            stages.append((model, at - done))
            done = at
        if target == "human":
            return Design(tuple(_merge(stages)), human=True), notes
        model = target
    if limit > done:
        stages.append((model, limit - done))
    return Design(tuple(_merge(stages))), notes


def _merge(stages: list[tuple[str, int]]) -> list[tuple[str, int]]:
    merged: list[tuple[str, int]] = []
    for m, n in stages:
        if merged and merged[-1][0] == m:
            merged[-1] = (m, merged[-1][1] + n)
        else:
            merged.append((m, n))
    return merged


def _designs(models: list[str], depth: dict[str, int], human: bool, max_stages: int) -> list[Design]:
    found = []
    for size in range(1, min(max_stages, len(models)) + 1):
        for order in itertools.permutations(models, size):
            for counts in itertools.product(*(range(1, depth[m] + 1) for m in order)):
                stages = tuple(zip(order, counts))
                found.append(Design(stages))
                if human:
                    found.append(Design(stages, human=True))
    return found


def frontier(figures: list[Figures]) -> list[Figures]:
    """The designs no other design beats on both cost per case and accuracy, cheapest first."""
    ranked = sorted(figures, key=lambda f: (f.usd_per_case, -f.accuracy, f.design.iterations, f.design.label))
    kept: list[Figures] = []
    for f in ranked:
        if not kept or f.accuracy > kept[-1].accuracy + 1e-9:
            kept.append(f)
    return kept


def _attempt_rows(model: Model, models: list[str]) -> list[dict[str, Any]]:
    rows = []
    for m in models:
        for k, a in enumerate(model.attempts.get(m, [])):
            low, high = a.interval()
            cost = model.cost_interval(m, k + 1)
            rows.append({"model": m, "attempt": k + 1, "made": a.made, "pass_chance": a.pass_chance, "pass_interval": [low, high],
                         "stall_chance": a.stall_chance, "step_usd": model.step_usd(m, k + 1),
                         "step_usd_interval": [cost[0], cost[1]] if cost else None, "small_sample": a.made < SMALL_SAMPLE})
    return rows


def choose(front: list[Figures], current: Figures | None, *, margin: float, min_accuracy: float | None) -> Figures | None:
    """The cheapest frontier design at least as accurate as `min_accuracy`, else as the current design less
    `margin` (else the most accurate design less `margin`)."""
    if not front:
        return None
    target = min_accuracy if min_accuracy is not None else (current.accuracy if current else max(f.accuracy for f in front)) - margin
    good = [f for f in front if f.accuracy >= target - 1e-12]
    if current is not None and good and current.accuracy >= target - 1e-12 and current.usd_per_case <= good[0].usd_per_case + 1e-12:
        return current  # nothing within the margin is cheaper: keep the design the user has
    return good[0] if good else front[-1]


def plan(spec: LoopSpec, *, ledger: Ledger | str | Path | None = None, since: str | None = None,
         human_usd_per_hour: float | None = None, margin: float = 0.02, min_accuracy: float | None = None,
         max_stages: int = MAX_STAGES, max_iterations: int = MAX_ITERATIONS) -> PlanReport:
    """The plan for `spec` from its history in the ledger since `since` (an ISO time; None: all of it)."""
    from .ledger import Ledger

    if isinstance(ledger, Ledger):
        history = load_history(ledger, spec, since=since)
    else:
        with Ledger(ledger, readonly=True) as store:
            history = load_history(store, spec, since=since)
    return plan_from(spec, history, since=since, human_usd_per_hour=human_usd_per_hour, margin=margin,
                     min_accuracy=min_accuracy, max_stages=max_stages, max_iterations=max_iterations)


def _input_prices(spec: LoopSpec) -> dict[str, float]:
    """USD per prompt token of the spec's models, by the name the ledger knows them by."""
    from .prices import known_price

    found = {}
    for _, ref in spec.models():
        price = known_price(ref)
        if price is not None:
            found.setdefault(ref.label, price.input)
    return found


def plan_from(spec: LoopSpec, history: SpecHistory, *, since: str | None = None, human_usd_per_hour: float | None = None,
              margin: float = 0.02, min_accuracy: float | None = None, max_stages: int = MAX_STAGES,
              max_iterations: int = MAX_ITERATIONS) -> PlanReport:
    """The plan from an already loaded history (what `plan` does once it has read the ledger)."""
    from .human import rate_of

    model = Model.of(history.segments, _input_prices(spec))
    notes: list[str] = []
    rate = human_usd_per_hour if human_usd_per_hour is not None else rate_of(spec)
    current, approximations = current_design(spec)
    notes += approximations
    hint = next((e.human_minutes for e in spec.escalate if e.human_minutes is not None), None)
    p, reviews, minutes, source = human_figures(history, hint)
    human = HumanStage(p, minutes, minutes * (rate or 0.0) / 60.0, reviews, source)
    models = sorted(model.attempts, key=lambda m: -model.attempts[m][0].made)[:MAX_MODELS]
    if len(model.attempts) > MAX_MODELS:
        notes.append(f"planned over the {MAX_MODELS} models with the most history: {', '.join(models)}")
    if rate is None:
        notes.append("no human_rate: designs that hand off to a person are left out (set human_rate or --human-usd-per-hour)")
    missing = [m for m, _ in current.stages if m not in model.attempts]
    if not history.segments:
        notes.append("no recorded runs of this spec: start with `loopkit run SPEC --explore MODEL1,MODEL2 --repeat 3`")
    elif len(models) < 2:
        notes.append("history has one model only: `loopkit run SPEC --explore MODEL1,MODEL2` gives plan others to weigh")
    if missing:
        notes.append(f"no history for {', '.join(missing)}, so the current design cannot be estimated")
    depth = {m: max(1, min(max_iterations, len(model.attempts[m]))) for m in models}
    figures = evaluate(_designs(models, depth, rate is not None, max_stages), model, human) if models else []
    current_figures = None if missing or not history.segments else evaluate([current], model, human)[0]
    front = frontier(figures)
    if any(f.small_sample for f in front):
        notes.append(f"small samples: estimates resting on fewer than {SMALL_SAMPLE} attempts are marked; explore more cases")
    chosen = choose(front, current_figures, margin=margin, min_accuracy=min_accuracy)
    if chosen is not None and (current_figures is None or chosen.design != current_figures.design):
        notes.append("the chosen design was picked on the same runs that estimate it, so its figures flatter it (the cheapest "
                     "of many estimates looks cheaper than it is): test it on fresh cases with `loopkit ab SPEC NEW.yaml --margin M`")
    return PlanReport(spec.name, history.runs, history.cases, history.batches, since, _attempt_rows(model, models),
                      human if rate is not None or current.human else None, rate, front, current_figures, chosen, notes)
