"""`--engine ray`: a batch's cases run on a Ray cluster (or a local Ray), with the same Loop, ledger and caps.

Ray is an optional extra (`loopkit[ray]`) and is imported only here, on the path that uses it.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import UsageError

ENGINES = ("asyncio", "ray")


class RayMissing(UsageError):
    """`--engine ray` without Ray installed."""


def require_ray() -> ModuleType:
    """The `ray` module, or a one-line error naming the extra to install (exit 2)."""
    try:
        import ray
    except ImportError:
        raise RayMissing("--engine ray needs Ray: pip install 'loopkit[ray]'") from None
    return ray


def engine_for(engine: str, address: str | None = None):  # noqa: ANN201 - RayEngine | None, without importing it
    """The batch engine an `--engine`/`--address` pair names: None for the in-process asyncio engine."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "asyncio":
        if address is not None:
            raise UsageError("--address is Ray's: use it with --engine ray")
        return None
    require_ray()
    from .driver import RayEngine

    return RayEngine(address)


__all__ = ["ENGINES", "RayMissing", "engine_for", "require_ray"]
