"""Paired A/B tests of two loop variants with anytime-valid early stopping (`loopkit ab`).

Design. Both variants run on the same cases, on one shared batch budget. The unit of evidence is
the *case*: its K repeats (`--repeat`) under A and under B, averaged per variant (pass rate, mean
reward), because repeats of one case share its difficulty and are not independent pairs.

Order. The sequential tests assume the evidence arrives in an order that does not depend on the
outcomes. So cases are scheduled in an order shuffled by ``seed`` (drawn at random when none is
given, and recorded with the batch), so a file sorted by difficulty or topic cannot steer the first
looks; and a case reaches the tests only once it and every case scheduled before it have finished
(the complete prefix), never in the order runs happen to finish, since a failing run that iterates
longer would otherwise reach the tests late. Within a case, each repeat's two runs go back to back,
which one first drawn from the seed, so queueing and cache effects cannot favour one variant.

Statistics (all differences are B − A; see `loopkit.stats`). The runner looks after every case, so
a winner is declared only by tests that stay valid under repeated looks: a beta-binomial e-value on
the discordant cases (success) and a confidence sequence for the mean reward difference, at alpha/2
each (Bonferroni). `margin` adds non-inferiority on success and a confidence sequence on the cost per
case, alpha/4 each then (see `loopkit.stats.monitor`). Fixed-sample tests give the per-metric deltas,
intervals and p-values at the final look, for information.

The report is always recomputed from the ledger (`ab_report`), so `loopkit ab`, `loopkit ab --show`
and `loopkit show` of an ab batch print the same thing, and `resume_ab` continues an interrupted one.

Engines. With `engine` (`--engine ray`) only where runs execute changes: the same schedule (cases in
seeded order, each pair back to back, a new case only while the verdict is open, drawn only as a slot
frees) is handed run by run to the engine's window; each step comes back here to be written, and the
monitor is fed from the finished ones in the complete-prefix order, so the verdict is the same.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .ab_cases import VARIANTS, case_summary, pair_order, schedule_key
from .ab_report import ab_report
from .batch import Fanout, Progress, _run_until_interrupted, check_cases, interruptible, spec_of_batch
from .budget import BatchPool, CaseBudget, batch_cap, validate_budget
from .cache import LedgerCache
from .engine import BatchBudgetRefused, run_case
from .errors import UsageError
from .history import with_history
from .human import expected_human_usd, human_usd_by_run, with_rate
from .inputs import Case, Inputs
from .ledger import Ledger
from .ledger.queries import batch_runs, batch_spend
from .ledger.writer import Writer
from .models import ModelPool, RetryPolicy
from .records import RunState, new_id
from .spec import LoopSpec
from .stats import SequentialMonitor
from .status import FINISHED, BatchStatus, RunStatus

__all__ = ["ABOptions", "ABTest", "resume_ab", "run_ab"]


@dataclass
class ABOptions:
    """How an A/B test runs; saved with the batch (a drawn seed included), so a resume runs the same."""

    inputs: str | None = None
    repeat: int = 1
    concurrency: int = 16
    max_usd: float | None = None
    alpha: float = 0.05
    early_stop: bool = True
    no_cache: bool = False
    max_retries: int = 6
    seed: int | None = None  # None: drawn at random when the test starts
    margin: float | None = None  # `--margin`: adds non-inferiority (within this many points, as a fraction) and cost tests
    human_usd_per_hour: float | None = None  # prices a person's minutes in both variants (each spec's human_rate otherwise)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Unit:
    """One case: its repeats under both variants, and what has become of each run."""

    case: Case
    size: int  # runs: 2 x repeat
    outcomes: dict[tuple[int, str], tuple[bool, float, float]] = field(default_factory=dict)  # finished: (passed, reward, cost)
    continues: dict[tuple[int, str], tuple[str, RunState]] = field(default_factory=dict)  # interrupted runs to pick up
    refused: int = 0  # runs the batch budget refused before their first call (no row written)

    @property
    def complete(self) -> bool:
        return len(self.outcomes) == self.size

    @property
    def void(self) -> bool:
        """Every run was refused: as if the case had not been scheduled (the report never sees it either)."""
        return self.refused == self.size


def _unique_cases(inputs: Inputs) -> list[Case]:
    """The cases, with repeated ids made unique (`id~2`), since pairs are matched by case id."""
    seen: dict[str, int] = {}
    cases = []
    for case in inputs:
        n = seen.get(case.id, 0) + 1
        seen[case.id] = n
        cases.append(case if n == 1 else Case(f"{case.id}~{n}", case.data))
    return cases


class ABTest:
    """One `loopkit ab` invocation: a batch of kind `ab` over both variants."""

    def __init__(self, spec_a: LoopSpec, spec_b: LoopSpec, ledger: Ledger, options: ABOptions, *,
                 argv: list[str] | None = None, tags: dict[str, str] | None = None,
                 on_progress: Callable[[Progress], None] | None = None, engine: Any = None) -> None:
        if not 0.0 < options.alpha < 1.0:
            raise UsageError(f"--alpha {options.alpha:g}: use a level between 0 and 1, e.g. 0.05")
        if options.margin is not None and not 0.0 <= options.margin < 1.0:
            raise UsageError(f"--margin {options.margin:g}: use a fraction of the success rate, e.g. 0.02 for 2 points")
        if options.seed is None:
            options = dataclasses.replace(options, seed=random.SystemRandom().randrange(1 << 31))
        self.specs = {"A": with_rate(spec_a, options.human_usd_per_hour), "B": with_rate(spec_b, options.human_usd_per_hour)}
        self.ledger = ledger
        self.options = options
        self.seed: int = options.seed or 0
        self.argv = argv or []
        self.tags = tags or {}
        self.on_progress = on_progress or (lambda p: None)
        self.pool = BatchPool(cap=batch_cap(spec_a.budget.total_usd, spec_b.budget.total_usd, options.max_usd))
        self.progress = Progress(cap=self.pool.cap)
        self.models = ModelPool(retry=RetryPolicy(attempts=max(1, options.max_retries)), concurrency=options.concurrency)
        self.inputs = Inputs(options.inputs if options.inputs else spec_a.inputs,
                             base_dir=None if options.inputs else spec_a.base_dir)
        self.units: list[_Unit] = []
        self.fed = 0  # units[:fed] have reached the monitor (or were void)
        self.monitor = SequentialMonitor(alpha=options.alpha, margin=options.margin)
        self.refused = 0
        self.batch_id = ""
        self._caches: dict[str, Any] = {}
        self._fan: Fanout | None = None
        self._writer: Writer | None = None
        self.engine = engine  # where runs execute: None in this process, else e.g. ray_engine.RayEngine
        self._remote: dict[str, tuple[_Unit, int, str]] = {}  # run id → its case, repeat and variant, while on the engine

    def prepare(self) -> int:
        """Everything that can fail before a call is paid for: both variants' prompts on every case, keys, the
        engine's cluster. Then the schedule: the cases in their seeded shuffled order."""
        for spec in self.specs.values():
            validate_budget(spec, extra_cap=self.pool.cap)  # the shared cap covers both variants' calls
            check_cases(spec, self.inputs)
        for spec in self.specs.values():
            for _, model in spec.models():
                self.models.client(model)
        self.specs = {v: with_history(spec, self.ledger) for v, spec in self.specs.items()}  # `cheapest:` reads its history once
        cases = sorted(_unique_cases(self.inputs), key=lambda c: schedule_key(self.seed, c.id))
        self.units = [_Unit(case, 2 * self.options.repeat) for case in cases]
        self.monitor = SequentialMonitor(alpha=self.options.alpha, target_n=len(cases), margin=self.options.margin)
        self.progress.total = 2 * self.options.repeat * len(cases)
        if self.engine is not None:
            self.engine.connect_for(self.specs.values())  # a bad --address fails before the batch is recorded
        return len(cases)

    def _advance(self) -> None:
        """Feed the monitor each case whose runs, and every earlier case's runs, have all finished."""
        while self.fed < len(self.units):
            unit = self.units[self.fed]
            if unit.complete:
                self.monitor.update(*case_summary((v, *outcome) for (_, v), outcome in unit.outcomes.items()))
            elif not unit.void:
                return
            self.fed += 1

    def _finished(self, unit: _Unit, repeat: int, variant: str, passed: bool, reward: float, cost: float, status: str) -> None:
        unit.outcomes[(repeat, variant)] = (passed, reward, cost)
        p = self.progress
        p.done += 1
        p.passed += int(passed)
        p.statuses[status] = p.statuses.get(status, 0) + 1

    async def _run_one(self, unit: _Unit, repeat: int, variant: str) -> None:
        spec = self.specs[variant]
        run_id, state = unit.continues.get((repeat, variant), (None, None))
        self.progress.in_flight += 1
        try:
            result = await run_case(spec, unit.case, clients=self.models.client, recorder=self._writer or self.ledger,
                                    budget=CaseBudget(spec.budget, self.pool), cache=self._caches.get(variant),
                                    batch_id=self.batch_id, repeat=repeat, variant=variant, run_id=run_id, state=state)
        except BatchBudgetRefused:
            self.refused += 1
            unit.refused += 1
            self._advance()
            return
        finally:
            self.progress.in_flight -= 1
        if result.status in FINISHED:
            cost = (result.cost_usd or 0.0) + expected_human_usd(spec, result)  # a hand-off's minutes, as the report prices them
            self._finished(unit, repeat, variant, result.success, result.reward or 0.0, cost, result.status)
        self.progress.spent = self.pool.spent
        self._advance()
        self.on_progress(self.progress)

    def _pending(self, unit: _Unit) -> Iterator[tuple[int, str]]:
        for repeat in range(self.options.repeat):
            for variant in pair_order(self.seed, unit.case.id, repeat):
                if (repeat, variant) not in unit.outcomes:
                    yield repeat, variant

    async def _drive(self) -> None:
        async with Fanout(self.options.concurrency) as fan:
            self._fan = fan
            for unit in self.units:
                for i, (repeat, variant) in enumerate(self._pending(unit)):
                    await fan.acquire()
                    # a new case only while the verdict is open; nothing more once the budget refused a run or one crashed
                    if self.refused or fan.crash or (i == 0 and self.options.early_stop and self.monitor.decided):
                        fan.release()
                        return
                    fan.launch(self._run_one(unit, repeat, variant))

    def _tasks(self) -> Iterator[Any]:
        """`_drive`'s schedule as tasks for an engine, which draws the next only once a slot is free."""
        from .ray_engine.scheduler import CaseTask

        for unit in self.units:
            for i, (repeat, variant) in enumerate(self._pending(unit)):
                if self.refused or (i == 0 and self.options.early_stop and self.monitor.decided):
                    return
                run_id, state = unit.continues.get((repeat, variant), (None, None))
                run_id = run_id or new_id()
                self._remote[run_id] = (unit, repeat, variant)
                self.progress.in_flight += 1
                yield CaseTask(unit.case, repeat, run_id, state, variant)

    def _step(self, shipped: Any) -> None:
        """A step of a run on the engine: written here (the ledger's one writer); a final one is an outcome."""
        assert self._writer is not None
        result = shipped.result
        self._writer.commit(result, shipped.iteration, shipped.calls, shipped.events, start=shipped.start)
        self.progress.spent += sum(c.cost_usd for c in shipped.calls)
        if result.status == RunStatus.RUNNING:
            return
        unit, repeat, variant = self._remote.pop(result.run_id)
        self.progress.in_flight -= 1
        if result.status in FINISHED:
            cost = (result.cost_usd or 0.0) + expected_human_usd(self.specs[variant], result)
            self._finished(unit, repeat, variant, result.success, result.reward or 0.0, cost, result.status)
        self._advance()
        self.on_progress(self.progress)

    def _refused_remote(self, task: Any) -> None:
        unit, _, _ = self._remote.pop(task.run_id)
        self.progress.in_flight -= 1
        self.refused += 1
        unit.refused += 1
        self._advance()

    async def _drive_on_engine(self) -> None:
        from .ray_engine.driver import Job

        o = self.options
        job = Job(dict(self.specs), self.batch_id, self.ledger.path, self.pool.cap, self.pool.spent, o.concurrency,
                  o.max_retries, o.no_cache)
        await self.engine.run_tasks(job, self._tasks(), commit=self._step, on_refused=self._refused_remote)

    async def _execute(self) -> dict[str, Any]:
        self._writer = self.ledger.writer()
        if not self.options.no_cache and self.engine is None:
            self._caches = {v: LedgerCache(self._writer, variant_of=(self.batch_id, v)) for v in VARIANTS}
        drive = self._drive() if self.engine is None else self._drive_on_engine()
        await interruptible(self.ledger, self.batch_id, drive, self._writer)
        self.ledger.finish_batch(self.batch_id, BatchStatus.BUDGET if self.refused else BatchStatus.DONE)
        return ab_report(self.ledger, self.batch_id)

    def _start(self) -> dict[str, Any]:
        return _run_until_interrupted(self._execute())

    def run(self) -> dict[str, Any]:
        """Run the test to a verdict (or to the end of the cases, or of the budget); returns `ab_report`."""
        total = self.prepare()
        for spec in self.specs.values():
            self.ledger.save_spec(spec.hash, spec.name, str(spec.path) if spec.path else None, spec.source)
        saved = {**self.options.to_dict(), "cases_available": total, "pairs_available": total * self.options.repeat}
        self.batch_id = self.ledger.start_batch("ab", self.specs["A"].hash, spec_hash_b=self.specs["B"].hash, argv=self.argv,
                                                tags=self.tags, options=saved, inputs=self.inputs.label)
        return self._start()

    def resume(self, batch_id: str) -> dict[str, Any]:
        """Continue an interrupted `ab` batch: finished runs are neither run nor paid for again, interrupted
        ones continue from their last iteration, and the monitor first takes the finished cases in order."""
        self.batch_id = batch_id
        self.prepare()
        units = {u.case.id: u for u in self.units}
        human = human_usd_by_run(self.ledger, batch_id, usd_per_hour=self.options.human_usd_per_hour)  # as the report prices them
        for row in batch_runs(self.ledger, batch_id):  # by start time: a later row of the same run supersedes
            unit = units.get(row["case_id"])
            key = (row["repeat"] or 0, row["variant"])
            if unit is None or key in unit.outcomes:
                continue
            if row["status"] in FINISHED:
                unit.continues.pop(key, None)
                self._finished(unit, *key, bool(row["success"]), float(row["reward"] or 0.0),
                               float(row["cost_usd"] or 0.0) + human.get(row["id"], 0.0), row["status"])
                continue
            unit.continues[key] = (row["id"], self.ledger.continuation(row["id"]))  # one run, one row
        self._advance()
        self.ledger.claim_batch(batch_id)
        spent_before = self.pool.spent = batch_spend(self.ledger, batch_id)  # the batch budget covers what was spent
        invocation = self.ledger.start_batch("resume", self.specs["A"].hash, spec_hash_b=self.specs["B"].hash, argv=self.argv,
                                             tags={**self.tags, "resumes": batch_id}, options=self.options.to_dict(),
                                             inputs=self.inputs.label)
        status = BatchStatus.INTERRUPTED
        try:
            report = self._start()
            status = report["status"]
            return report
        finally:
            self.ledger.finish_batch(invocation, status, cost_usd=batch_spend(self.ledger, batch_id) - spent_before)


