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
from loopkit.models import ScriptedClient
from loopkit.stats import SequentialMonitor, e_value
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
    assert verdict["winner"] == "candidate" and verdict["winner_variant"] == "B" and verdict["kind"] == "better"
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


def test_without_early_stop_every_case_runs_in_a_seeded_shuffled_order_with_a_and_b_order_drawn_per_pair(write_spec, tmp_path):
    a = load_spec(write_spec(variant("baseline", ALWAYS_WRONG, cases=20), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", RIGHT, cases=20), name="b.yaml"))
    ledger = Ledger(tmp_path / "l.db")

    def order(report: dict) -> tuple[list[str], list[str]]:
        rows = ledger.query("SELECT variant, case_id FROM runs WHERE batch_id=? ORDER BY started_at, rowid", (report["batch_id"],))
        assert all(rows[i]["case_id"] == rows[i + 1]["case_id"] for i in range(0, len(rows), 2))  # a pair's runs back to back
        return [rows[i]["case_id"] for i in range(0, len(rows), 2)], [rows[i]["variant"] for i in range(0, len(rows), 2)]

    report = run_ab(a, b, ledger=ledger, options=ABOptions(early_stop=False, concurrency=1, seed=7))
    assert report["pairs_run"] == 20 and report["stopped_early"] is False and report["seed"] == 7
    assert report["verdict"]["winner"] == "candidate" and "after 20 of 20 cases" in report["verdict"]["text"]
    cases, firsts = order(report)
    assert sorted(cases) == sorted(f"c{i}" for i in range(20)) and cases != [f"c{i}" for i in range(20)]  # shuffled
    assert 0 < firsts.count("A") < 20  # which variant goes first varies ...
    again = run_ab(a, b, ledger=ledger, options=ABOptions(early_stop=False, concurrency=1, seed=7, no_cache=True))
    assert order(again) == (cases, firsts)  # ... and the whole order is the seed's
    other = run_ab(a, b, ledger=ledger, options=ABOptions(early_stop=False, concurrency=1, seed=8, no_cache=True))
    assert order(other)[0] != cases
    drawn = run_ab(a, b, ledger=ledger, options=ABOptions(early_stop=False, concurrency=1, no_cache=True))
    saved = json.loads(ledger.batch(drawn["batch_id"])["options"])
    assert saved["seed"] == drawn["seed"] and isinstance(drawn["seed"], int)  # a drawn seed is recorded and reported
    assert f"--seed {drawn['seed']}" in " ".join(drawn["notes"])


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


EVEN_PASS = '["{{ case.x * 2 if case.x % 2 == 0 else -1 }}"]'
ODD_PASS = '["{{ case.x * 2 if case.x % 2 == 1 else -1 }}"]'


def test_b_failures_iterating_longer_at_high_concurrency_do_not_make_a_winner(write_spec, tmp_path, monkeypatch):
    """Equal success (every pair discordant, half each way); B's failures iterate again, so they finish last.

    Fed in the order pairs finish, the monitor saw B's quick wins first and named B after 32 of 60
    cases. Fed in scheduling order, the finishing order does not matter."""
    real = ScriptedClient.complete

    async def with_latency(self, *args):  # each call takes a few event-loop turns, as a model call takes time
        for _ in range(5):
            await asyncio.sleep(0)
        return await real(self, *args)

    monkeypatch.setattr(ScriptedClient, "complete", with_latency)
    a = load_spec(write_spec(variant("a", EVEN_PASS, max_iterations=1), name="a.yaml"))
    b = load_spec(write_spec(variant("b", ODD_PASS, max_iterations=6), name="b.yaml"))
    report = run_ab(a, b, ledger=Ledger(tmp_path / "l.db"), options=ABOptions(concurrency=64, seed=3, no_cache=True))
    assert report["verdict"]["winner"] is None and report["stopped_early"] is False and report["cases_run"] == CASES
    assert report["variants"]["B"]["mean_iterations"] > report["variants"]["A"]["mean_iterations"] == 1


def test_a_file_sorted_by_which_variant_wins_does_not_make_a_winner(write_spec, tmp_path):
    # A wins the first 30 cases, B the last 30: in file order the first looks all favour A.
    a = load_spec(write_spec(variant("a", '["{{ case.x * 2 if case.x < 30 else -1 }}"]', max_iterations=1), name="a.yaml"))
    b = load_spec(write_spec(variant("b", '["{{ case.x * 2 if case.x >= 30 else -1 }}"]', max_iterations=1), name="b.yaml"))
    report = run_ab(a, b, ledger=Ledger(tmp_path / "l.db"), options=ABOptions(concurrency=4, seed=3))
    assert report["verdict"]["winner"] is None and report["cases_run"] == CASES


def test_repeats_of_a_case_are_one_unit_of_evidence(write_spec, tmp_path):
    # A passes the even cases every time, B the odd ones: 10 repeats of one case are one piece of evidence, not 10.
    a = load_spec(write_spec(variant("a", EVEN_PASS, cases=20, max_iterations=1), name="a.yaml"))
    b = load_spec(write_spec(variant("b", ODD_PASS, cases=20, max_iterations=1), name="b.yaml"))
    report = run_ab(a, b, ledger=Ledger(tmp_path / "l.db"), options=ABOptions(concurrency=8, seed=3, repeat=10))
    assert report["verdict"]["winner"] is None and (report["cases_run"], report["pairs_run"]) == (20, 200)
    assert report_tests(report)["success_sequential"]["e_value"] == pytest.approx(e_value(10, 10))
    assert "the case is the unit" in " ".join(report["notes"])


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
        assert t["interval"] == [t["ci_low"], t["ci_high"]], name
    assert {"winner", "text"} <= set(report["verdict"]) and isinstance(report["seed"], int)
    for name, d in report["deltas"].items():
        if d["estimate"] is not None:
            assert d["ci_low"] <= d["ci_high"], name
    cost = report["deltas"]["mean_cost_usd"]
    assert cost["estimate"] < 0 and cost["ci_high"] < 0 and cost["p_value"] < 0.05
    assert report["verdict"]["winner"] == "candidate" and report_tests(report)["success_sequential"]["winner"] == "B"
    assert report_tests(report)["success_mcnemar"]["discordant"]["a_only"] == 0
    shown = inproc("show", batch_id[:8])
    assert "verdict:" in shown and "anytime-valid tests" in shown


def test_a_reward_winner_that_passes_less_often_says_so(write_spec, tmp_path):
    # Reward: 1 point for the answer, 3 for explaining it; passing needs 0.25. A answers 90% of the cases and never
    # explains; B answers and explains 80%: B earns far more reward but passes less often.
    def spec(name: str, reply: str) -> str:
        return textwrap.dedent(f"""
            name: {name}
            model: {{id: loopkit/scripted, replies: ['{reply}'], price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
            params: {{max_tokens: 20}}
            task: {{prompt: "Double {{{{ case.x }}}}"}}
            inputs: [{", ".join(f"{{id: c{i}, x: {i}}}" for i in range(CASES))}]
            checkers:
              - {{name: answer, type: contains, expected: "{{{{ case.x * 2 }}}}"}}
              - {{name: explained, type: contains, expected: because, weight: 3}}
            reward: {{pass: 0.25}}
            stop: {{max_iterations: 1}}
            """)

    a = load_spec(write_spec(spec("terse", "{{ case.x * 2 if case.x % 10 else \"no\" }}"), name="a.yaml"))
    b = load_spec(write_spec(spec("verbose", "{{ (case.x * 2) ~ \" because\" if case.x % 5 else \"no\" }}"), name="b.yaml"))
    report = run_ab(a, b, ledger=Ledger(tmp_path / "l.db"), options=ABOptions(early_stop=False, seed=1))
    verdict = report["verdict"]
    assert (report["variants"]["A"]["success_rate"], report["variants"]["B"]["success_rate"]) == (0.9, 0.8)
    assert verdict["winner_variant"] == "B" and verdict["decided_by"] == "reward" and verdict["against"] == "success"
    assert "against the success direction: B passes less often (-10 pts, not significant)" in verdict["text"]


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
    errors = report["counted_as_failures"]["error"]
    assert errors == report["variants"]["B"]["errors"] == report["variants"]["B"]["runs"]
    assert f"{errors} run(s) that ended in error and 0 waiting for review count as failures" in " ".join(report["notes"])


def _interrupt_at(monkeypatch, start: int) -> None:
    """Ctrl-C as the `start`-th run starts."""
    real = ab_module.run_case
    started = []

    async def interrupting(*args, **kw):
        started.append(1)
        if len(started) == start:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers; the batch's handler cancels it
            await asyncio.sleep(0)
        return await real(*args, **kw)

    monkeypatch.setattr(ab_module, "run_case", interrupting)


def test_ctrl_c_marks_the_batch_interrupted(write_spec, tmp_path, monkeypatch):
    a = load_spec(write_spec(variant("a", ALWAYS_WRONG), name="a.yaml"))
    b = load_spec(write_spec(variant("b", RIGHT), name="b.yaml"))
    _interrupt_at(monkeypatch, 5)
    ledger = Ledger(tmp_path / "l.db")
    test = ABTest(a, b, ledger, ABOptions(concurrency=2, early_stop=False))
    with pytest.raises(KeyboardInterrupt):
        test.run()
    assert ledger.batch(test.batch_id)["status"] == "interrupted"
    report = ab_report(ledger, test.batch_id)
    assert report["status"] == "interrupted" and report["pairs_run"] < CASES
    assert report["verdict"]["winner"] is None or "interrupted" in report["verdict"]["text"]


def test_resume_finishes_an_ab_batch_without_running_a_finished_run_again(cli, pair, tmp_path, monkeypatch):
    a, b = pair(SOMETIMES, RIGHT)
    ledger = Ledger(tmp_path / "ledger.db")
    test = ABTest(load_spec(a), load_spec(b), ledger, ABOptions(concurrency=4, early_stop=False, seed=5))
    _interrupt_at(monkeypatch, 21)
    with pytest.raises(KeyboardInterrupt):
        test.run()
    monkeypatch.undo()
    finished = {r["id"]: r["n"] for r in ledger.query(
        "SELECT r.id, COUNT(c.id) AS n FROM runs r LEFT JOIN calls c ON c.run_id = r.id WHERE r.batch_id=? "
        "AND r.status IN ('passed', 'failed') GROUP BY r.id", (test.batch_id,))}
    assert 0 < len(finished) < 2 * CASES

    done = cli("resume", test.batch_id[:10], "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "done" and report["cases_run"] == CASES and report["seed"] == 5
    assert report == ab_report(ledger, test.batch_id)
    rows = ledger.query("SELECT case_id, repeat, variant, COUNT(*) AS n FROM runs WHERE batch_id=? AND status IN ('passed', 'failed') "
                        "GROUP BY case_id, repeat, variant", (test.batch_id,))
    assert len(rows) == 2 * CASES and all(r["n"] == 1 for r in rows)  # every run once, none twice
    again = {r["id"]: r["n"] for r in ledger.query(
        f"SELECT run_id AS id, COUNT(*) AS n FROM calls WHERE run_id IN ({','.join('?' * len(finished))}) GROUP BY run_id",
        list(finished))}
    assert again == finished  # no new call for a run that had finished
    resumes = ledger.query("SELECT tags FROM batches WHERE kind='resume'")
    assert [json.loads(r["tags"])["resumes"] for r in resumes] == [test.batch_id]


def test_a_resumed_ab_test_feeds_the_finished_cases_to_the_tests_first(cli, pair, tmp_path, monkeypatch):
    a, b = pair(ALWAYS_WRONG, RIGHT)
    ledger = Ledger(tmp_path / "ledger.db")
    test = ABTest(load_spec(a), load_spec(b), ledger, ABOptions(concurrency=2, seed=5))
    _interrupt_at(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        test.run()
    monkeypatch.undo()
    before = ab_report(ledger, test.batch_id)
    assert 0 < before["cases_run"] < 9 and before["verdict"]["winner"] is None  # B needs 9 discordant cases at alpha/2

    report = json.loads(cli("resume", test.batch_id[:10], "--json").stdout)
    assert report["verdict"]["winner_variant"] == "B" and report["stopped_early"]
    assert report_tests(report)["success_sequential"]["decided_after"] == 9  # the earlier cases counted
    assert report["cases_run"] <= 10


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


def test_repeat_runs_each_case_k_times_per_variant_and_the_case_is_the_unit(write_spec, tmp_path):
    a = load_spec(write_spec(variant("baseline", ALWAYS_WRONG, cases=2), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", RIGHT, cases=2), name="b.yaml"))
    cases = tmp_path / "more.jsonl"
    cases.write_text("".join(json.dumps({"id": f"m{i}", "x": i}) + "\n" for i in range(5)))
    ledger = Ledger(tmp_path / "l.db")
    report = run_ab(a, b, ledger=ledger, options=ABOptions(inputs=str(cases), repeat=2, early_stop=False))
    assert (report["cases_available"], report["pairs_available"], report["pairs_run"], report["runs"]) == (5, 10, 10, 20)
    # 5 cases B wins: 5 units of evidence (e-value 2^5 / 6), not 10 independent pairs (2^10 / 11 would cross)
    assert report["cases_run"] == 5 and report["verdict"]["text"].startswith("no significant difference after 5 cases")
    assert report_tests(report)["success_sequential"]["e_value"] == pytest.approx(32 / 6)
    assert report["deltas"]["success_rate"]["test"] == "success_wilcoxon" and report["deltas"]["success_rate"]["estimate"] == 1
    keys = ledger.query("SELECT case_id, repeat, variant FROM runs WHERE batch_id=?", (report["batch_id"],))
    assert sorted((k["case_id"], k["repeat"], k["variant"]) for k in keys) == sorted(
        (f"m{i}", r, v) for i in range(5) for r in (0, 1) for v in "AB")


def test_a_case_that_b_cannot_render_stops_the_test_before_any_call(cli, write_spec):
    a = write_spec(variant("baseline", RIGHT, cases=3), name="a.yaml")
    b = write_spec(variant("candidate", RIGHT, cases=3).replace("Double {{ case.x }}", "Double {{ case.y }}"), name="b.yaml")
    done = cli("ab", str(a), str(b))
    assert done.returncode == 2 and "case.y" not in done.stdout and "Traceback" not in done.stderr
    assert "'c0'" in done.stderr


# --- --margin: "is B as good, and cheaper?" (SPEC.md §6) ---------------------------------------------------


def test_margin_says_b_is_as_good_and_cheaper_per_case_with_both_intervals(cli, pair):
    # A passes on its second iteration (two calls), B on its first (one call): equally good, half the cost
    a, b = pair(WRONG_THEN_RIGHT, RIGHT, cases=120)
    done = cli("ab", a, b, "--margin", "0.1", "--seed", "7", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    verdict, tests = report["verdict"], report_tests(report)
    assert verdict["kind"] == "non_inferior_cheaper" and verdict["winner"] is None  # as good is no "winner"
    assert verdict["text"].startswith("B (candidate) is as good as A (within 10 pts): success +0 pts, at worst -")
    A, B = report["variants"]["A"], report["variants"]["B"]
    share = round((1 - B["mean_cost_usd"] / A["mean_cost_usd"]) * 100)  # A's second call carries the first: more than half
    assert share > 50 and f" and {share}% cheaper per case (" in verdict["text"]
    ni, cost = tests["success_noninferiority"], tests["cost_sequential"]
    assert ni["non_inferior"] and -0.1 < ni["ci_low"] <= 0 and ni["ci_high"] == 1 and ni["interval"] == [ni["ci_low"], 1]
    assert cost["direction"] == "cheaper" and cost["ci_low"] <= cost["estimate"] <= cost["ci_high"] < 0
    assert ni["anytime_valid"] and cost["anytime_valid"] and ni["level"] == cost["level"] == 1 - 0.05 / 4
    assert report["alpha_split"] == {t: 0.0125 for t in ("success_sequential", "reward_sequential", "success_noninferiority",
                                                         "cost_sequential")}
    assert report["stopped_early"] and report["cases_run"] < 120  # both questions answered: no more cases start


def test_margin_says_b_is_cheaper_but_worse(cli, pair, write_spec):
    a = pair(RIGHT, RIGHT, cases=40)[0]
    b = write_spec(variant("candidate", ALWAYS_WRONG, cases=40, max_iterations=1,
                           price="{input_per_mtok: 0.1, output_per_mtok: 0.2}"), name="cheap.yaml")
    report = json.loads(cli("ab", a, str(b), "--margin", "0.02", "--no-early-stop", "--json").stdout)
    verdict = report["verdict"]
    assert verdict["kind"] == "cheaper_but_worse" and verdict["winner_variant"] == "A"
    assert verdict["text"].startswith("B (candidate) is cheaper but worse: success -100 pts")
    assert "cheaper per case" in verdict["text"] and report_tests(report)["success_noninferiority"]["non_inferior"] is False


def test_margin_with_few_cases_says_there_is_not_enough_evidence_yet(inproc, pair):
    a, b = pair(WRONG_THEN_RIGHT, RIGHT, cases=6)
    report = json.loads(inproc("ab", a, b, "--margin", "0.02", "--json"))
    assert report["verdict"]["kind"] == "inconclusive"
    assert report["verdict"]["text"].startswith("not enough evidence after 6 cases that B (candidate) is as good as A (within 2 pts)")
    cost = report_tests(report)["cost_sequential"]
    assert cost["ci_low"] is None and cost["direction"] is None  # no cost claim before 20 cases
    text = inproc("ab", "--show", report["batch_id"])
    assert "non-inferiority (margin 2 pts)" in text and "cost per case: B - A" in text and "no interval yet" in text


HAND_OFF = """
human_rate: {usd_per_hour: 90}
escalate:
  - when: {failed: exact}
    human: {note: "Double it by hand.", minutes: 5}
"""


def test_a_persons_time_is_part_of_a_cases_cost_live_and_in_the_report(write_spec, tmp_path, inproc):
    # B hands every case it gets wrong (x % 3 == 0) to a person: 5 minutes at $90/h, $7.50 each
    a = load_spec(write_spec(variant("baseline", RIGHT, cases=24), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", '["{{ case.x * 2 if case.x % 3 else \'no\' }}"]', cases=24, max_iterations=1,
                                     extra=HAND_OFF), name="b.yaml"))
    with Ledger(tmp_path / "ledger.db") as ledger:
        test = ABTest(a, b, ledger, ABOptions(margin=0.02, seed=3, early_stop=False, concurrency=4))
        report = test.run()
        parked = ledger.query("SELECT id FROM runs WHERE status='needs_review'")
    B = report["variants"]["B"]
    assert len(parked) == 8 and B["human_usd"] == pytest.approx(8 * 7.5)
    assert B["cost_usd"] == pytest.approx(B["model_cost_usd"] + 60.0) and B["mean_cost_usd"] == pytest.approx(B["cost_usd"] / 24)
    assert B["cost_per_success_usd"] == pytest.approx(B["cost_usd"] / 16)
    cost = report_tests(report)["cost_sequential"]
    assert cost["estimate"] == pytest.approx(test.monitor.cost.mean)  # the live test priced the hand-offs as the report does
    assert report["verdict"]["cost"] == "dearer" and report["verdict"]["kind"] in ("worse", "inconclusive")
    ratio = B["mean_cost_usd"] / report["variants"]["A"]["mean_cost_usd"]  # a person's $7.50 against a scripted model's pennies
    assert f"{ratio:,.0f}× as dear per case (" in report["verdict"]["text"]

    # --human-usd-per-hour prices both variants' hand-offs instead of the specs' rate; a review's minutes replace the estimate
    repriced = json.loads(inproc("ab", str(a.path), str(b.path), "--margin", "0.02", "--seed", "3", "--no-early-stop",
                                 "--human-usd-per-hour", "60", "--json"))
    assert repriced["variants"]["B"]["human_usd"] == pytest.approx(8 * 5.0)
    run_id = next(r for r in (x["id"] for x in Ledger(tmp_path / "ledger.db").query(
        "SELECT id FROM runs WHERE status='needs_review' AND batch_id=?", (repriced["batch_id"],))))
    inproc("review", run_id, "--approve", "--minutes", "3")
    after = json.loads(inproc("ab", "--show", repriced["batch_id"], "--json"))["variants"]["B"]
    assert after["human_usd"] == pytest.approx(7 * 5.0 + 3.0) and after["passed"] == 17
    assert "of which a person" in inproc("ab", "--show", repriced["batch_id"])


def test_a_cheapest_escalation_chooses_in_ab_as_in_run_and_a_person_among_its_options_needs_a_price(cli, pair, write_spec, tmp_path):
    strong = '{id: loopkit/scripted, name: strong, replies: ["{{ case.x * 2 }}"], price: {input_per_mtok: 2.5, output_per_mtok: 10}}'
    entry = f"escalate:\n  - when: {{failed: exact}}\n    cheapest: [{strong}, human]\n    human: {{note: look, minutes: 5}}\n"
    a = pair(RIGHT, RIGHT, cases=4)[0]
    b = write_spec(variant("candidate", ALWAYS_WRONG, cases=4, extra=entry), name="cheapest.yaml")
    refused = cli("ab", a, str(b))
    assert refused.returncode == 2 and "cheapest lists `human`, whose time has no price" in refused.stderr
    done = cli("ab", a, str(b), "--human-usd-per-hour", "90", "--json")
    assert done.returncode == 0, done.stderr
    with Ledger(tmp_path / "ledger.db") as ledger:
        chosen = [json.loads(r["detail"])["cheapest"] for r in ledger.query("SELECT detail FROM events WHERE kind='escalation'")]
    assert len(chosen) == 4 and {c["chosen"] for c in chosen} == {"strong"}  # the prior: a model step is cheaper than $7.50
    assert chosen[0]["options"][1]["usd"] == pytest.approx(7.5)  # the person, priced at the rate ab was given


def test_a_cases_cost_in_the_margin_test_is_every_call_of_its_runs_judges_included(write_spec, tmp_path):
    judge = """
        checkers:
          - {name: exact, type: equals, expected: "{{ case.x * 2 }}"}
          - name: tone
            type: judge
            rubric: Is it terse?
            model: {id: loopkit/scripted, price: {input_per_mtok: 30, output_per_mtok: 60}, replies: ['{"score": 1, "reason": "ok"}']}
        """
    a = load_spec(write_spec(variant("judged", RIGHT, cases=24).split("checkers:")[0] + textwrap.dedent(judge), name="a.yaml"))
    b = load_spec(write_spec(variant("plain", RIGHT, cases=24), name="b.yaml"))
    with Ledger(tmp_path / "ledger.db") as ledger:
        report = ABTest(a, b, ledger, ABOptions(margin=0.02, seed=5, early_stop=False)).run()
        spent = {r["variant"]: r["usd"] for r in ledger.query(
            "SELECT runs.variant, TOTAL(calls.cost_usd) AS usd FROM calls JOIN runs ON runs.id = calls.run_id GROUP BY runs.variant")}
        judged = ledger.query("SELECT COUNT(*) AS n FROM calls WHERE role != 'worker'")[0]["n"]
    assert judged == 24  # one judge call per run of A
    cost = report_tests(report)["cost_sequential"]
    assert cost["estimate"] == pytest.approx((spent["B"] - spent["A"]) / 24)  # the source of truth: the calls
    assert report["variants"]["A"]["mean_cost_usd"] == pytest.approx(spent["A"] / 24)
    assert cost["direction"] == "cheaper" and cost["ci_high"] < 0  # B saves the judge
