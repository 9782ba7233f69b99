"""Per-token prices: the spec's `price:` first, else litellm's bundled price table.

The table is read as data from litellm's package (no `import litellm`), so `loopkit check` and
spec validation stay fast and offline.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .spec import ModelRef

_TABLE = "model_prices_and_context_window_backup.json"


class TokenPrice(NamedTuple):
    """USD per token."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input + completion_tokens * self.output


@lru_cache(maxsize=1)
def _litellm_table() -> dict[str, dict]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _TABLE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def litellm_price(model_id: str) -> TokenPrice | None:
    """litellm's price for a model string, trying it with and without the provider prefix."""
    table = _litellm_table()
    candidates = [model_id]
    if "/" in model_id:
        candidates.append(model_id.split("/", 1)[1])
    for name in candidates:
        entry = table.get(name)
        if entry and entry.get("input_cost_per_token") is not None and entry.get("output_cost_per_token") is not None:
            return TokenPrice(float(entry["input_cost_per_token"]), float(entry["output_cost_per_token"]))
    return None


def known_price(model: ModelRef) -> TokenPrice | None:
    """The price loopkit budgets with, or None when it cannot know it."""
    if model.price is not None:
        return TokenPrice(model.price.input_per_mtok / 1e6, model.price.output_per_mtok / 1e6)
    if model.scripted:
        return TokenPrice(0.0, 0.0)
    return litellm_price(model.id)
