"""The Python API the CLI is built on: `import loopkit` is enough to run, record and compare loops."""

from __future__ import annotations

import subprocess
import sys

import pytest

import loopkit

SPEC = """
name: api
model: {id: loopkit/scripted, replies: ["{{ case.n }}", "{{ case.n * 2 }}"]}
task: {prompt: "Double {{ case.n }}"}
inputs: [{id: a, n: 1}, {id: b, n: 2}]
checkers: [{name: exact, type: equals, expected: "{{ case.n * 2 }}"}]
"""


def test_star_import_gives_exactly_the_public_names_and_each_is_loopkits_own():
    namespace: dict = {}
    exec("from loopkit import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(loopkit.__all__)
    for name in loopkit.__all__:
        assert namespace[name].__module__.startswith("loopkit."), name  # not a stray re-export of a dependency


def test_the_public_names_work_together_as_a_user_writes_them(tmp_path):
    import asyncio

    from loopkit.inputs import Case
    from loopkit.models import ModelPool

    spec = loopkit.parse_spec(SPEC)
    assert isinstance(spec, loopkit.LoopSpec) and spec.name == "api"
    ledger = loopkit.Ledger(tmp_path / "l.db")
    outcome = asyncio.run(loopkit.run_case(spec, Case("solo", {"n": 3}), clients=ModelPool().client, recorder=ledger))
    assert (outcome.status, outcome.iterations) == ("passed", 2)
    detail = loopkit.show(outcome.run_id, ledger=ledger)
    assert isinstance(detail, loopkit.RunDetail) and [i["output"] for i in detail.iterations] == ["3", "6"]
    result = loopkit.run_batch(spec, ledger=ledger)
    with pytest.raises(loopkit.LoopkitError, match="is a run"):
        loopkit.resume(outcome.run_id, ledger=ledger)
    assert loopkit.resume(result.batch_id, ledger=ledger).passed == 2  # nothing left to run: both cases had passed
    with pytest.raises(loopkit.LoopkitError) as refused:
        loopkit.show("ffffffff", ledger=ledger)
    assert refused.value.exit_code == 2 and "no run or batch" in str(refused.value)


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


def test_show_reads_back_a_batch_its_runs_and_an_ab_test(tmp_path):
    path = tmp_path / "l.db"
    spec = loopkit.parse_spec(SPEC.replace('replies: [', 'price: {input_per_mtok: 1000, output_per_mtok: 1000}, replies: ['))
    first = loopkit.run_batch(spec, ledger=loopkit.Ledger(path))

    summary = loopkit.show(first.batch_id[:8], ledger=path)  # a prefix, like the CLI
    assert isinstance(summary, loopkit.BatchSummary)
    assert (summary.id, summary.spec_name, summary.status, summary.runs, summary.passed) == (first.batch_id, "api", "done", 2, 2)
    assert (summary.pass_rate, summary.statuses, summary.stop_reasons, summary.errors) == (1.0, {"passed": 2}, {"passed": 2}, [])
    assert summary.cost_usd == first.cost_usd > 0 and summary.cache.cached == 0
    assert sorted(r["case_id"] for r in summary.first_runs) == ["a", "b"]

    run = loopkit.show(summary.first_runs[0]["id"], ledger=path)
    assert isinstance(run, loopkit.RunDetail)
    assert (run.status, run.success, run.batch_id, len(run.iterations), len(run.calls)) == ("passed", True, first.batch_id, 2, 2)
    assert run.cost_usd == sum(c["cost_usd"] for c in run.calls)

    again = loopkit.run_batch(spec, ledger=loopkit.Ledger(path))  # every call answered from the cache
    repeat = loopkit.show(again.batch_id, ledger=path)
    assert (repeat.cost_usd, repeat.cache.calls, repeat.cache.cached) == (0.0, 4, 4)
    assert abs(repeat.cache.would_have_cost_usd - first.cost_usd) < 1e-12

    b = loopkit.parse_spec(SPEC.replace("name: api", "name: api-b").replace('["{{ case.n }}", ', "["))
    live = loopkit.run_ab(spec, b, ledger=loopkit.Ledger(path), options=loopkit.ABOptions(no_cache=True))
    ab = loopkit.show(live["batch_id"], ledger=path)
    assert isinstance(ab, loopkit.ABReport)
    assert (ab.batch_id, ab.winner, ab.verdict, ab.variants["B"]["mean_iterations"]) == (
        live["batch_id"], live["verdict"]["winner"], live["verdict"], 1)


def test_show_reads_without_loading_a_model_library(tmp_path):
    loopkit.run_batch(loopkit.parse_spec(SPEC), ledger=loopkit.Ledger(tmp_path / "l.db"))
    code = ("import sys, loopkit; s = loopkit.show(loopkit.Ledger(sys.argv[1]).query('SELECT id FROM batches')[0]['id'], "
            "ledger=sys.argv[1]); print(s.passed, 'litellm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "l.db")], capture_output=True, text=True)
    assert done.stdout.split() == ["2", "False"], done.stderr
