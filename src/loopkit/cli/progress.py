"""Live batch progress: a rich bar on a terminal, plain periodic lines otherwise, nothing with --json."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..batch import Progress as BatchProgress
from .app import err, money

PLAIN_EVERY_SECONDS = 5.0


def _stats(p: BatchProgress) -> str:
    rate = f"{p.passed / p.done:.0%}" if p.done else "-"
    spent = money(p.spent) + (f" of {money(p.cap)}" if p.cap is not None else "")
    return f"pass {rate} · {spent} · {p.in_flight} in flight"


@contextmanager
def batch_progress(enabled: bool) -> Iterator[Callable[[BatchProgress], None]]:
    """A callback for Batch(on_progress=...) that draws progress on stderr."""
    if not enabled:
        yield lambda p: None
        return
    if err.is_terminal:
        bar = Progress(TextColumn("[bold]cases"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)
        with bar:
            task = bar.add_task("cases", total=None, stats="")

            def update(p: BatchProgress) -> None:
                bar.update(task, total=p.total or None, completed=p.done, stats=_stats(p))

            yield update
        return
    last = [time.monotonic()]

    def plain(p: BatchProgress) -> None:
        now = time.monotonic()
        if now - last[0] >= PLAIN_EVERY_SECONDS or p.done == p.total:
            last[0] = now
            err.print(f"{p.done}/{p.total} cases · {_stats(p)}", markup=False)

    yield plain
