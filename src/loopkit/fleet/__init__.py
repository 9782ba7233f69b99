"""Many loops under one budget, one reviewer capacity and one time window (SPEC.md §9).

`model` is the fleet file's shape, `load` reads it (file:line:col problems, each loop's spec loaded);
`clock` is the window and the local day; `money` chains the shared caps out of budget.py's pools;
`reviewers` spends the day's reviewer minutes; `yielding` pauses a loop that wastes the budget;
`runner` drains the loops' cases; `status` answers where the money went and what waits for a person.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Fleet", "LoopPlan", "load_fleet", "looks_like_fleet"]


def __getattr__(name: str) -> Any:
    """Loaded on first use: `fleet status` reads the ledger without loading the spec machinery."""
    if name in __all__:
        from . import load

        return getattr(load, name)
    raise AttributeError(name)
