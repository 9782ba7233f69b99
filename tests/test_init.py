"""`loopkit init NAME`: a starter loop that `check`s clean and runs offline at once, and never overwrites."""

from __future__ import annotations

import json

from loopkit.spec import load_spec, parse_spec

FILES = ("qa.yaml", "qa.cases.jsonl", "qa_checks.py")


def test_init_writes_a_spec_its_cases_and_its_checker(cli, tmp_path):
    done = cli("init", "qa")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".loopkit") == sorted(FILES)
    assert "wrote qa.yaml, qa.cases.jsonl, qa_checks.py" in done.stdout
    spec = load_spec(tmp_path / "qa.yaml")
    assert spec.name == "qa" and spec.model.scripted and spec.inputs == "qa.cases.jsonl"
    assert [c.function for c in spec.checkers] == ["qa_checks.py:check"]


def test_the_starter_loop_checks_clean_and_runs_offline_and_passes(cli):
    assert cli("init", "qa").returncode == 0
    checked = cli("check", "qa.yaml", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["problems"] == [] and json.loads(checked.stdout)["specs"][0]["cases"] == 3
    ran = cli("run", "qa.yaml", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["passed"] == report["total"] == 3
    # the first reply is a sentence the python checker refuses; its feedback gets a one-word answer
    assert {r["iterations"] for r in report["runs"]} == {2}
    shown = json.loads(cli("show", report["runs"][0]["id"], "--json").stdout)
    assert shown["iterations"][0]["checks"][0]["feedback"] == "expected one word, found 4"


def test_the_commented_real_model_line_is_a_working_replacement(cli, tmp_path):
    cli("init", "qa")
    text = (tmp_path / "qa.yaml").read_text()
    (suggested,) = [line.removeprefix("# ") for line in text.splitlines() if line.startswith("# model: ")]
    block = "model:\n  id: loopkit/scripted\n  replies: "
    start = text.index(block)
    end = text.index("\n", start + len(block))
    spec = parse_spec(text[:start] + suggested + text[end:], path=tmp_path / "qa.yaml")  # prices known, budget ok
    assert spec.model.id == "gpt-4o-mini" and spec.model.replies is None


def test_init_refuses_to_overwrite_and_writes_nothing(cli, tmp_path):
    (tmp_path / "qa_checks.py").write_text("# mine\n")
    done = cli("init", "qa")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: qa_checks.py already exists; loopkit init writes only new files (choose another NAME)"]
    assert not (tmp_path / "qa.yaml").exists() and not (tmp_path / "qa.cases.jsonl").exists()
    assert (tmp_path / "qa_checks.py").read_text() == "# mine\n"


def test_init_into_a_new_folder_and_with_json(cli, tmp_path):
    done = cli("init", "evals/qa.yaml", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"spec": "evals/qa.yaml", "files": [f"evals/{f}" for f in FILES]}
    assert cli("check", "evals/qa.yaml").returncode == 0


def test_a_name_that_cannot_be_a_file_stem_is_refused(cli, tmp_path):
    done = cli("init", "my loop")
    assert done.returncode == 2 and "cannot name a loop 'my loop'" in done.stderr
    assert list(tmp_path.glob("*.yaml")) == []
