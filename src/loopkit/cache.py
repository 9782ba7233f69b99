"""Cache and replay: the key that identifies a call, and where an earlier answer to it is looked up.

The key is (spec name, model, api_base, messages, params, repeat index) plus a client's salt: a client
whose output depends on more than the messages (the scripted model renders its replies from the case)
salts the key with what it renders from, so two cases with the same prompt never share an answer.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Protocol

from .records import Messages
from .spec import ModelRef

if TYPE_CHECKING:
    from .ledger import Ledger
    from .ledger.writer import Writer
    from .models import Completion


def cache_key(spec_name: str, model: ModelRef, messages: Messages, params: dict[str, Any], repeat: int,
              salt: str | None = None) -> str:
    payload = json.dumps([spec_name, model.id, model.api_base, messages, params, repeat, salt], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class CallCache(Protocol):
    """Answers a call from earlier ones. `charges_budget`: a replay spends the recorded cost against
    the budget so it stops where the original did; an ordinary cache hit is free. `stores`: whether
    this run's calls may answer later ones (not under --no-cache)."""

    charges_budget: bool
    stores: bool

    def lookup(self, key: str) -> Completion | None: ...


class NoCache:
    """--no-cache: neither reads nor writes the cache."""

    charges_budget = False
    stores = False

    def lookup(self, key: str) -> Completion | None:
        return None


class LedgerCache:
    """The cache answered from the ledger's calls.

    - `replay_batch`: only that batch's calls answer (a miss reaches `ReplayMiss`: an error, never a
      network call), and their recorded cost is charged to the budgets so a replay stops where the
      original did.
    - `variant_of=(batch_id, variant)`: an A/B variant never reuses the other variant's calls of its own
      batch; otherwise whichever variant made a shared call second would get it free and look cheaper.
    """

    stores = True

    def __init__(self, ledger: Ledger | Writer, *, replay_batch: str | None = None,
                 variant_of: tuple[str, str] | None = None) -> None:
        self.ledger = ledger
        self.replay_batch = replay_batch
        self.variant_of = variant_of
        self.charges_budget = replay_batch is not None

    def lookup(self, key: str) -> Completion | None:
        return self.ledger.lookup(key, replay_batch=self.replay_batch, variant_of=self.variant_of)


class ReplayMiss:
    """The client behind a replay: any call that reaches it was not recorded."""

    def __init__(self, ref: ModelRef, batch_id: str) -> None:
        from .models import count_tokens
        from .prices import known_price

        self.ref = ref
        self.price = known_price(ref)
        self.batch_id = batch_id
        self._count = count_tokens

    def count_tokens(self, messages: Messages) -> int:
        return self._count(self.ref, messages)

    def cache_salt(self, variables: dict[str, Any]) -> str | None:
        from .models import ScriptedClient

        return ScriptedClient(self.ref).cache_salt(variables) if self.ref.scripted else None

    async def complete(self, messages: Messages, params: dict[str, Any], variables: dict[str, Any]) -> Completion:
        from .models import ModelCallError

        raise ModelCallError(f"replay: batch {self.batch_id[:12]} has no recorded response for this call", attempts=0)
