"""Many loops under one budget, one reviewer capacity and one time window (SPEC.md §9).

`model` is the fleet file's shape, `load` reads it (file:line:col problems, each loop's spec loaded);
`clock` is the window and the local day; `money` chains the shared caps out of budget.py's pools;
`reviewers` spends the day's reviewer minutes; `yielding` pauses a loop that wastes the budget;
`runner` drains the loops' cases; `status` answers where the money went and what waits for a person.
"""

from .load import Fleet, LoopPlan, load_fleet, looks_like_fleet

__all__ = ["Fleet", "LoopPlan", "load_fleet", "looks_like_fleet"]
