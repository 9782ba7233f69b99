"""The typer app, its shared options, and how user errors are shown (one line, SPEC.md exit code)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

try:  # typer 0.29 vendors click as typer._click; its exceptions are not click's
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover - a typer that uses click itself
    from click import ClickException
    from click import UsageError as ClickUsageError

from ..errors import LoopkitError
from ..formatting import usd as money  # noqa: F401 - the commands' money format

app = typer.Typer(
    name="loopkit",
    help="Design, run, audit and A/B-test agent loops. Every run is recorded in a local SQLite ledger.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _console(stderr: bool) -> Console:
    """Wide enough for tables when output goes to a file or a CI log rather than a terminal (unless
    $COLUMNS says how wide).

    Markup and emoji codes are off: model output, case ids and feedback print as they are (a reply
    with `[/]` or `:x:` in it is text, not a style); what loopkit styles itself it styles with `Text`."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False,
                   width=None if probe.is_terminal or os.environ.get("COLUMNS") else max(probe.width, 140))


out = _console(stderr=False)
err = _console(stderr=True)

LedgerOpt = Annotated[Optional[Path], typer.Option("--ledger", help="Ledger file (default: $LOOPKIT_LEDGER, else .loopkit/ledger.db).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"loopkit {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(ctx: typer.Context, ledger: LedgerOpt = None,
          version: Annotated[bool, typer.Option("--version", help="Print loopkit's version and exit.", is_eager=True,
                                                callback=_print_version)] = False) -> None:
    ctx.obj = {"ledger": ledger}


def ledger_option(ctx: typer.Context, value: Path | None) -> Path | None:
    """`--ledger` may come before or after the command name."""
    return value or (ctx.obj or {}).get("ledger")


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def print_json(data: Any) -> None:
    sys.stdout.write(_dumps(data) + "\n")


def print_json_streaming(data: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """`print_json({**data, key: list(items)})`, the same text, without holding the items: a batch's every run
    under --json takes the memory of one run at a time."""
    head = _dumps({**{k: v for k, v in data.items() if k != key}, key: []})
    sys.stdout.write(head[:-len("[]\n}")] + "[")
    count = 0
    for item in items:
        sys.stdout.write(("\n" if count == 0 else ",\n") + textwrap.indent(_dumps(item), "    "))
        count += 1
    sys.stdout.write(("\n  ]" if count else "]") + "\n}\n")


def _wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for --json (before any `--`)."""
    args = argv[1:]
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _json_error(message: str, exit_code: int, location: str | None = None, **extra: Any) -> None:
    """Under --json a failure is a JSON document on stdout too, so a script reading stdout sees why."""
    if _wants_json(sys.argv):
        print_json({"error": {"message": message, "exit_code": exit_code, "location": location, **extra}})


def _run() -> int:
    """Run the command line; user errors print one line on stderr and give their exit code; Ctrl-C gives 130."""
    from ..errors import SpecError

    try:
        # prog_name: the completion variable is _LOOPKIT_COMPLETE however loopkit was started (python -m, a test)
        code = app(standalone_mode=False, prog_name="loopkit")  # returns a typer.Exit's code in non-standalone mode
        return code if isinstance(code, int) else 0
    except LoopkitError as exc:
        for line in str(exc).splitlines():
            err.print(f"error: {line}", markup=False)
        extra = {"problems": exc.problems} if isinstance(exc, SpecError) else {}
        _json_error(exc.message, exc.exit_code, exc.location, **extra)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, EOFError):
        return 130
    except ClickException as exc:  # bad options and arguments arrive here in non-standalone mode
        exc.show()
        return 2 if isinstance(exc, ClickUsageError) else exc.exit_code


def main() -> None:
    """Console-script entry: exits with the command's code (SPEC.md §3)."""
    from . import commands  # noqa: F401 - registers the commands on `app`

    sys.exit(_run())
