"""The Python entry points the CLI is built on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .batch import Batch, BatchOptions, BatchResult, Progress, spec_of_batch
from .errors import UsageError
from .ledger import Ledger
from .spec import LoopSpec
from .views import ABReport, BatchSummary, RunDetail, show  # noqa: F401 - reading a run, batch or A/B test back

if TYPE_CHECKING:
    from .budget import WorstCase


def run_batch(spec: LoopSpec, *, ledger: Ledger, options: BatchOptions | None = None, argv: list[str] | None = None,
              tags: dict[str, str] | None = None, on_progress: Callable[[Progress], None] | None = None,
              engine: Any = None) -> BatchResult:
    """Run a spec over its cases into `ledger`; see SPEC.md §2. `engine`: where cases run (None: this process;
    `loopkit.ray_engine.engine_for("ray", address)`: a Ray cluster)."""
    batch = Batch(spec, ledger, options or BatchOptions(), argv=argv, tags=tags, on_progress=on_progress)
    batch.engine = engine
    return batch.run()


def resume(batch_id: str, *, ledger: Ledger, retry_errors: bool = False, concurrency: int | None = None,
           max_usd: float | None = None, fail_under: float | None = None, argv: list[str] | None = None,
           on_progress: Callable[[Progress], None] | None = None, engine: Any = None) -> BatchResult:
    """Finish an interrupted `run` batch under its own id, with its saved options unless given again
    (SPEC.md §2), on `engine` (see `run_batch`; never inherited). A unique prefix is enough; a `resume` row
    resumes the batch it was resuming."""
    import json

    kind, full = ledger.resolve(batch_id)
    if kind != "batch":
        raise UsageError(f"{batch_id} is a run; resume takes a batch ID")
    row = ledger.batch(full) or {}
    if row.get("kind") == "resume":
        full = json.loads(row.get("tags") or "{}").get("resumes") or full
        row = ledger.batch(full) or row
    if row.get("kind") == "ab":
        raise UsageError(f"batch {full[:10]} is an A/B experiment: resume it with `loopkit resume` or loopkit.ab.resume_ab")
    saved = json.loads(row.get("options") or "{}")
    options = BatchOptions(**{k: v for k, v in saved.items() if k in BatchOptions.__dataclass_fields__})
    for name, value in (("concurrency", concurrency), ("max_usd", max_usd), ("fail_under", fail_under)):
        if value is not None:
            setattr(options, name, value)
    batch = Batch(spec_of_batch(ledger, row), ledger, options, argv=argv, on_progress=on_progress)
    batch.engine = engine
    return batch.resume(full, retry_errors=retry_errors)


@dataclass(frozen=True)
class SpecCheck:
    """One spec as `check` found it: `problems` keep it from running, `warnings` may not; `worst_case` is
    what one case can at most cost (None when the spec or its inputs did not load)."""

    path: str
    name: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cases: int = 0
    worst_case: WorstCase | None = None
    kind: str = "spec"  # or "fleet": a fleet file (SPEC.md §9), checked with every loop it names

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_case
        return {"spec": self.path, "name": self.name, "ok": self.ok, "cases": self.cases,
                "worst_case_usd_per_case": worst.usd if worst else None,
                "worst_case_tokens_per_case": worst.tokens if worst else None,
                "max_iterations": worst.iterations if worst else None,
                "worst_case": asdict(worst) if worst else None, "problems": self.problems, "warnings": self.warnings}


@dataclass(frozen=True)
class CheckReport:
    """`loopkit check`: every problem of every spec at once, and each one's worst case per case."""

    specs: list[SpecCheck]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.specs)

    @property
    def problems(self) -> list[str]:
        return [p for s in self.specs for p in s.problems]

    @property
    def warnings(self) -> list[str]:
        return [w for s in self.specs for w in s.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "specs": [s.to_dict() for s in self.specs], "problems": self.problems, "warnings": self.warnings}


def _check_one(path: Path) -> SpecCheck:
    from .batch import check_cases
    from .budget import worst_case_per_case
    from .errors import LoopkitError, SpecError
    from .inputs import Inputs
    from .prices import model_problem
    from .spec import load_spec

    from .fleet import looks_like_fleet

    if looks_like_fleet(path):
        from .fleet.check import check_fleet

        return check_fleet(path)
    try:
        spec = load_spec(path)
    except SpecError as exc:
        return SpecCheck(str(path), problems=exc.problems)
    errors: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for where, model in spec.models():
        problem = None if model.id in seen else model_problem(model)  # a judge on the worker's model: said once
        seen.add(model.id)
        if problem is not None:
            (errors if problem.error else warnings).append(f"{path}: {where}: {problem.message}")
    try:
        inputs = Inputs(spec.inputs, base_dir=spec.base_dir)
        count = check_cases(spec, inputs)
    except LoopkitError as exc:
        return SpecCheck(str(path), spec.name, [*errors, str(exc)], warnings)
    return SpecCheck(str(path), spec.name, errors, warnings, count, worst_case_per_case(spec, inputs))


def check(paths: Iterable[str | Path]) -> CheckReport:
    """Validate specs without calling a model (and without loading litellm): every problem at once, and
    the worst case of one case of each (see `budget.worst_case_per_case`)."""
    return CheckReport([_check_one(Path(p)) for p in paths])
