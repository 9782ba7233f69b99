"""Generate the CLI reference (docs/cli.md) from every command's `--help`, so the docs never drift.

    python -m loopkit.cli.docs            # rewrite docs/cli.md
    python -m loopkit.cli.docs --check    # exit 1 when docs/cli.md is stale (what tests/test_cli_docs.py asserts)

Help is rendered in-process with a fixed terminal (COLUMNS=100, TERM=dumb, NO_COLOR=1), so the
file is the same on every machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

HELP_ENV = {"COLUMNS": "100", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"}
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "docs" / "cli.md"
# The order a reader meets the commands in (SPEC.md §3); commands not listed follow alphabetically.
ORDER = ("run", "check", "runs", "show", "diff", "cost", "ab", "review", "resume")

HEADER = """# loopkit command-line reference

<!-- Generated from each command's --help by `python -m loopkit.cli.docs`; do not edit by hand.
     tests/test_cli_docs.py fails when this file is stale. -->

Every command takes `--json` (one JSON document on stdout, nothing else there) and `--ledger PATH`
(before or after the command name; default `$LOOPKIT_LEDGER`, else `.loopkit/ledger.db`). IDs may
be given by a unique prefix. Times (`--since`, `--until`) accept `now`, `today`, `yesterday`, `30m`,
`2h`, `7d`, `2w`, ISO dates and date-times, in local time; `--until` is exclusive. Exit codes: 0 ok,
1 quality gate failed, 2 bad usage or bad spec, 3 the batch budget kept cases from running, 4 runs
ended in model or infrastructure errors.
"""


def command_names() -> list[str]:
    """Every registered command, in reading order."""
    import typer

    from . import commands  # noqa: F401 - registers the commands
    from .app import app

    group = typer.main.get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def help_text(args: list[str]) -> str:
    """`loopkit ARGS --help` exactly as the console script prints it on a 100-column dumb terminal."""
    import contextlib
    import io
    import os

    import typer

    from . import commands  # noqa: F401
    from .app import app

    group = typer.main.get_command(app)
    saved = {k: os.environ.get(k) for k in HELP_ENV}
    buffer = io.StringIO()
    try:
        os.environ.update(HELP_ENV)
        with contextlib.redirect_stdout(buffer):
            code = group.main(args=[*args, "--help"], prog_name="loopkit", standalone_mode=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code not in (0, None):
        raise RuntimeError(f"loopkit {' '.join(args)} --help exited {code}: {buffer.getvalue()}")
    return "\n".join(line.rstrip() for line in buffer.getvalue().strip("\n").splitlines())


def render() -> str:
    """The whole reference as markdown."""
    parts = [HEADER, "## loopkit\n", "```text\n" + help_text([]) + "\n```\n"]
    for name in command_names():
        parts += [f"## loopkit {name}\n", "```text\n" + help_text([name]) + "\n```\n"]
        for sub in subcommand_names(name):  # a group (`fleet`): each of its commands too
            parts += [f"### loopkit {name} {sub}\n", "```text\n" + help_text([name, sub]) + "\n```\n"]
    return "\n".join(parts)


def subcommand_names(name: str) -> list[str]:
    """The commands of a command group, in the order they were registered (none for a plain command)."""
    import typer

    from .app import app

    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return list(getattr(command, "commands", {}))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    path = Path(paths[0]) if paths else DEFAULT_PATH
    text = render()
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run `python -m loopkit.cli.docs` to regenerate it", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
