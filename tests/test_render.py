"""What the terminal shows: user data prints as it is, whatever it looks like (cli/render.py and the commands)."""

from __future__ import annotations

import json
import sqlite3

import pytest

MARKED_SPEC = """
name: "spec[bold]"
model: {id: loopkit/scripted, replies: ["out [/] [bold]b [link=x]l [red]x :smile:"]}
task: {prompt: "{{ case.n }}"}
inputs: [{id: "[/]one", n: 1}, {id: "[bold]two[link=x]", n: 2}]
checkers: [{name: "eq[red]", type: equals, expected: "[/]want [bold]"}]
stop: {max_iterations: 1}
"""


def _ids(cli) -> tuple[str, list[str]]:
    rows = json.loads(cli("runs", "--json").stdout)
    return rows[0]["batch_id"], [r["id"] for r in rows]


@pytest.fixture
def marked(cli, write_spec):
    """A batch whose spec name, case ids, output, checker name and feedback all look like rich markup."""
    spec = write_spec(MARKED_SPEC)
    done = cli("run", str(spec))
    return spec, done


def test_markup_in_user_data_prints_literally_in_every_command(cli, marked):
    spec, done = marked
    assert done.returncode == 0, done.stderr  # failed runs and no gate: exit 0
    assert "[/]one" in done.stdout and "spec[bold]" in done.stdout
    batch, (run_a, run_b) = _ids(cli)
    shown = {
        "runs": cli("runs"),
        "show run": cli("show", run_a),
        "show --calls": cli("show", run_a, "--calls"),
        "show batch": cli("show", batch),
        "diff batches": cli("diff", batch, batch),
        "diff runs": cli("diff", run_a, run_b),
        "cost by spec": cli("cost", "--by", "spec"),
        "cost by batch": cli("cost", "--by", "batch"),
    }
    for name, result in shown.items():
        assert result.returncode == 0, (name, result.stderr)
        assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr, name
    assert "[/]one" in shown["runs"].stdout and "[bold]two[link=x]" in shown["runs"].stdout
    assert "spec[bold]" in shown["runs"].stdout
    detail = shown["show run"].stdout
    assert "out [/] [bold]b [link=x]l [red]x :smile:" in detail  # emoji codes stay text too
    assert "eq[red]" in detail and "expected exactly '[/]want [bold]'" in detail
    assert "[user] 2" in shown["show --calls"].stdout or "[user] 1" in shown["show --calls"].stdout
    assert "[/]one" in shown["show batch"].stdout and "spec[bold]" in shown["show batch"].stdout
    assert "[bold]two[link=x]" in shown["diff runs"].stdout or "[/]one" in shown["diff runs"].stdout
    assert "spec[bold]" in shown["cost by spec"].stdout and "spec[bold]" in shown["cost by batch"].stdout


def test_a_running_run_is_listed_and_shown(cli, marked, tmp_path):
    batch, (run_a, _) = _ids(cli)
    with sqlite3.connect(tmp_path / "ledger.db") as db:  # as while a batch is in flight
        db.execute("UPDATE runs SET status='running', stop_reason=NULL, ended_at=NULL WHERE id=?", (run_a,))
    for args in (["runs"], ["show", batch], ["show", run_a]):
        done = cli(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "running" in done.stdout, args


def test_review_lists_parked_runs_whose_text_looks_like_markup(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["[/]answer"]}
        task: {prompt: go}
        inputs: [{id: "[bold]case"}]
        checkers: [{name: y, type: equals, expected: y}]
        escalate: [{when: {iterations: 1}, human: "look at [red]this[/]"}]
        """)
    assert cli("run", str(spec)).returncode == 0
    listed = cli("review")
    assert listed.returncode == 0, listed.stderr
    assert "[bold]case" in listed.stdout and "look at [red]this[/]" in listed.stdout and "[/]answer" in listed.stdout
