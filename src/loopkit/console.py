"""The `loopkit` console script's entry point.

It loads the CLI (typer, rich, the commands) itself, so a Ctrl-C while they load is exit 130 and one
line like any other, not a traceback. `loopkit/__init__` imports nothing heavy, so the window before
this runs is the interpreter's own start-up.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run()
