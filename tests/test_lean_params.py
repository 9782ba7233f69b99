"""Options left at their defaults, and plain text or path values, skip typer's pydantic converters; values
that need converting or checking still get them (cli/lean_params.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loopkit.ledger import Ledger


def test_query_commands_start_without_pydantic(tmp_path: Path) -> None:
    """typer 0.29 built a pydantic converter for every option, given or not: importing pydantic alone was a
    third of `loopkit runs`' start-up."""
    Ledger(tmp_path / "l.db").close()
    script = """
import contextlib, io, json, sys
from loopkit.cli import main
codes = []
for args in (["runs", "--ledger", sys.argv[1]], ["cost", "--since", "7d", "--by", "model", "--ledger", sys.argv[1]]):
    sys.argv = ["loopkit", *args]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            codes.append(exc.code)
print(json.dumps({"codes": codes, "pydantic": "pydantic" in sys.modules}))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "l.db")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"codes": [0, 0], "pydantic": False}


def test_a_number_typed_on_the_command_line_is_still_converted_and_checked(cli, tmp_path: Path) -> None:  # noqa: ANN001
    Ledger(tmp_path / "ledger.db").close()
    for args in (("runs", "--limit", "0"), ("runs", "--limit", "two"), ("cost", "--human-usd-per-hour", "-1")):
        refused = cli(*args)
        assert refused.returncode == 2 and args[1] in refused.stderr, (args, refused.stderr)
    shown = cli("runs", "--limit", "3", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []
    assert cli("cost", "--human-usd-per-hour", "12.5").returncode == 0


def test_a_ledger_path_is_a_path_and_an_empty_one_is_refused_as_before(cli, tmp_path: Path) -> None:  # noqa: ANN001
    Ledger(tmp_path / "other.db").close()
    assert cli("runs", "--ledger", str(tmp_path / "other.db"), "--json").stdout.strip() == "[]"
    empty = cli("runs", "--ledger", "")
    assert empty.returncode != 0