def run_ab(spec_a: LoopSpec, spec_b: LoopSpec, *, ledger: Ledger, options: ABOptions | None = None,
           argv: list[str] | None = None, tags: dict[str, str] | None = None, engine: Any = None) -> dict[str, Any]:
    """Python API: run a paired A/B test and return its report (see `ab_report`). `engine`: where runs execute
    (None: this process; `loopkit.ray_engine.engine_for("ray", address)`: a Ray cluster), as for `run_batch`."""
    return ABTest(spec_a, spec_b, ledger, options or ABOptions(), argv=argv, tags=tags, engine=engine).run()


def resume_ab(ledger: Ledger, batch_id: str, *, concurrency: int | None = None, max_usd: float | None = None,
              argv: list[str] | None = None, on_progress: Callable[[Progress], None] | None = None,
              engine: Any = None) -> dict[str, Any]:
    """Continue an interrupted `ab` batch with its saved specs, options and seed, on `engine` (never inherited);
    returns its report."""
    batch = ledger.batch(batch_id)
    if batch is None or batch["kind"] != "ab":
        raise UsageError(f"{batch_id[:10]} is not an A/B batch")
    saved = json.loads(batch["options"] or "{}")
    options = ABOptions(**{k: v for k, v in saved.items() if k in ABOptions.__dataclass_fields__})
    if concurrency is not None:
        options.concurrency = concurrency
    if max_usd is not None:
        options.max_usd = max_usd
    spec_a = spec_of_batch(ledger, batch)
    spec_b = spec_of_batch(ledger, {**batch, "spec_hash": batch["spec_hash_b"]})
    return ABTest(spec_a, spec_b, ledger, options, argv=argv, on_progress=on_progress, engine=engine).resume(batch_id)
