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


# -- times: local, with the zone, the same way everywhere ------------------------------------------

@pytest.fixture
def three_hours_east(monkeypatch):
    """Local time is UTC+3 and the zone is called LKT (a POSIX TZ string: no tzdata needed)."""
    import time

    monkeypatch.setenv("TZ", "LKT-3")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _local(iso: str, *, seconds: bool = True) -> str:
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(hours=3)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def test_times_are_local_with_their_zone_in_runs_show_diff_and_cost(cli, write_spec, tmp_path, three_hours_east):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: go}
        """)
    assert cli("run", str(spec)).returncode == 0
    (row,) = json.loads(cli("runs", "--json").stdout)
    started = row["started_at"]
    assert started.endswith("Z")  # the ledger keeps UTC
    batch = json.loads(cli("show", row["batch_id"], "--json").stdout)["batch"]

    listed = cli("runs").stdout
    assert "started (LKT)" in listed and _local(started, seconds=False) in listed
    assert f"started {_local(started)} LKT" in cli("show", row["id"]).stdout
    assert f"started {_local(batch['started_at'])} LKT" in cli("show", row["batch_id"]).stdout
    assert f"{_local(batch['started_at'])} LKT" in cli("diff", row["batch_id"], row["batch_id"]).stdout
    assert "since 2026-01-02 00:00:00 LKT" in cli("cost", "--since", "2026-01-02").stdout


def test_a_zone_without_a_name_shows_its_offset(monkeypatch):
    import time

    from loopkit.formatting import local_time

    monkeypatch.setenv("TZ", "<+0530>-5:30")  # how tzdata spells zones that have no abbreviation
    time.tzset()
    try:
        assert local_time("2026-12-03T08:00:00.000000Z") == "2026-12-03 13:30:00 +05:30"
    finally:
        monkeypatch.undo()
        time.tzset()


# -- widths: 80 columns --------------------------------------------------------------------------

def _at_width(renderable, width: int = 80) -> list[str]:
    from rich.console import Console

    console = Console(width=width, record=True, markup=False, soft_wrap=True, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text().splitlines()


def test_the_runs_table_fits_80_columns_and_keeps_the_case_column():
    from loopkit.cli.render import runs_table

    rows = [{"id": f"{n:032x}", "case_id": f"household-{n:04d}", "spec_name": "taxes-federal-2026", "status": status,
             "stop_reason": "max_iterations", "reward": 0.5, "iterations": 3, "cost_usd": 0.001234, "suspect": "audit",
             "started_at": "2026-12-03T09:14:05.000000Z"} for n, status in enumerate(["needs_review", "running", "passed"])]
    for one_batch in (False, True):
        lines = _at_width(runs_table(rows, width=80, one_batch=one_batch))
        assert max(len(line) for line in lines) <= 80
        assert all(any(f"household-{n:04d}" in line for line in lines) for n in range(3))
        assert any("needs_review ⚠" in line for line in lines) and any("$0.001234" in line for line in lines)
        assert not any("…" in line for line in lines)  # nothing is cut: what does not fit is left out and named
    wide = "\n".join(_at_width(runs_table(rows, width=200), 200))
    assert "taxes-federal-2026" in wide and "max_iterations" in wide and "too narrow" not in wide


def test_cost_by_model_keeps_long_model_names_whole_at_80_columns(cli, cli_proc, write_spec):
    long_name = "openrouter/anthropic/claude-3.5-sonnet-20241022"
    spec = write_spec(f"""
        model: {{id: loopkit/scripted, name: "{long_name}", replies: ["x"]}}
        task: {{prompt: go}}
        """)
    assert cli("run", str(spec)).returncode == 0
    done = cli_proc("cost", "--by", "model", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(long_name in line for line in lines)
    assert max(len(line) for line in lines) <= 80
    listed = cli_proc("runs", env={"COLUMNS": "80"})
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
