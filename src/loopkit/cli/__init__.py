"""`loopkit` on the command line: a thin layer over the Python API.

The console script enters through `main` here, which loads the CLI's modules (typer, rich, the
commands) itself, so a Ctrl-C while they load is exit 130 like any other, not a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    try:
        from . import commands  # noqa: F401 - registers the commands on `app`
        from .app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from . import commands  # noqa: F401 - the app with its commands
        from .app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
