"""Per-token prices, and whether litellm can route a model: the spec's `price:` first, else litellm's
bundled model table.

The table is read as data from litellm's package (no `import litellm`), so `loopkit check` and
spec validation stay fast and offline.
"""

from __future__ import annotations

import difflib
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


# --- whether litellm can call a model at all ------------------------------------------------------

# Served on the user's machine by default (http://localhost:11434): any model name, no key.
LOCAL_PROVIDERS = frozenset({"ollama", "ollama_chat"})
# Providers litellm routes to that its price table has no entries under.
ROUTED_PROVIDERS = frozenset({"openrouter", "huggingface", "custom_openai", "hosted_vllm", "lm_studio", "llamafile"})


class ModelProblem(NamedTuple):
    """Why a model string may not work: `error` refuses it before any call; otherwise it is a warning."""

    error: bool
    message: str


def _in_table(model_id: str) -> bool:
    table = _litellm_table()
    return model_id in table or ("/" in model_id and model_id.split("/", 1)[1] in table)


@lru_cache(maxsize=1)
def _providers() -> frozenset[str]:
    table = _litellm_table()
    found = {entry.get("litellm_provider") for entry in table.values() if isinstance(entry, dict)}
    found |= {name.split("/", 1)[0] for name in table if "/" in name}
    return frozenset(p for p in found if isinstance(p, str)) | LOCAL_PROVIDERS | ROUTED_PROVIDERS


def model_problem(model: ModelRef) -> ModelProblem | None:
    """What litellm's bundled table says about calling `model`, without importing litellm.

    A model with an `api_base` may have any name (a server of your own); a local provider's (Ollama) any
    name too. Otherwise a bare name the table does not know cannot be routed, nor can an unknown
    provider: both are errors. A known provider with a model the table does not know (newer than the
    table, or misspelt) is a warning unless the spec gives its price.
    """
    if model.scripted or model.api_base or not _litellm_table() or _in_table(model.id):
        return None
    provider, _, name = model.id.partition("/")
    if name and provider in LOCAL_PROVIDERS:
        return None
    if name and provider in _providers():
        if model.price is not None:
            return None
        return ModelProblem(False, f"litellm's bundled model table does not know {model.id}: check the spelling; "
                                   "a model newer than the table works, but its cost is unknown until you give it a "
                                   "`price:` in a model mapping")
    if name:
        return ModelProblem(True, f"model {model.id}: `{provider}` is not a provider litellm knows; use one of "
                                  "litellm's provider prefixes (e.g. `openai/`), or give the model an `api_base:`")
    close = difflib.get_close_matches(model.id, [k for k in _litellm_table() if "/" not in k], n=1, cutoff=0.8)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return ModelProblem(True, f"litellm does not know the model {model.id}{hint}; name it as litellm does "
                              "(e.g. `openai/gpt-4o-mini`), or give a mapping with `api_base:` for a server of your own")


# What litellm's table says a model can do with `tools:`; litellm.supports_function_calling reads the same field.
_TOOL_MODES = frozenset({"chat", "responses"})


def tools_problem(model_id: str) -> str | None:
    """Why `model_id` cannot be offered tools, when litellm's bundled table can tell (no `import litellm`):
    its entry says `supports_function_calling: false`, or it is no chat model. A model it does not know,
    or one without the field, gets the benefit of the doubt."""
    table = _litellm_table()
    entry = next((table[n] for n in (model_id, model_id.split("/", 1)[-1]) if isinstance(table.get(n), dict)), None)
    if entry is None:
        return None
    mode = entry.get("mode")
    if entry.get("supports_function_calling") is False or (mode is not None and mode not in _TOOL_MODES):
        why = "cannot call tools" if mode in _TOOL_MODES or mode is None else f"is a `{mode}` model, not a chat model that calls tools"
        return (f"the spec has `tools:`, but litellm's model table says {model_id} {why}; "
                "use a model that supports function calling (e.g. openai/gpt-4o-mini), or drop `tools:`")
    return None
