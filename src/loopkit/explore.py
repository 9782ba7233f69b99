"""`loopkit run SPEC --explore M1,M2`: every case on each model alone, so `loopkit plan` has data to plan from.

One ordinary `run` batch per model (tagged `explore`), with the spec's escalations off so each model's
attempts are its own; resumable like any batch. A name the spec gives one of its models (`name:`, or
its `id`) means that model with its mapping (api_base, price, replies); any other is a litellm model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .batch import Batch, BatchOptions, BatchResult, Progress
from .errors import UsageError
from .ledger import Ledger
from .spec import LoopSpec

__all__ = ["explore_models", "parse_models"]


def parse_models(text: str) -> list[str]:
    """`gpt-4o-mini,gpt-4o` → the models, each once, in order."""
    models = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not models:
        raise UsageError(f"--explore {text!r}: name the models to explore, comma-separated (e.g. gpt-4o-mini,gpt-4o)")
    return models


def explore_batches(spec: LoopSpec, ledger: Ledger, models: list[str], options: BatchOptions, *, argv: list[str] | None = None,
                    tags: dict[str, str] | None = None, on_progress: Callable[[Progress], None] | None = None) -> list[Batch]:
    """One batch per model, each checked (the model's name resolves) before any of them runs."""
    if options.model is not None:
        raise UsageError("--explore names the models itself; drop --model")
    label = ",".join(models)
    return [Batch(spec, ledger, dataclasses.replace(options, model=m, escalate=False), argv=argv,
                  tags={**(tags or {}), "explore": label}, on_progress=on_progress) for m in models]


def explore_models(spec: LoopSpec, ledger: Ledger, models: list[str], options: BatchOptions, **kw: object) -> list[BatchResult]:
    """Run every case (× `options.repeat`) on each model in turn; the batches' results, in model order."""
    return [batch.run() for batch in explore_batches(spec, ledger, models, options, **kw)]  # type: ignore[arg-type]
