"""The fleet file: validated like a spec (file:line:col), each loop's spec loaded, `loopkit check` knows it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loopkit.errors import SpecError
from loopkit.fleet import load_fleet, looks_like_fleet
from loopkit.fleet.model import Window

SPEC = """\
    name: {name}
    model: {{id: loopkit/scripted, price: {{input_per_mtok: 1, output_per_mtok: 2}}, replies: ["{{{{ case.answer }}}}"]}}
    params: {{max_tokens: 20}}
    task: {{prompt: "Answer {{{{ case.id }}}}"}}
    inputs: {name}.jsonl
    checkers: [{{name: right, type: equals, expected: "yes"}}]
    stop: {{max_iterations: 1}}
    """


def write_loop(tmp_path: Path, name: str, answers: list[str]) -> Path:
    (tmp_path / f"{name}.jsonl").write_text("".join(f'{{"id": "{name}-{i}", "answer": "{a}"}}\n' for i, a in enumerate(answers)))
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(SPEC.format(name=name)))
    return path


def write_fleet(tmp_path: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_fleet_file_loads_each_loop_with_its_spec_and_defaults(tmp_path: Path) -> None:
    write_loop(tmp_path, "triage", ["yes"])
    write_loop(tmp_path, "summary", ["yes"])
    fleet = load_fleet(write_fleet(tmp_path, """\
        budget: {usd_per_day: 40, total_usd: 400}
        reviewers: {minutes_per_day: 90, usd_per_hour: 90}
        window: "22:00-06:00"
        providers: {openai: {concurrency: 32}}
        loops:
          - {spec: triage.yaml, priority: 1}
          - {spec: summary.yaml, name: digest, share: 0.3, deadline: 2026-12-24}
        """))
    assert [(p.name, p.priority, p.share) for p in fleet.loops] == [("triage", 1, None), ("digest", 2, 0.3)]
    assert fleet.loops[1].deadline is not None and fleet.loops[1].deadline.day == 24
    assert fleet.name == "fleet" and str(fleet.spec.time_window) == "22:00-06:00"


def test_a_window_may_wrap_past_midnight() -> None:
    from datetime import time

    night = Window.parse("22:00-06:00")
    assert night.contains(time(23, 30)) and night.contains(time(5, 59)) and not night.contains(time(6, 0))
    assert not night.contains(time(12, 0))
    day = Window.parse("09:00-17:00")
    assert day.contains(time(9, 0)) and not day.contains(time(17, 0))


def test_bad_fleet_files_name_every_problem_at_file_line_col(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, """\
        budget: {usd_per_dy: 1}
        window: "25:00-06:00"
        loops:
          - {spec: nope.yaml, priority: 0}
        """)
    with pytest.raises(SpecError) as err:
        load_fleet(path)
    problems = err.value.problems
    assert any(p.startswith(f"{path}:1:10: budget.usd_per_dy: unknown key; did you mean `usd_per_day`?") for p in problems)
    assert any(p.startswith(f"{path}:2:9: window:") for p in problems)
    assert any(p.startswith(f"{path}:4:33: loops.0.priority:") for p in problems)


def test_a_loop_spec_with_problems_and_shares_over_one_are_errors(tmp_path: Path) -> None:
    write_loop(tmp_path, "triage", ["yes"])
    (tmp_path / "broken.yaml").write_text("model: loopkit/scripted\n")
    path = write_fleet(tmp_path, """\
        budget: {usd_per_day: 1}
        loops:
          - {spec: broken.yaml}
          - {spec: triage.yaml, share: 0.7}
          - {spec: triage.yaml, share: 0.7}
        """)
    with pytest.raises(SpecError) as err:
        load_fleet(path)
    text = "\n".join(err.value.problems)
    assert f"{path}:2:1: loops: the shares add up to 1.4" in text
    assert f"{path}:3:12: loops.0.spec: the spec broken.yaml has" in text and "broken.yaml:1:" in text
    assert f"{path}:5:12: loops.2.spec: a second loop named 'triage'" in text


def test_a_loop_without_a_price_cannot_run_under_the_fleet_budget(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text('{"id": "1"}\n')
    (tmp_path / "free.yaml").write_text(textwrap.dedent("""\
        model: {id: openai/mystery-model}
        task: {prompt: hi}
        inputs: c.jsonl
        checkers: [{name: any, type: regex, pattern: "."}]
        """))
    path = write_fleet(tmp_path, "budget: {total_usd: 5}\nloops:\n  - {spec: free.yaml}\n")
    with pytest.raises(SpecError) as err:
        load_fleet(path)
    assert "max_tokens" in err.value.problems[0] and err.value.problems[0].startswith(f"{path}:3:")


def test_check_recognises_a_fleet_file(tmp_path: Path, cli) -> None:  # noqa: ANN001
    write_loop(tmp_path, "triage", ["yes", "no"])
    good = write_fleet(tmp_path, "budget: {usd_per_day: 1}\nloops:\n  - {spec: triage.yaml}\n")
    bad = write_fleet(tmp_path, "budget: {}\nloops:\n  - {spec: triage.yaml}\n", name="bad.yaml")
    assert looks_like_fleet(good) and not looks_like_fleet(tmp_path / "triage.yaml")
    ok = cli("check", str(good))
    assert ok.returncode == 0 and "(fleet fleet): 2 case(s)" in ok.stdout
    failed = cli("check", str(bad))
    assert failed.returncode == 2
    assert f"{bad}:1:9: budget: found no cap" in failed.stderr


def test_the_example_fleet_checks_and_runs_offline(tmp_path: Path, cli) -> None:  # noqa: ANN001
    example = Path(__file__).resolve().parents[1] / "examples" / "fleet.yaml"
    assert cli("check", str(example)).returncode == 0
    ran = cli("fleet", "run", str(example), "--json")
    assert ran.returncode == 0, ran.stderr
    import json

    report = json.loads(ran.stdout)
    assert report["status"] == "done" and [lp["loop"] for lp in report["loops"]][-1] == "math"
    status = json.loads(cli("fleet", "status", "nightly", "--json").stdout)
    assert [lp["loop"] for lp in status["loops"]] == ["triage", "extract-invoice", "summarize", "math"]
    assert status["queued"] == 0 and status["budget"]["spent_usd"] == report["spent_usd"]


def test_fleet_status_prints_where_the_money_went_and_what_waits(tmp_path: Path, cli) -> None:  # noqa: ANN001
    write_loop(tmp_path, "triage", ["yes", "no"])
    write_fleet(tmp_path, "budget: {usd_per_day: 1, total_usd: 2}\nreviewers: {minutes_per_day: 30}\n"
                          "loops:\n  - {spec: triage.yaml, share: 0.5}\n")
    assert cli("fleet", "status").returncode == 2  # nothing has run yet: a one-line usage error
    ran = cli("fleet", "run", "fleet.yaml")
    assert ran.returncode == 0, ran.stderr
    shown = cli("fleet", "status", "fleet.yaml")
    assert shown.returncode == 0
    assert "triage" in shown.stdout and "50%" in shown.stdout  # one of two passed
    assert "reviewer minutes today: 0 of 30 used, 30 left" in shown.stdout
    assert "budget: today $" in shown.stdout and "of $1.0000" in shown.stdout


def test_resume_loop_refuses_a_loop_that_is_not_paused_or_not_there(tmp_path: Path, cli) -> None:  # noqa: ANN001
    write_loop(tmp_path, "triage", ["yes"])
    write_fleet(tmp_path, "budget: {usd_per_day: 1}\nloops:\n  - {spec: triage.yaml}\n")
    assert cli("fleet", "run", "fleet.yaml").returncode == 0
    missing = cli("fleet", "resume-loop", "fleet.yaml", "nope")
    assert missing.returncode == 2 and "has no loop 'nope' (its loops: triage)" in missing.stderr
    running = cli("fleet", "resume-loop", "fleet.yaml", "triage")
    assert running.returncode == 2 and "is not paused" in running.stderr


def test_check_warns_of_a_provider_no_loop_uses(tmp_path: Path, cli) -> None:  # noqa: ANN001
    write_loop(tmp_path, "triage", ["yes"])
    write_fleet(tmp_path, "budget: {usd_per_day: 1}\nproviders: {opneai: {concurrency: 4}, loopkit: {concurrency: 2}}\n"
                          "loops:\n  - {spec: triage.yaml}\n")
    checked = cli("check", "fleet.yaml")
    assert checked.returncode == 0
    assert "warning: fleet.yaml: providers.opneai: no loop's model is from this provider (they are from: loopkit)" in checked.stderr
