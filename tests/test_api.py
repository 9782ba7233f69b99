"""The Python API the CLI is built on: `import loopkit` is enough to run, record and compare loops."""

from __future__ import annotations

import subprocess
import sys

import loopkit

SPEC = """
name: api
model: {id: loopkit/scripted, replies: ["{{ case.n }}", "{{ case.n * 2 }}"]}
task: {prompt: "Double {{ case.n }}"}
inputs: [{id: a, n: 1}, {id: b, n: 2}]
checkers: [{name: exact, type: equals, expected: "{{ case.n * 2 }}"}]
"""


def test_every_public_name_resolves():
    for name in loopkit.__all__:
        assert getattr(loopkit, name) is not None, name


def test_import_loopkit_is_light():
    code = "import sys, loopkit; print(any(m in sys.modules for m in ('litellm', 'openai', 'pydantic', 'jinja2')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_run_a_batch_and_read_it_back(tmp_path):
    spec = loopkit.parse_spec(SPEC)
    ledger = loopkit.Ledger(tmp_path / "l.db")
    result = loopkit.run_batch(spec, ledger=ledger)
    assert (result.status, result.passed, result.finished) == ("done", 2, 2)
    run = ledger.run_detail(ledger.query("SELECT id FROM runs WHERE case_id='b'")[0]["id"])
    assert [i["output"] for i in run["iterations"]] == ["2", "4"]


def test_a_user_checker_may_return_a_check_result(tmp_path):
    (tmp_path / "checks.py").write_text(
        "from loopkit import CheckResult\n"
        "def close(output, case):\n"
        "    off = abs(float(output) - case['n'] * 2)\n"
        "    return CheckResult(score=1 - min(off, 1), passed=off == 0, feedback=f'off by {off:g}')\n")
    (tmp_path / "spec.yaml").write_text(SPEC.replace("type: equals, expected: \"{{ case.n * 2 }}\"",
                                                     "type: python, function: checks.py:close"))
    spec = loopkit.load_spec(tmp_path / "spec.yaml")
    ledger = loopkit.Ledger(tmp_path / "l.db")
    loopkit.run_batch(spec, ledger=ledger)
    rows = ledger.query("SELECT feedback FROM checks JOIN runs ON runs.id = checks.run_id ORDER BY runs.case_id, checks.iteration")
    feedback = [r["feedback"] for r in rows]  # the two cases run concurrently: their rows interleave in any order
    assert feedback == ["off by 1", "off by 0", "off by 2", "off by 0"]


def test_run_an_ab_test(tmp_path):
    a = loopkit.parse_spec(SPEC)
    b = loopkit.parse_spec(SPEC.replace("name: api", "name: api-b").replace('["{{ case.n }}", ', "["))
    report = loopkit.run_ab(a, b, ledger=loopkit.Ledger(tmp_path / "l.db"), options=loopkit.ABOptions())
    assert report["variants"]["A"]["mean_iterations"] == 2 and report["variants"]["B"]["mean_iterations"] == 1
    assert {"name", "p_value", "interval"} <= set(report["tests"][0])


def test_check_returns_every_problem_and_the_worst_case_per_case(tmp_path):
    (tmp_path / "good.yaml").write_text(SPEC.replace("name: api", "name: good\nparams: {max_tokens: 5}"))
    (tmp_path / "bad.yaml").write_text("model: gpt-4o-mimi\ntask: {prompt: go}\nbudget: {usd: 1}\n")
    report = loopkit.check([tmp_path / "good.yaml", tmp_path / "bad.yaml"])
    good, bad = report.specs
    assert not report.ok and good.ok and not bad.ok
    assert (good.name, good.cases, good.worst_case.usd, good.worst_case.calls, good.worst_case.case_id) == ("good", 2, 0.0, 3, "a")
    assert any("needs `max_tokens`" in p for p in bad.problems) and report.problems == bad.problems
    assert report.to_dict()["specs"][0]["worst_case_tokens_per_case"] == good.worst_case.tokens
