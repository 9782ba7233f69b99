"""`loopkit ab`: paired A/B tests with anytime-valid early stopping (SPEC.md §3, `ab`)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import textwrap

import pytest

from fake_llm import Reply
from loopkit import ab as ab_module
from loopkit.ab import ABOptions, ABTest, run_ab
from loopkit.ab_report import ab_report, report_tests
from loopkit.stats import SequentialMonitor
from loopkit.ledger import Ledger
from loopkit.spec import load_spec

CASES = 60


def variant(name: str, replies: str, *, cases: int = CASES, price: str = "{input_per_mtok: 1, output_per_mtok: 2}",
            extra: str = "", max_iterations: int = 2) -> str:
    """A doubling task on the scripted model; `replies` decides whether (and when) it passes."""
    inline = ", ".join(f"{{id: c{i}, x: {i}}}" for i in range(cases))
    return textwrap.dedent(f"""
        name: {name}
        model: {{id: loopkit/scripted, replies: {replies}, price: {price}}}
        params: {{max_tokens: 20}}
        task: {{prompt: "Double {{{{ case.x }}}}", feedback: "RETRY {{{{ feedback }}}}"}}
        inputs: [{inline}]
        checkers: [{{name: exact, type: equals, expected: "{{{{ case.x * 2 }}}}"}}]
        stop: {{max_iterations: {max_iterations}}}
        """) + textwrap.dedent(extra)


RIGHT = '["{{ case.x * 2 }}"]'
WRONG_THEN_RIGHT = '["wrong", "{{ case.x * 2 }}"]'   # passes on iteration 2, at twice the cost
ALWAYS_WRONG = '["wrong"]'
SOMETIMES = '["wrong", "{{ case.x * 2 if case.x % 3 else \'no\' }}"]'  # passes 2 cases in 3, on iteration 2


@pytest.fixture
def inproc(tmp_path):
    """The CLI in this process (no interpreter start-up): for commands that succeed."""
    from typer.testing import CliRunner

    import loopkit.cli.commands  # noqa: F401 - registers the commands
    from loopkit.cli import app

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, ["--ledger", str(tmp_path / "ledger.db"), *args])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    return run


@pytest.fixture
def pair(write_spec):
    def make(a_replies: str, b_replies: str, **kw) -> tuple[str, str]:
        a = write_spec(variant("baseline", a_replies, **kw), name="a.yaml")
        b = write_spec(variant("candidate", b_replies, **kw), name="b.yaml")
        return str(a), str(b)

    return make


def test_a_clearly_better_b_is_named_the_winner_and_the_test_stops_early(cli, pair, tmp_path):
    a, b = pair(ALWAYS_WRONG, RIGHT)
    done = cli("ab", a, b, "--concurrency", "4", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    verdict = report["verdict"]
    assert verdict["winner"] == "candidate" and verdict["winner_variant"] == "B"
    assert verdict["text"].startswith("B (candidate) is better: success +100 pts (95% CI +")
    assert report["stopped_early"] is True and "stopped after" in verdict["text"]
    assert report["pairs_run"] < report["pairs_available"] == CASES
    assert report["cases_run"] == report["pairs_run"]
    assert report_tests(report)["success_sequential"]["decided_after"] <= report["pairs_run"]
    assert report["variants"]["A"]["success_rate"] == 0 and report["variants"]["B"]["success_rate"] == 1
    assert report["variants"]["A"]["spec"] == "baseline" and report["variants"]["B"]["mean_iterations"] == 1

    ledger = Ledger(tmp_path / "ledger.db")
    batch = ledger.batch(report["batch_id"])
    assert batch["kind"] == "ab" and batch["status"] == "done"
    assert batch["spec_hash"] == load_spec(a).hash and batch["spec_hash_b"] == load_spec(b).hash
    assert {r["name"] for r in ledger.query("SELECT name FROM specs")} == {"baseline", "candidate"}
    runs = ledger.query("SELECT variant, case_id, spec_name FROM runs WHERE batch_id=?", (report["batch_id"],))
    assert sorted({(r["variant"], r["spec_name"]) for r in runs}) == [("A", "baseline"), ("B", "candidate")]
    # paired: every case that ran, ran under both variants
    by_case: dict[str, set[str]] = {}
    for r in runs:
        by_case.setdefault(r["case_id"], set()).add(r["variant"])
    assert all(v == {"A", "B"} for v in by_case.values())


def test_without_early_stop_every_case_runs_and_the_order_of_a_and_b_is_randomised_per_case(write_spec, tmp_path):
    a = load_spec(write_spec(variant("baseline", ALWAYS_WRONG, cases=20), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", RIGHT, cases=20), name="b.yaml"))
    ledger = Ledger(tmp_path / "l.db")
    report = run_ab(a, b, ledger=ledger, options=ABOptions(early_stop=False, concurrency=1, seed=7))
    assert report["pairs_run"] == 20 and report["stopped_early"] is False
    assert report["verdict"]["winner"] == "candidate" and "after 20 of 20 cases" in report["verdict"]["text"]
    rows = ledger.query("SELECT variant, case_id FROM runs WHERE batch_id=? ORDER BY started_at, rowid", (report["batch_id"],))
    firsts = [rows[i]["variant"] for i in range(0, len(rows), 2)]
    assert [rows[i]["case_id"] for i in range(0, len(rows), 2)] == [f"c{i}" for i in range(20)]  # interleaved by case
    assert all(rows[i]["case_id"] == rows[i + 1]["case_id"] for i in range(0, len(rows), 2))
    assert 0 < firsts.count("A") < 20  # the order varies ...
    again = run_ab(a, b, ledger=ledger, options=ABOptions(early_stop=False, concurrency=1, seed=7, no_cache=True))
    rows2 = ledger.query("SELECT variant FROM runs WHERE batch_id=? ORDER BY started_at, rowid", (again["batch_id"],))
    assert [rows2[i]["variant"] for i in range(0, len(rows2), 2)] == firsts  # ... and is seeded


def test_two_identical_variants_are_not_declared_different(inproc, write_spec):
    spec = str(write_spec(variant("same", WRONG_THEN_RIGHT, cases=30), name="same.yaml"))
    report = json.loads(inproc("ab", spec, spec, "--json", "--no-cache"))
    assert report["verdict"]["winner"] is None and report["stopped_early"] is False and report["pairs_run"] == 30
    assert report["verdict"]["text"].startswith("no significant difference after 30 cases (would need about ")
    assert "to detect a 5-pt change" in report["verdict"]["text"]
    assert report_tests(report)["success_mcnemar"]["p_value"] == 1.0
    assert report["deltas"]["success_rate"]["estimate"] == 0


def test_balanced_disagreement_is_not_declared_a_difference(write_spec, tmp_path):
    # A passes the even cases, B the odd ones: every pair is discordant, but neither is better.
    a = load_spec(write_spec(variant("even", '["{{ case.x * 2 if case.x % 2 == 0 else -1 }}"]', max_iterations=1), name="a.yaml"))
    b = load_spec(write_spec(variant("odd", '["{{ case.x * 2 if case.x % 2 == 1 else -1 }}"]', max_iterations=1), name="b.yaml"))
    report = run_ab(a, b, ledger=Ledger(tmp_path / "l.db"), options=ABOptions(concurrency=2))
    assert report["verdict"]["winner"] is None and report["pairs_run"] == CASES
    assert report_tests(report)["success_mcnemar"]["discordant"] == {"a_only": 30, "b_only": 30}


def test_the_sequential_tests_keep_false_winners_under_alpha_on_null_data():
    rng = random.Random(1)
    false_winners = 0
    for _ in range(200):
        monitor = SequentialMonitor(alpha=0.05, target_n=100)
        for _ in range(100):
            a_ok, b_ok = rng.random() < 0.5, rng.random() < 0.5
            monitor.update(a_ok, b_ok, float(b_ok) - float(a_ok))
            if monitor.decided:
                false_winners += 1
                break
    assert false_winners <= 200 * 0.05  # each test at alpha/2: the union stays under alpha


def test_table_and_json_carry_intervals_and_p_values_and_show_rerenders_the_same_report(cli, inproc, pair, tmp_path):
    a, b = pair(SOMETIMES, RIGHT)   # B always passes, in one iteration: better and cheaper
    summary = tmp_path / "summary.md"
    done = cli("ab", a, b, "--concurrency", "4", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for label in ("success rate", "mean reward", "mean cost", "cost per success", "mean iterations", "latency p50 (wall)",
                  "latency p95 (wall)", "escalations", "Δ B − A [95% CI]", "anytime-valid tests", "verdict:"):
        assert label in text, label
    assert "-1.00 [-1.00, -1.00]" in text  # iterations: B - A with its interval
    assert "cheaper per success" in text
    md = summary.read_text()
    assert md.startswith("### loopkit ab · baseline (A) vs candidate (B)") and "| mean iterations |" in md

    batch_id = json.loads(inproc("runs", "--json", "--limit", "1"))[0]["batch_id"]
    report = json.loads(inproc("ab", "--show", batch_id[:8], "--json"))
    assert json.loads(inproc("show", batch_id[:8], "--json")) == report
    assert set(report["variants"]) == {"A", "B"}
    assert {"success_mcnemar", "reward_wilcoxon", "iterations_wilcoxon", "cost_bootstrap", "success_sequential",
            "reward_sequential"} <= set(report_tests(report))
    for name, t in report_tests(report).items():
        assert 0 <= t["p_value"] <= 1, name
        assert t["ci_low"] is not None and t["ci_high"] is not None and t["ci_low"] <= t["ci_high"], name
    for name, d in report["deltas"].items():
        if d["estimate"] is not None:
            assert d["ci_low"] <= d["ci_high"], name
    cost = report["deltas"]["mean_cost_usd"]
    assert cost["estimate"] < 0 and cost["ci_high"] < 0 and cost["p_value"] < 0.05
    assert report["verdict"]["winner"] == "candidate" and report_tests(report)["success_sequential"]["winner"] == "B"
    assert report_tests(report)["success_mcnemar"]["discordant"]["a_only"] == 0
    shown = inproc("show", batch_id[:8])
    assert "verdict:" in shown and "anytime-valid tests" in shown


def test_a_cheaper_variant_with_equal_success_is_not_named_the_winner(write_spec, tmp_path):
    # Winners come only from the anytime-valid success and reward tests; cost alone does not decide.
    a = load_spec(write_spec(variant("slow", WRONG_THEN_RIGHT, cases=20), name="a.yaml"))
    b = load_spec(write_spec(variant("fast", RIGHT, cases=20), name="b.yaml"))
    report = run_ab(a, b, ledger=Ledger(tmp_path / "l.db"))
    assert report["verdict"]["winner"] is None
    assert report["deltas"]["mean_cost_usd"]["ci_high"] < 0


def test_exit_2_for_a_bad_spec_names_every_problem_in_both_files(cli, write_spec, pair):
    good, _ = pair(RIGHT, RIGHT)
    bad = write_spec("model: {id: loopkit/scripted, replies: [x]}\ntask: {prompt: go}\nchekers: []\n", name="bad.yaml")
    worse = write_spec("model: {id: loopkit/scripted, replies: [x]}\nstop: {max_iterations: five}\ntask: {prompt: go}\n",
                       name="worse.yaml")
    done = cli("ab", str(bad), str(worse))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{bad}:3:1" in done.stderr and f"{worse}:2:" in done.stderr
    assert cli("ab", good).returncode == 2
    assert cli("ab", good, good, "--alpha", "1.5").returncode == 2


def test_exit_3_when_the_batch_budget_keeps_cases_from_running(cli, pair):
    a, b = pair(ALWAYS_WRONG, RIGHT, price="{input_per_mtok: 1000000, output_per_mtok: 1000000}")
    done = cli("ab", a, b, "--max-usd", "120", "--concurrency", "1", "--json", "--no-cache")
    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "budget" and report["not_run_budget"] > 0 and report["exit_code"] == 3
    assert 0 < report["pairs_run"] < CASES and report["stopped_early"] is False
    assert "the batch budget stopped the test after" in report["verdict"]["text"]
    assert report["cost_usd"] <= 120


def test_exit_4_when_runs_end_in_errors(cli, pair, write_spec):
    a, _ = pair(RIGHT, RIGHT)
    broken = write_spec(variant("broken", '["{{ case.missing }}"]'), name="broken.yaml")  # fails at call time
    done = cli("ab", a, str(broken), "--json")
    assert done.returncode == 4, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] > 0 and report["variants"]["B"]["errors"] > 0
    assert report["verdict"]["winner"] == "baseline"


def test_ctrl_c_marks_the_batch_interrupted(write_spec, tmp_path, monkeypatch):
    a = load_spec(write_spec(variant("a", ALWAYS_WRONG), name="a.yaml"))
    b = load_spec(write_spec(variant("b", RIGHT), name="b.yaml"))
    real = ab_module.run_case
    started = []

    async def interrupting(*args, **kw):
        started.append(1)
        if len(started) == 5:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers; the batch's handler cancels it
            await asyncio.sleep(0)
        return await real(*args, **kw)

    monkeypatch.setattr(ab_module, "run_case", interrupting)
    ledger = Ledger(tmp_path / "l.db")
    test = ABTest(a, b, ledger, ABOptions(concurrency=2, early_stop=False))
    with pytest.raises(KeyboardInterrupt):
        test.run()
    assert ledger.batch(test.batch_id)["status"] == "interrupted"
    report = ab_report(ledger, test.batch_id)
    assert report["status"] == "interrupted" and report["pairs_run"] < CASES
    assert report["verdict"]["winner"] is None or "interrupted" in report["verdict"]["text"]


def test_the_winner_is_found_through_the_real_litellm_path(write_spec, fake_llm, tmp_path):
    """B's prompt asks for the answer the fake server gives right; A's gets a wrong one."""

    def responder(body: dict) -> Reply:
        prompt = body["messages"][-1]["content"]
        x = int(prompt.rsplit(" ", 1)[1])
        return Reply(str(2 * x) if prompt.startswith("Carefully") else "no idea", prompt_tokens=100, completion_tokens=10)

    fake_llm.responder = responder
    inline = ", ".join(f"{{id: c{i}, x: {i}}}" for i in range(40))

    def spec(name: str, prompt: str) -> str:
        return textwrap.dedent(f"""
            name: {name}
            model: {{id: openai/test-model, api_base: "{fake_llm.base_url}", price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
            params: {{max_tokens: 20}}
            task: {{prompt: "{prompt} {{{{ case.x }}}}"}}
            inputs: [{inline}]
            checkers: [{{name: exact, type: equals, expected: "{{{{ case.x * 2 }}}}"}}]
            stop: {{max_iterations: 1}}
            """)

    a = load_spec(write_spec(spec("plain", "Double"), name="a.yaml"))
    b = load_spec(write_spec(spec("careful", "Carefully double"), name="b.yaml"))
    ledger = Ledger(tmp_path / "l.db")
    report = run_ab(a, b, ledger=ledger, options=ABOptions(concurrency=4))
    assert report["verdict"]["winner"] == "careful" and report["stopped_early"]
    assert report["pairs_run"] < 40 and fake_llm.count == report["runs"]
    per_call = 100 * 1e-6 + 10 * 2e-6
    assert abs(report["variants"]["A"]["mean_cost_usd"] - per_call) < 1e-12
    assert report["variants"]["B"]["cost_per_success_usd"] == pytest.approx(per_call)
    assert report["variants"]["A"]["model_latency_ms"]["p50"] > 0
    assert report["exit_code"] == 0


def test_repeat_and_inputs_make_one_pair_per_case_and_repeat(write_spec, tmp_path):
    a = load_spec(write_spec(variant("baseline", ALWAYS_WRONG, cases=2), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", RIGHT, cases=2), name="b.yaml"))
    cases = tmp_path / "more.jsonl"
    cases.write_text("".join(json.dumps({"id": f"m{i}", "x": i}) + "\n" for i in range(5)))
    ledger = Ledger(tmp_path / "l.db")
    report = run_ab(a, b, ledger=ledger, options=ABOptions(inputs=str(cases), repeat=2, early_stop=False))
    assert (report["cases_available"], report["pairs_available"], report["pairs_run"], report["runs"]) == (5, 10, 10, 20)
    assert report["cases_run"] == 5 and "after 10 of 10 pairs" in report["verdict"]["text"]
    keys = ledger.query("SELECT case_id, repeat, variant FROM runs WHERE batch_id=?", (report["batch_id"],))
    assert sorted((k["case_id"], k["repeat"], k["variant"]) for k in keys) == sorted(
        (f"m{i}", r, v) for i in range(5) for r in (0, 1) for v in "AB")


def test_a_case_that_b_cannot_render_stops_the_test_before_any_call(cli, write_spec):
    a = write_spec(variant("baseline", RIGHT, cases=3), name="a.yaml")
    b = write_spec(variant("candidate", RIGHT, cases=3).replace("Double {{ case.x }}", "Double {{ case.y }}"), name="b.yaml")
    done = cli("ab", str(a), str(b))
    assert done.returncode == 2 and "case.y" not in done.stdout and "Traceback" not in done.stderr
    assert "'c0'" in done.stderr
