"""The Python entry points the CLI is built on."""

from __future__ import annotations

from collections.abc import Callable

from .batch import Batch, BatchOptions, BatchResult, Progress, spec_of_batch
from .errors import UsageError
from .ledger import Ledger
from .spec import LoopSpec


def run_batch(spec: LoopSpec, *, ledger: Ledger, options: BatchOptions | None = None, argv: list[str] | None = None,
              tags: dict[str, str] | None = None, on_progress: Callable[[Progress], None] | None = None) -> BatchResult:
    """Run a spec over its cases into `ledger`; see SPEC.md §2."""
    return Batch(spec, ledger, options or BatchOptions(), argv=argv, tags=tags, on_progress=on_progress).run()


def resume(batch_id: str, *, ledger: Ledger, retry_errors: bool = False, concurrency: int | None = None,
           max_usd: float | None = None, fail_under: float | None = None, argv: list[str] | None = None,
           on_progress: Callable[[Progress], None] | None = None) -> BatchResult:
    """Finish an interrupted `run` batch under its own id, with its saved options unless given again
    (SPEC.md §2). A unique prefix is enough; a `resume` row resumes the batch it was resuming."""
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
    return batch.resume(full, retry_errors=retry_errors)


def worst_case_per_case(spec: LoopSpec) -> tuple[float | None, int]:
    """(USD, tokens) one case can at most cost: max_iterations × (worker + judges) worst-case calls
    on the first case's prompt. USD is None when a model's price is unknown."""
    from .budget import worst_case_tokens
    from .checkers import judge_messages
    from .inputs import Inputs
    from .models import count_tokens
    from .prices import known_price
    from .spec import JudgeChecker
    from .templates import render

    first = next(iter(Inputs(spec.inputs, base_dir=spec.base_dir)), None)
    case = first.data if first else {}
    prompt = render(spec.task.prompt, case=case)
    messages = ([{"role": "system", "content": render(spec.task.system, case=case)}] if spec.task.system else [])
    messages.append({"role": "user", "content": prompt})
    calls = [(spec.model, messages)]
    calls += [(c.model or spec.model, judge_messages(c, prompt, "")) for c in spec.checkers if isinstance(c, JudgeChecker)]
    usd: float | None = 0.0
    tokens = 0
    for model, msgs in calls:
        p, c = worst_case_tokens(count_tokens(model, msgs), spec.params_for(model).get("max_tokens"))
        tokens += p + c
        price = known_price(model)
        usd = None if usd is None or price is None else usd + price.cost(p, c)
    n = spec.stop.max_iterations
    return (None if usd is None else usd * n), tokens * n
