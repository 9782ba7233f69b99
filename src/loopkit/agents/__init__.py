"""Outside agents as the worker (SPEC.md §5 `worker:`): `worker` runs the program in its work directory,
`metering` is the OpenAI-compatible endpoint its model calls go through (budgeted and recorded), `http`
the small server under it."""

from .worker import AgentSetupError, AgentWorker

__all__ = ["AgentSetupError", "AgentWorker"]
