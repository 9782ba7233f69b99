"""Cache and replay: the key that identifies a call, and where an earlier answer to it is looked up.

The key is (spec name, model, api_base, messages, params, repeat index) plus a client's salt: a client
whose output depends on more than the messages (the scripted model renders its replies from the case)
salts the key with what it renders from, so two cases with the same prompt never share an answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .liveness import is_stale
from .records import Messages
from .spec import ModelRef
from .timewindow import utcnow_iso

if TYPE_CHECKING:
    from .bloom import Bloom
    from .ledger import Ledger
    from .ledger.writer import Writer
    from .models import Completion


# The JSON a key is made from: keys sorted, anything else as text. One encoder, not one built per call.
canonical_json = json.JSONEncoder(sort_keys=True, default=str).encode


def cache_key(spec_name: str, model: ModelRef, messages: Messages, params: dict[str, Any], repeat: int,
              salt: str | None = None) -> str:
    payload = canonical_json([spec_name, model.id, model.api_base, messages, params, repeat, salt])
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
                 variant_of: tuple[str, str] | None = None, known: KnownKeys | None = None) -> None:
        self.ledger = ledger
        self.replay_batch = replay_batch
        self.variant_of = variant_of
        self.known = known
        self.charges_budget = replay_batch is not None

    def lookup(self, key: str) -> Completion | None:
        if self.known is not None and not self.known.may_hold(key):
            return None
        return self.ledger.lookup(key, replay_batch=self.replay_batch, variant_of=self.variant_of)


class KnownKeys:
    """The cache keys a batch's lookups could find, so that most misses are answered without asking SQLite.

    A lookup beside the batch's ledger writer costs about 18 µs of CPU (sqlite3 hands the GIL to the writer
    thread and waits to get it back), a tenth of a scripted iteration. Misses are settled here instead, from a
    filter (bloom.py) of the spec's answerable keys in the ledger when the batch starts and of every key the
    batch's writer is handed since; a key the filter holds is still looked up. The filter is only used while
    no other batch can add answers: not at all when another live batch is running or when the spec has more
    than `LIMIT` answers (reading them would cost more than it saves), and no longer from the first check,
    every `CHECK_SECONDS`, that finds another batch running or started since.
    """

    LIMIT = 10_000
    CHECK_SECONDS = 0.1

    def __init__(self, keys: Bloom, others_writing: Callable[[], bool]) -> None:
        self.keys = keys
        self.others_writing = others_writing
        self.trusted = True
        self._next_check = time.monotonic() + self.CHECK_SECONDS

    @classmethod
    def of(cls, ledger: Ledger, writer: Writer, spec_name: str, batch_id: str) -> KnownKeys | None:
        """The filter for a batch of `spec_name` whose steps `writer` writes; None where it cannot be trusted."""
        since = utcnow_iso()

        def others_writing() -> bool:
            others = ledger.batches_running_or_since(since, besides=batch_id)
            # is_stale calls a batch of this very process stale (a crash); here it may be a live one in another thread
            return any(b["started_at"] >= since or b["pid"] == os.getpid() or not is_stale(b) for b in others)

        if others_writing():
            return None
        answerable = ledger.answerable_keys(spec_name, limit=cls.LIMIT)
        if answerable is None:
            return None
        keys = writer.track_keys()
        for key in answerable:
            keys.add(key)
        return cls(keys, others_writing)

    def may_hold(self, key: str) -> bool:
        """False only for a key the ledger certainly cannot answer."""
        if not self.trusted:
            return True
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.CHECK_SECONDS
            if self.others_writing():
                self.trusted = False
                return True
        return key in self.keys


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
