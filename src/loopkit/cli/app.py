"""The typer app, its shared options, and how user errors are shown (one line, SPEC.md exit code)."""

from __future__ import annotations

import codecs
import io
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
from . import lean_params

lean_params.install()  # options left at their defaults never import pydantic (see lean_params)

app = typer.Typer(
    name="loopkit",
    help="Design, run, audit and A/B-test agent loops. Every run is recorded in a local SQLite ledger.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _silence(stream: Any) -> None:
    """Point a closed pipe's file descriptor at /dev/null, so the writes still to come (and Python's flush at
    exit) land nowhere instead of raising BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # not a real file (a test's StringIO)
        pass


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """Whoever reads our output stopped (`loopkit runs | head -1`): stop printing, quietly, and let the
        command finish and exit with its own code; what it recorded in the ledger is untouched. (rich's
        default exits 1, the quality-gate code.)"""
        self.quiet = True
        _silence(sys.stderr if self.stderr else sys.stdout)


def _tolerant_streams() -> None:
    """On a terminal or pipe that cannot encode a character (PYTHONIOENCODING=ascii, a latin-1 locale), print
    it escaped (`\\xe9`) rather than fail with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _utf(stream: Any) -> bool:
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name.startswith("utf")
    except LookupError:
        return False


def _console(stderr: bool) -> Console:
    """Wide enough for tables when output goes to a file or a CI log rather than a terminal (unless
    $COLUMNS says how wide).

    Markup and emoji codes are off: model output, case ids and feedback print as they are (a reply
    with `[/]` or `:x:` in it is text, not a style); what loopkit styles itself it styles with `Text`."""
    probe = Console(stderr=stderr)
    return _Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False,
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
    """JSON text; \\u escapes where stdout cannot encode a character, so the document stays valid JSON."""
    return json.dumps(data, indent=2, default=str, ensure_ascii=not _utf(sys.stdout))


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:  # the reader left: the rest goes nowhere, the command ends with its own code
        out.quiet = True
        _silence(sys.stdout)


def print_json(data: Any) -> None:
    _write(_dumps(data) + "\n")


def print_json_streaming(data: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """`print_json({**data, key: list(items)})`, the same text, without holding the items: a batch's every run
    under --json takes the memory of one run at a time."""
    head = _dumps({**{k: v for k, v in data.items() if k != key}, key: []})
    _write(head[:-len("[]\n}")] + "[")
    count = 0
    for item in items:
        _write(("\n" if count == 0 else ",\n") + textwrap.indent(_dumps(item), "    "))
        count += 1
        if out.quiet:  # nobody reads any more: no need to fetch the rest
            return
    _write(("\n  ]" if count else "]") + "\n}\n")


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
    """Console-script entry: exits with the command's code (SPEC.md §3), whether or not anyone still reads stdout."""
    from . import commands  # noqa: F401 - registers the commands on `app`

    _tolerant_streams()
    try:
        code = _run()
    except BrokenPipeError:  # a write outside rich and _write (typer's help, a usage message) found the pipe closed
        _silence(sys.stdout)
        code = 0
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence(sys.stdout)
    sys.exit(code)
