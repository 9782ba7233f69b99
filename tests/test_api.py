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
    feedback = [r["feedback"] for r in ledger.query("SELECT feedback FROM checks ORDER BY rowid")]
    assert feedback == ["off by 1", "off by 2", "off by 0", "off by 0"]


def test_run_an_ab_test(tmp_path):
    a = loopkit.parse_spec(SPEC)
    b = loopkit.parse_spec(SPEC.replace("name: api", "name: api-b").replace('["{{ case.n }}", ', "["))
    report = loopkit.run_ab(a, b, ledger=loopkit.Ledger(tmp_path / "l.db"), options=loopkit.ABOptions())
    assert report["variants"]["A"]["mean_iterations"] == 2 and report["variants"]["B"]["mean_iterations"] == 1
    assert {"name", "p_value", "interval"} <= set(report["tests"][0])
