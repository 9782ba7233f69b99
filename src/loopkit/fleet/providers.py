"""Per-provider concurrency: every model of one litellm provider shares one adaptive limit (halved on a
429, creeping back as calls succeed; models.py's `AdaptiveLimit`), whichever loop calls it."""

from __future__ import annotations

from ..models import AdaptiveLimit, ModelPool, RetryPolicy
from ..spec import ModelRef

SCRIPTED_PROVIDER = "loopkit"


def provider_of(ref: ModelRef) -> str:
    """The litellm provider of a model (`openai/x` → openai; a bare `gpt-4o` as litellm resolves it)."""
    if ref.scripted:
        return SCRIPTED_PROVIDER
    head, sep, _ = ref.id.partition("/")
    if sep:
        return head
    from ..models import litellm

    try:
        return str(litellm().get_llm_provider(ref.id)[1])
    except Exception:  # noqa: BLE001 - an unknown model fails with its own message when its client is made
        return head


class FleetModels(ModelPool):
    """The fleet's ModelPool: one client per distinct model, one AdaptiveLimit per provider."""

    def __init__(self, limits: dict[str, int], *, max_retries: int, default: int) -> None:
        super().__init__(retry=RetryPolicy(attempts=max(1, max_retries)), concurrency=default)
        self.limits = limits
        self._limits: dict[str, AdaptiveLimit] = {}

    def limit(self, provider: str) -> AdaptiveLimit:
        if provider not in self._limits:
            self._limits[provider] = AdaptiveLimit(self.limits.get(provider, self.concurrency))
        return self._limits[provider]

    def limit_for(self, ref: ModelRef, key: str) -> AdaptiveLimit:
        return self.limit(provider_of(ref))
