"""loopkit: design, run, audit and A/B-test agent loops.

    import loopkit
    spec = loopkit.load_spec("examples/taxes/taxes.yaml")
    result = loopkit.run_batch(spec, ledger=loopkit.Ledger("ledger.db"))
    summary = loopkit.show(result.batch_id, ledger="ledger.db")   # a BatchSummary (or a RunDetail, an ABReport)

Attributes are imported on first use, so `import loopkit` (and the CLI's query commands) stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ABOptions",
    "ABReport",
    "BatchSummary",
    "CheckResult",
    "Ledger",
    "LoopSpec",
    "LoopkitError",
    "RunDetail",
    "check",
    "load_spec",
    "parse_spec",
    "resume",
    "run_ab",
    "run_batch",
    "run_case",
    "show",
]

_WHERE = {
    "ABOptions": "ab",
    "ABReport": "views",
    "BatchSummary": "views",
    "CheckResult": "checkers",
    "Ledger": "ledger",
    "LoopSpec": "spec",
    "LoopkitError": "errors",
    "RunDetail": "views",
    "check": "api",
    "load_spec": "spec",
    "parse_spec": "spec",
    "resume": "api",
    "run_ab": "ab",
    "run_batch": "api",
    "run_case": "engine",
    "show": "views",
}

if TYPE_CHECKING:
    from .ab import ABOptions, run_ab
    from .api import check, resume, run_batch
    from .checkers import CheckResult
    from .engine import run_case
    from .errors import LoopkitError
    from .ledger import Ledger
    from .spec import LoopSpec, load_spec, parse_spec
    from .views import ABReport, BatchSummary, RunDetail, show


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'loopkit' has no attribute {name!r}")
