"""The `loopkit` console script's entry point.

It loads the CLI (typer, rich, the commands) itself, so a Ctrl-C while they load is exit 130 and one
line like any other, not a traceback. `loopkit/__init__` imports nothing heavy, so the window before
this runs is the interpreter's own start-up.
"""

from __future__ import annotations

import gc
import sys

# The cyclic collector's young generation is collected every 700 allocations by default; a batch allocates
# a few hundred objects per iteration, so it ran every few iterations and a full collection walked every
# live object (7 % of a scripted run's CPU). Larger thresholds, and the CLI's own modules frozen out of
# the collector's walks once loaded, keep it for garbage that is actually cyclic.
GC_THRESHOLDS = (50_000, 20, 100)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    gc.freeze()
    run()
