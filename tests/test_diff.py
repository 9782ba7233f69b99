"""`loopkit diff`: two batches, two runs, two spec files, an A/B batch's variants; regressions first."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from loopkit import diffing
from loopkit.api import run_batch
from loopkit.batch import BatchOptions
from loopkit.ledger import Ledger
from loopkit.ledger.diffs import spec_hash_of_text
from loopkit.spec import load_spec

# Case x passes in A and fails in B (a regression), y fails in A and passes in B (a fix), z passes in both.
SPEC = """\
version: 1
name: quiz
model: {{id: loopkit/scripted, price: {{input_per_mtok: 1, output_per_mtok: 2}}, replies: ["{{{{ case.{field} }}}}"]}}
params: {{max_tokens: 50}}
task: {{prompt: "Say ok for {{{{ case.id }}}}"}}
inputs:
  - {{id: x, a: ok, b: wrong}}
  - {{id: y, a: wrong, b: ok}}
  - {{id: z, a: ok, b: ok}}
checkers:
  - {{name: exact, type: equals, expected: "ok"}}
  - {{name: has_ok, type: contains, expected: "ok"}}
stop: {{max_iterations: 2}}
"""


class Built:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ledger_path = root / "ledger.db"
        self.spec_a = root / "quiz_a.yaml"
        self.spec_b = root / "quiz_b.yaml"
        self.spec_c = root / "quiz_c.yaml"  # never run
        self.spec_a.write_text(SPEC.format(field="a"))
        self.spec_b.write_text(SPEC.format(field="b"))
        self.spec_c.write_text(SPEC.format(field="a") + "# another version\n")
        with Ledger(self.ledger_path) as ledger:
            self.batch_a = run_batch(load_spec(self.spec_a), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.batch_b = run_batch(load_spec(self.spec_b), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.runs = {(r["batch_id"], r["case_id"]): r["id"] for r in ledger.query("SELECT id, batch_id, case_id FROM runs")}

    def run(self, batch: str, case: str) -> str:
        return self.runs[(batch, case)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("diff"))


def _json(cli, *args: str) -> tuple[int, dict]:
    done = cli("diff", *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_two_batches_regressions_first_then_fixes_then_the_rest_with_metric_deltas(cli, built):
    code, doc = _json(cli, built.batch_a[:8], built.batch_b[:8], "--ledger", str(built.ledger_path))
    assert code == 0 and doc["exit_code"] == 0  # no --fail-on-regression
    assert doc["kind"] == "batches" and doc["a"]["batch_id"] == built.batch_a and doc["b"]["batch_id"] == built.batch_b
    assert [(c["case_id"], c["change"]) for c in doc["cases"]] == [("x", "regression"), ("y", "fix"), ("z", "same")]
    assert doc["regressions"] == 1 and doc["changes"]["regression"] == 1 and doc["changes"]["fix"] == 1
    x = doc["cases"][0]
    assert x["a"]["status"] == "passed" and x["b"]["status"] == "failed" and x["b"]["stop_reason"] == "max_iterations"
    assert x["a"]["run_id"] == built.run(built.batch_a, "x") and x["delta"]["reward"] == -1.0 and x["delta"]["iterations"] == 1
    m = doc["metrics"]
    assert m["pass_rate"]["a"] == pytest.approx(2 / 3) and m["pass_rate"]["delta"] == pytest.approx(0)
    assert m["mean_iterations"]["a"] == pytest.approx(4 / 3) and m["mean_iterations"]["b"] == pytest.approx(4 / 3)
    assert m["cost_usd"]["a"] > 0 and m["cost_per_pass"]["a"] == pytest.approx(m["cost_usd"]["a"] / 2)
    assert set(m) == {"runs", "pass_rate", "mean_reward", "cost_usd", "cost_per_pass", "mean_iterations", "mean_latency_ms"}
    assert m["mean_latency_ms"]["a"] is not None
    # the spec changed: its YAML diff is part of the answer
    assert doc["spec"]["same"] is False
    assert any(line.startswith("-") and "case.a" in line for line in doc["spec"]["diff"])
    assert any(line.startswith("+") and "case.b" in line for line in doc["spec"]["diff"])


def test_the_other_way_round_the_regression_is_a_fix(cli, built):
    _, doc = _json(cli, built.batch_b, built.batch_a, "--ledger", str(built.ledger_path))
    assert [(c["case_id"], c["change"]) for c in doc["cases"]] == [("y", "regression"), ("x", "fix"), ("z", "same")]


def test_fail_on_regression_exits_1_from_the_console_script(cli_proc, built):
    done = cli_proc("diff", built.batch_a[:8], built.batch_b[:8], "--fail-on-regression", "--ledger", str(built.ledger_path))
    assert done.returncode == 1, done.stderr
    assert "regressions (passed → not passed)" in done.stdout and "1 regression: exit 1" in done.stdout
    assert "case.b" in done.stdout  # the spec diff
    same = cli_proc("diff", built.batch_a, built.batch_a, "--fail-on-regression", "--json", "--ledger", str(built.ledger_path))
    assert same.returncode == 0 and json.loads(same.stdout)["changes"]["same"] == 3  # one document, nothing else


def test_two_runs_side_by_side_with_checker_score_changes(cli, built):
    a, b = built.run(built.batch_a, "x"), built.run(built.batch_b, "x")
    code, doc = _json(cli, a[:9], b[:9], "--ledger", str(built.ledger_path))
    assert code == 0 and doc["kind"] == "runs" and doc["change"] == "regression" and doc["regressions"] == 1
    assert doc["case_same"] is True and doc["a"]["case"]["id"] == "x"
    assert doc["spec"]["same"] is False and doc["spec"]["diff"]
    first, second = doc["iterations"]
    assert first["a"]["output"] == "ok" and first["b"]["output"] == "wrong" and first["output_changed"]
    exact = next(c for c in first["checks"] if c["checker"] == "exact")
    assert (exact["a_score"], exact["b_score"], exact["delta"], exact["a_passed"], exact["b_passed"]) == (1.0, 0.0, -1.0, True, False)
    assert second["a"] is None and second["b"]["output"] == "wrong"  # A passed at once; B tried again
    failing = cli("diff", a, b, "--fail-on-regression", "--ledger", str(built.ledger_path))
    assert failing.returncode == 1
    assert "iteration 1" in failing.stdout and "iteration 2" in failing.stdout and "wrong" in failing.stdout
    assert "(-1.00)" in failing.stdout


def test_two_spec_files_compare_their_text_and_their_latest_batches(cli, built):
    assert spec_hash_of_text(built.spec_a.read_text()) == load_spec(built.spec_a).hash
    code, doc = _json(cli, str(built.spec_a), str(built.spec_b), "--ledger", str(built.ledger_path))
    assert code == 0 and doc["kind"] == "specs" and doc["missing"] == []
    assert doc["a"]["hash"] == load_spec(built.spec_a).hash and doc["a"]["batch_id"] == built.batch_a
    assert doc["b"]["batch_id"] == built.batch_b
    assert any("case.b" in line for line in doc["spec"]["diff"])
    assert doc["regressions"] == 1 and doc["batches"]["cases"][0]["case_id"] == "x"
    done = cli("diff", str(built.spec_a), str(built.spec_b), "--fail-on-regression", "--ledger", str(built.ledger_path))
    assert done.returncode == 1 and "latest batch of each version" in done.stdout


def test_a_spec_version_never_run_gets_its_text_diff_and_a_note(cli, built):
    code, doc = _json(cli, str(built.spec_a), str(built.spec_c), "--fail-on-regression", "--ledger", str(built.ledger_path))
    assert code == 0 and doc["batches"] is None and doc["regressions"] == 0
    assert len(doc["missing"]) == 1 and "quiz_c.yaml" in doc["missing"][0]
    assert doc["spec"]["diff"][-1] == "+# another version"
    # without any ledger the text is still compared
    code, doc = _json(cli, str(built.spec_a), str(built.spec_b), "--ledger", str(built.root / "none.db"))
    assert code == 0 and doc["spec"]["diff"] and len(doc["missing"]) == 2


def test_an_ab_batch_compares_variant_a_with_variant_b(cli, built, tmp_path):
    from loopkit.ab import ABOptions, run_ab

    path = tmp_path / "ab.db"
    with Ledger(path) as ledger:
        run_ab(load_spec(built.spec_a), load_spec(built.spec_b), ledger=ledger, options=ABOptions(concurrency=1, early_stop=False))
        ab = ledger.one("SELECT id FROM batches WHERE kind='ab'")["id"]
        other = run_batch(load_spec(built.spec_a), ledger=ledger, options=BatchOptions(concurrency=1, no_cache=True)).batch_id
    code, doc = _json(cli, ab, ab, "--ledger", str(path))
    assert (doc["a"]["variant"], doc["b"]["variant"]) == ("A", "B")
    assert [(c["case_id"], c["change"]) for c in doc["cases"]][:2] == [("x", "regression"), ("y", "fix")]
    _, explicit = _json(cli, f"{ab[:8]}:B", f"{ab[:8]}:A", "--ledger", str(path))
    assert explicit["cases"][0]["case_id"] == "y" and explicit["cases"][0]["change"] == "regression"
    _, vs_run = _json(cli, f"{ab}:A", other, "--ledger", str(path))
    assert vs_run["changes"]["same"] == 3
    mixed = cli("diff", ab, other, "--ledger", str(path))
    assert mixed.returncode == 2 and ":A or" in mixed.stderr


def _copy(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


@pytest.mark.parametrize("args, message", [
    (["abcdef0123", "abcdef0124"], "no run or batch with ID"),
    (["not-hex!", "abc"], "is not a run or batch ID"),
    (["quiz_a.yaml", "{batch_a}"], "got a spec file and an ID"),
    (["{run_x}", "{batch_a}"], "diff two runs or two batches"),
    (["{batch_a}:A", "{batch_b}"], "is not one"),
    (["missing.yaml", "quiz_b.yaml"], "no such spec file"),
])
def test_bad_input_is_exit_2_with_one_line(cli, built, args, message, monkeypatch):
    values = {"batch_a": built.batch_a, "batch_b": built.batch_b, "run_x": built.run(built.batch_a, "x")}
    args = [a.format(**values) for a in args]
    monkeypatch.chdir(built.root)
    done = cli("diff", *args, "--ledger", str(built.ledger_path))
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr and done.stdout == ""


def test_an_ambiguous_prefix_is_exit_2_naming_the_candidates(cli, built, tmp_path):
    path = _copy(built.ledger_path, tmp_path / "copy.db")
    run_id = built.run(built.batch_a, "x")
    twin = run_id[:6] + ("0" if run_id[6] != "0" else "1") + "f" * 25
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO batches (id, kind, status, started_at) VALUES (?, 'run', 'done', '2026-01-01T00:00:00.000000Z')", (twin,))
    done = cli("diff", run_id[:6], built.batch_b, "--ledger", str(path))
    assert done.returncode == 2 and "ambiguous" in done.stderr and run_id in done.stderr and twin in done.stderr


# --- the pure logic ------------------------------------------------------------------------


def _row(id: str, case: str, status: str, reward: float, iterations: int = 1, cost: float = 0.01, repeat: int = 0) -> dict:
    return {"id": id, "case_id": case, "repeat": repeat, "status": status, "success": int(status == "passed"),
            "stop_reason": "passed" if status == "passed" else "max_iterations", "reward": reward, "iterations": iterations,
            "cost_usd": cost}


def test_classify_every_kind_of_change():
    passed, failed = _row("1", "c", "passed", 1.0), _row("2", "c", "failed", 0.5)
    assert diffing.classify(passed, failed) == "regression"
    assert diffing.classify(failed, passed) == "fix"
    assert diffing.classify(failed, {**failed, "reward": 0.7}) == "changed"
    assert diffing.classify(failed, {**failed, "status": "error", "stop_reason": "error"}) == "changed"
    assert diffing.classify(passed, {**passed, "cost_usd": 9.0}) == "same"
    assert diffing.classify(passed, None) == "removed" and diffing.classify(None, passed) == "added"
    # needs_review is not passed: a case that passed and is now parked for a person regressed
    assert diffing.classify(passed, {**failed, "status": "needs_review"}) == "regression"


def test_match_cases_by_case_and_repeat_in_review_order():
    a = [_row("a1", "10", "passed", 1), _row("a2", "2", "passed", 1), _row("a3", "3", "failed", 0.2),
         _row("a4", "4", "passed", 1), _row("a5", "2", "passed", 1, repeat=1), _row("a6", "gone", "passed", 1)]
    b = [_row("b1", "10", "failed", 0.1), _row("b2", "2", "failed", 0), _row("b3", "3", "passed", 1),
         _row("b4", "4", "passed", 1), _row("b5", "2", "passed", 1, repeat=1), _row("b6", "new", "failed", 0)]
    cases = diffing.match_cases(a, b, a_latency={"a1": 100.0}, b_latency={"b1": 250.0})
    assert [(c["case_id"], c["repeat"], c["change"]) for c in cases] == [
        ("2", 0, "regression"), ("10", 0, "regression"), ("3", 0, "fix"), ("gone", 0, "removed"), ("new", 0, "added"),
        ("2", 1, "same"), ("4", 0, "same")]
    ten = cases[1]
    assert ten["delta"]["latency_ms"] == 150.0 and ten["delta"]["reward"] == pytest.approx(-0.9)
    assert cases[3]["b"] is None and cases[3]["delta"]["reward"] is None
    assert diffing.summarize_changes(cases) == {"regression": 2, "fix": 1, "changed": 0, "removed": 1, "added": 1, "same": 2}


def test_matched_cases_builds_only_the_first_of_each_class_and_counts_them_all():
    a = [_row(f"a{i}", str(i), "passed", 1) for i in range(30)] + [_row(f"a{i}", str(i), "failed", 0) for i in range(30, 40)]
    b = [_row(f"b{i}", str(i), "failed", 0) for i in range(25)] + [_row(f"b{i}", str(i), "passed", 1) for i in range(25, 40)]
    full = diffing.match_cases(a, b)
    shown, counts = diffing.matched_cases(a, b, per_class=4)
    assert counts == diffing.summarize_changes(full) == {"regression": 25, "fix": 10, "changed": 0, "removed": 0, "added": 0,
                                                         "same": 5}
    firsts = [c for change in diffing.CHANGE_ORDER for c in [c for c in full if c["change"] == change][:4]]
    assert shown == firsts and [c["case_id"] for c in shown][:4] == ["0", "1", "2", "3"]


def test_metrics_and_their_deltas():
    a = [_row("a1", "1", "passed", 1.0, 1, 0.02), _row("a2", "2", "failed", 0.5, 3, 0.06)]
    b = [_row("b1", "1", "passed", 1.0, 1, 0.01), _row("b2", "2", "passed", 1.0, 2, 0.03)]
    ma = diffing.batch_metrics(a, {"a1": 1000.0, "a2": 3000.0})
    mb = diffing.batch_metrics(b, {})
    assert ma["pass_rate"] == 0.5 and ma["mean_reward"] == 0.75 and ma["cost_usd"] == pytest.approx(0.08)
    assert ma["cost_per_pass"] == pytest.approx(0.08) and ma["mean_iterations"] == 2 and ma["mean_latency_ms"] == 2000
    assert mb["cost_per_pass"] == pytest.approx(0.02) and mb["mean_latency_ms"] == 0
    d = diffing.metric_deltas(ma, mb)
    assert d["pass_rate"] == {"a": 0.5, "b": 1.0, "delta": 0.5, "better": "higher"}
    assert d["cost_usd"]["delta"] == pytest.approx(-0.04) and d["cost_usd"]["better"] == "lower"
    empty = diffing.batch_metrics([])
    assert empty["pass_rate"] is None and empty["cost_per_pass"] is None
    assert diffing.metric_deltas(empty, mb)["pass_rate"]["delta"] is None


def test_text_diff_and_iteration_pairs():
    assert diffing.text_diff("a\nb\n", "a\nb\n") == []
    lines = diffing.text_diff("a\nb\n", "a\nc\n", "old.yaml", "new.yaml")
    assert lines[:2] == ["--- old.yaml", "+++ new.yaml"] and "-b" in lines and "+c" in lines
    it = lambda n, out, score: {"n": n, "model": "m", "output": out, "reward": score, "passed": score == 1, "feedback": "",  # noqa: E731
                                "cost_usd": 0.0, "checks": [{"checker": "eq", "score": score, "passed": score == 1, "audit": 0}]}
    pairs = diffing.iteration_pairs([it(1, "x", 0.0), it(2, "ok", 1.0)], [it(1, "ok", 1.0)])
    assert [p["n"] for p in pairs] == [1, 2]
    assert pairs[0]["checks"][0]["delta"] == 1.0 and pairs[0]["output_changed"]
    assert pairs[1]["b"] is None and pairs[1]["checks"][0]["b_score"] is None and pairs[1]["checks"][0]["delta"] is None


def test_spec_text_hash_matches_load_spec(tmp_path):
    path = tmp_path / "s.yaml"
    # Windows line ends and a byte-order mark: the version is the same as `loopkit run` records.
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent("""\
        model: {id: loopkit/scripted, replies: ["hi"]}\r
        task: {prompt: "hi"}\r
        """).encode())
    from loopkit.ledger.diffs import _read_spec

    assert spec_hash_of_text(_read_spec(path)) == load_spec(path).hash


def test_a_key_written_into_a_spec_file_is_not_printed_by_its_diff(cli, tmp_path):
    key = "sk-proj-abcdefghijklmnop1234567890"
    text = ('model: {id: loopkit/scripted, replies: ["42"]}\ntask: {prompt: "six times seven?"}\n'
            f"params: {{api_key: {key}}}\n")
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text.replace("six", "6"))
    for args in (["diff", "a.yaml", "b.yaml"], ["diff", "a.yaml", "b.yaml", "--json"]):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        assert key not in done.stdout + done.stderr
        assert "[REDACTED]" in done.stdout and "6 times seven" in done.stdout


def test_a_batch_whose_spec_text_the_ledger_lacks_is_named_by_its_runs(cli, tmp_path):
    built = Built(tmp_path)
    with sqlite3.connect(built.ledger_path) as db:
        db.execute("DELETE FROM specs")
    _, doc = _json(cli, built.batch_a, built.batch_b, "--ledger", str(built.ledger_path))
    assert (doc["a"]["spec_name"], doc["b"]["spec_name"]) == ("quiz", "quiz")
    assert doc["spec"]["text_missing"] and doc["changes"]["regression"] == 1
