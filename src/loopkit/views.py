"""`loopkit.show`: one run, one batch or one A/B test read back from the ledger, as typed results.

`loopkit show ID` prints what this returns and nothing else, so a script and the terminal see the same
figures. Reading needs no model library: this module imports the ledger only when called.

    import loopkit
    summary = loopkit.show("3f2a9c", ledger="ledger.db")
    if isinstance(summary, loopkit.BatchSummary):
        print(summary.pass_rate, [e.kind for e in summary.errors])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["ABReport", "BatchSummary", "CacheUse", "ErrorKind", "RunDetail", "show"]


@dataclass(frozen=True)
class CacheUse:
    """How many calls the cache answered, and what their original calls cost (what they would have cost)."""

    calls: int = 0
    cached: int = 0
    would_have_cost_usd: float = 0.0
    without_original: int = 0  # cached calls whose original call was not in the ledger when they were recorded

    @classmethod
    def of(cls, row: dict[str, Any]) -> CacheUse:
        return cls(**{k: row[k] for k in ("calls", "cached", "would_have_cost_usd", "without_original")})


@dataclass(frozen=True)
class ErrorKind:
    """Runs that errored for one reason: how many, and the first one's message."""

    kind: str
    runs: int
    message: str | None
    run_id: str
    case_id: str

    @classmethod
    def of(cls, row: dict[str, Any]) -> ErrorKind:
        return cls(row["kind"], row["runs"], row["message"], row["run_id"], str(row["case_id"]))


@dataclass(frozen=True)
class RunDetail:
    """One run: its outcome, iterations (each with its checks), calls, events and cache use."""

    kind: Literal["run"] = field(default="run", init=False)
    id: str = ""
    batch_id: str | None = None
    spec_name: str = ""
    case_id: str = ""
    case: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    status: str = ""
    stop_reason: str | None = None
    success: bool = False
    reward: float | None = None
    best_iteration: int | None = None
    output: str | None = None
    message: str | None = None
    suspect: str | None = None
    human: dict[str, Any] = field(default_factory=dict)  # a person's time on it: reviews, minutes, usd, waiting_minutes
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    iterations: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # the worker's, in the order they ran
    events: list[dict[str, Any]] = field(default_factory=list)
    cache: CacheUse = field(default_factory=CacheUse)
    row: dict[str, Any] = field(default_factory=dict, repr=False)  # every column, as --json prints it

    @classmethod
    def of(cls, detail: dict[str, Any], cache: dict[str, Any]) -> RunDetail:
        names = set(cls.__dataclass_fields__) - {"kind", "cache", "row", "success"}
        return cls(**{k: detail.get(k) for k in names if k in detail}, success=bool(detail.get("success")),
                   cache=CacheUse.of(cache), row=detail)

    def to_dict(self, *, messages: bool = True) -> dict[str, Any]:
        """The `show RUN --json` document; `messages=False` leaves out each call's messages (as without --calls)."""
        calls = self.calls if messages else [{k: v for k, v in c.items() if k != "messages"} for c in self.calls]
        return {**self.row, "calls": calls, "cache": self.cache.__dict__}


@dataclass(frozen=True)
class BatchSummary:
    """A `run`/`resume` batch: its figures, aggregated from every run, and its first runs (`first_runs`)."""

    kind: Literal["batch"] = field(default="batch", init=False)
    id: str = ""
    batch_kind: str = ""  # run | resume | fleet
    status: str = ""
    spec_name: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    runs: int = 0
    passed: int = 0
    pass_rate: float = 0.0
    cost_usd: float = 0.0
    cost_per_pass: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    stop_reasons: dict[str, int] = field(default_factory=dict)
    errors: list[ErrorKind] = field(default_factory=list)
    cache: CacheUse = field(default_factory=CacheUse)
    slowest: list[dict[str, Any]] = field(default_factory=list)
    most_expensive: list[dict[str, Any]] = field(default_factory=list)
    suspect_runs: int = 0
    suspects: list[dict[str, Any]] = field(default_factory=list)
    human: dict[str, Any] = field(default_factory=dict)  # a person's time: reviews, minutes, usd; runs still waiting
    first_runs: list[dict[str, Any]] = field(default_factory=list)
    resume: str | None = None  # the command that finishes it, when its process is gone
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, summary: dict[str, Any]) -> BatchSummary:
        b = summary["batch"]
        return cls(id=b.get("id", ""), batch_kind=b.get("kind", ""), status=b.get("status", ""), spec_name=summary["spec_name"],
                   started_at=b.get("started_at"), ended_at=b.get("ended_at"), runs=summary["runs"], passed=summary["passed"],
                   pass_rate=summary["pass_rate"], cost_usd=summary["cost_usd"], cost_per_pass=summary["cost_per_pass"],
                   statuses=summary["statuses"], stop_reasons=summary["stop_reasons"],
                   errors=[ErrorKind.of(e) for e in summary["error_kinds"]], cache=CacheUse.of(summary["cache"]),
                   slowest=summary["slowest"], most_expensive=summary["most_expensive"], suspect_runs=summary["suspect_runs"],
                   suspects=summary["suspects"], first_runs=summary["first_runs"], resume=b.get("resume"),
                   human=summary.get("human", {}), summary=summary)

    @property
    def batch(self) -> dict[str, Any]:
        """The batch's row (argv, tags and options decoded)."""
        return self.summary.get("batch", {})

    def to_dict(self) -> dict[str, Any]:
        """The `show BATCH --json` document without `run_rows` (the CLI streams every run into it)."""
        return {k: v for k, v in self.summary.items() if k != "first_runs"}


@dataclass(frozen=True)
class ABReport:
    """An A/B test's report, as `loopkit ab` builds it (see `loopkit.ab_report`): variants, deltas, tests, verdict."""

    kind: Literal["ab"] = field(default="ab", init=False)
    batch_id: str = ""
    status: str = ""
    winner: str | None = None  # the winning spec's name, or None
    verdict: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, report: dict[str, Any]) -> ABReport:
        return cls(batch_id=report["batch_id"], status=report["status"], winner=report["verdict"].get("winner"),
                   verdict=report["verdict"], variants=report["variants"], tests=report["tests"], report=report)

    def to_dict(self) -> dict[str, Any]:
        return self.report


def show(id: str, ledger: Ledger | str | Path | None = None) -> RunDetail | BatchSummary | ABReport:
    """A run, a batch or an A/B test by ID (a unique prefix is enough, like git).

    `ledger`: an open `Ledger`, a path, or None for $LOOPKIT_LEDGER or .loopkit/ledger.db. Raises
    `UsageError` for an unknown or ambiguous ID and `LedgerError` when there is no ledger.
    """
    from .ledger import Ledger

    if isinstance(ledger, Ledger):
        return _show(ledger, id)
    with Ledger(ledger, readonly=True) as store:
        return _show(store, id)


def _show(store: Ledger, id: str) -> RunDetail | BatchSummary | ABReport:
    from .ledger.queries import batch_summary, cache_use

    from .human import batch_human, run_human

    kind, full = store.resolve(id)
    if kind == "run":
        return RunDetail.of({**store.run_detail(full), "human": run_human(store, full)}, cache_use(store, run_id=full))
    if (store.batch(full) or {}).get("kind") == "ab":
        from .ab_report import ab_report

        return ABReport.of(ab_report(store, full))
    return BatchSummary.of({**batch_summary(store, full), "human": batch_human(store, full)})
