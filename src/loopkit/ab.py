"""Paired A/B tests of two loop variants with anytime-valid early stopping (`loopkit ab`).

Design. Both variants run on the same cases; every case × repeat is one *pair* (its A run and
its B run). Pairs are scheduled in input order, the two runs of a pair back to back, with which
variant goes first drawn per pair from a seeded RNG (so queueing and cache effects cannot favour
one variant). Both variants draw on one shared batch budget.

Statistics (all differences are B − A; see `loopkit.stats`). The runner looks at the data after
every finished pair, so a winner is declared only by tests that stay valid under repeated looks:
a beta-binomial e-value on the discordant pairs (success) and a confidence sequence for the mean
reward difference. The overall level ``alpha`` is split equally between the two (Bonferroni), and
their reported p-values are adjusted accordingly, so the chance of naming a winner when there is
none stays at most ``alpha`` however long the test runs. Fixed-sample tests (exact McNemar,
Wilcoxon signed-rank, paired bootstrap) give the per-metric deltas, intervals and p-values at the
final look, for information.

The report is always recomputed from the ledger (`ab_report`), so `loopkit ab`, `loopkit ab --show`
and `loopkit show` of an ab batch print the same thing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .ab_report import VARIANTS, ab_report
from .stats import SequentialMonitor
from .batch import Fanout, Progress, _run_until_interrupted, check_cases, interruptible
from .budget import BatchPool, CaseBudget
from .cache import LedgerCache
from .engine import BatchBudgetRefused, run_case
from .records import RunResult
from .status import FINISHED
from .errors import UsageError
from .inputs import Case, Inputs
from .ledger import Ledger
from .models import Completion, ModelPool, RetryPolicy
from .spec import LoopSpec

__all__ = ["ABOptions", "ABTest", "run_ab"]


@dataclass
class ABOptions:
    """How an A/B test runs; saved with the batch."""

    inputs: str | None = None
    repeat: int = 1
    concurrency: int = 16
    max_usd: float | None = None
    alpha: float = 0.05
    early_stop: bool = True
    no_cache: bool = False
    max_retries: int = 6
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Pair:
    index: int
    case: Case
    repeat: int
    order: tuple[str, str]
    results: dict[str, RunResult] = field(default_factory=dict)


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
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        if not 0.0 < options.alpha < 1.0:
            raise UsageError(f"--alpha {options.alpha:g}: use a level between 0 and 1, e.g. 0.05")
        self.specs = {"A": spec_a, "B": spec_b}
        self.ledger = ledger
        self.options = options
        self.argv = argv or []
        self.tags = tags or {}
        self.on_progress = on_progress or (lambda p: None)
        caps = [c for c in (spec_a.budget.total_usd, spec_b.budget.total_usd, options.max_usd) if c is not None]
        self.pool = BatchPool(cap=min(caps) if caps else None)
        self.progress = Progress(cap=self.pool.cap)
        self.models = ModelPool(retry=RetryPolicy(attempts=max(1, options.max_retries)), concurrency=options.concurrency)
        self.inputs = Inputs(options.inputs if options.inputs else spec_a.inputs,
                             base_dir=None if options.inputs else spec_a.base_dir)
        self.cases: list[Case] = []
        self.monitor = SequentialMonitor(alpha=options.alpha)
        self.refused = 0
        self.batch_id = ""
        self._caches: dict[str, Any] = {}
        self._fan: Fanout | None = None

    def prepare(self) -> int:
        """Everything that can fail before a call is paid for: both variants' prompts on every case, keys."""
        for spec in self.specs.values():
            check_cases(spec, self.inputs)
        for spec in self.specs.values():
            for _, model in spec.models():
                self.models.client(model)
        self.cases = _unique_cases(self.inputs)
        return len(self.cases)

    def _pairs(self) -> Iterator[_Pair]:
        rng = random.Random(self.options.seed)
        index = 0
        for case in self.cases:
            for r in range(self.options.repeat):
                order = ("A", "B") if rng.random() < 0.5 else ("B", "A")
                yield _Pair(index, case, r, order)
                index += 1

    async def _run_one(self, pair: _Pair, variant: str) -> None:
        spec = self.specs[variant]
        self.progress.in_flight += 1
        try:
            result = await run_case(spec, pair.case, clients=self.models.client, recorder=self.ledger,
                                    budget=CaseBudget(spec.budget, self.pool), cache=self._caches.get(variant),
                                    batch_id=self.batch_id, repeat=pair.repeat, variant=variant)
        except BatchBudgetRefused:
            self.refused += 1
            return
        finally:
            self.progress.in_flight -= 1
        pair.results[variant] = result
        p = self.progress
        p.done += 1
        p.passed += int(result.success)
        p.statuses[result.status] = p.statuses.get(result.status, 0) + 1
        p.spent = self.pool.spent
        if len(pair.results) == 2 and all(r.status in FINISHED for r in pair.results.values()):
            a, b = pair.results["A"], pair.results["B"]
            self.monitor.update(a.success, b.success, (b.reward or 0.0) - (a.reward or 0.0))
        self.on_progress(p)

    def _should_stop(self) -> bool:
        crashed = self._fan is not None and self._fan.crash is not None
        return bool(self.refused) or crashed or (self.options.early_stop and self.monitor.decided)

    async def _drive(self) -> None:
        async with Fanout(self.options.concurrency) as fan:
            self._fan = fan
            for pair in self._pairs():
                await fan.acquire()
                if self._should_stop():  # no new pairs once the verdict is clear or the budget refused a case
                    fan.release()
                    break
                fan.launch(self._run_one(pair, pair.order[0]))
                await fan.acquire()
                if self.refused:  # the partner of a refused case would be unpaired
                    fan.release()
                    break
                fan.launch(self._run_one(pair, pair.order[1]))

    async def _execute(self) -> dict[str, Any]:
        await interruptible(self.ledger, self.batch_id, self._drive())
        self.ledger.finish_batch(self.batch_id, "budget" if self.refused else "done")
        return ab_report(self.ledger, self.batch_id)

    def run(self) -> dict[str, Any]:
        """Run the test to a verdict (or to the end of the cases, or of the budget); returns `ab_report`."""
        total = self.prepare()
        pairs = total * self.options.repeat
        self.monitor = SequentialMonitor(alpha=self.options.alpha, target_n=pairs)
        self.progress.total = 2 * pairs
        for spec in self.specs.values():
            self.ledger.save_spec(spec.hash, spec.name, str(spec.path) if spec.path else None, spec.source)
        saved = {**self.options.to_dict(), "cases_available": total, "pairs_available": pairs,
                 "order": "randomised per pair (case x repeat), seeded"}
        self.batch_id = self.ledger.start_batch("ab", self.specs["A"].hash, spec_hash_b=self.specs["B"].hash, argv=self.argv,
                                                tags=self.tags, options=saved, inputs=self.inputs.label)
        if not self.options.no_cache:
            self._caches = {v: LedgerCache(self.ledger, variant_of=(self.batch_id, v)) for v in VARIANTS}
        return _run_until_interrupted(self._execute())


def run_ab(spec_a: LoopSpec, spec_b: LoopSpec, *, ledger: Ledger, options: ABOptions | None = None,
           argv: list[str] | None = None, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Python API: run a paired A/B test and return its report (see `ab_report`)."""
    return ABTest(spec_a, spec_b, ledger, options or ABOptions(), argv=argv, tags=tags).run()


# --------------------------------------------------------------------------- the report


