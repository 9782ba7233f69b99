"""`loopkit runs` and `loopkit show` (a batch's summary), and the query commands' fast start (no litellm)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopkit.api import run_batch
from loopkit.batch import BatchOptions
from loopkit.ledger import Ledger
from loopkit.ledger.queries import batch_summary, list_runs
from loopkit.spec import load_spec

ALPHA = """\
name: alpha
model: {id: loopkit/scripted, price: {input_per_mtok: 1, output_per_mtok: 2}, replies: ["{{ case.reply }}"]}
params: {max_tokens: 40}
task: {prompt: "Answer {{ case.id }}"}
inputs:
  - {id: p1, reply: ok}
  - {id: p2, reply: ok honest}
  - {id: f1, reply: bad}
checkers:
  - {name: says_ok, type: contains, expected: "ok"}
  - {name: honest, type: contains, expected: "honest", audit: true}
stop: {max_iterations: 2}
"""

BETA = """\
name: beta
model: {id: loopkit/scripted, replies: ["{{ case.reply }}"]}
task: {prompt: "Answer {{ case.id }}"}
inputs:
  - {id: h1, reply: bad}
  - {id: b1, reply: ok}
checkers:
  - {name: says_ok, type: contains, expected: "ok"}
escalate:
  - when: {iterations: 1}
    human: "Look at this one."
"""


class Built:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "ledger.db"
        (root / "alpha.yaml").write_text(ALPHA)
        (root / "beta.yaml").write_text(BETA)
        with Ledger(self.path) as ledger:
            self.alpha = run_batch(load_spec(root / "alpha.yaml"), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.beta = run_batch(load_spec(root / "beta.yaml"), ledger=ledger, options=BatchOptions(concurrency=1)).batch_id
            self.ids = {r["case_id"]: r["id"] for r in ledger.query("SELECT id, case_id FROM runs")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return Built(tmp_path_factory.mktemp("queries"))


def _runs(cli, built, *args: str) -> list[dict]:
    done = cli("runs", *args, "--json", "--ledger", str(built.path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_runs_filters_by_spec_status_batch_suspect_and_limit_newest_first(cli, built):
    every = _runs(cli, built)
    assert len(every) == 5 and [r["started_at"] for r in every] == sorted((r["started_at"] for r in every), reverse=True)
    assert every[0]["case_id"] == "b1"  # the newest run first
    assert all("state" not in r and "case_json" not in r for r in every)
    assert {r["case_id"] for r in _runs(cli, built, "--spec", "alpha")} == {"p1", "p2", "f1"}
    assert [r["case_id"] for r in _runs(cli, built, "--status", "failed")] == ["f1"]
    parked = _runs(cli, built, "--status", "needs_review")
    assert [(r["case_id"], r["stop_reason"]) for r in parked] == [("h1", "human")]
    assert {r["case_id"] for r in _runs(cli, built, "--batch", built.beta[:7])} == {"h1", "b1"}
    assert [r["case_id"] for r in _runs(cli, built, "--suspect")] == ["p1"]  # passed, but failed the audit
    assert [r["case_id"] for r in _runs(cli, built, "--limit", "2")] == [r["case_id"] for r in every[:2]]
    assert _runs(cli, built, "--spec", "alpha", "--status", "needs_review") == []
    text = cli("runs", "--spec", "beta", "--ledger", str(built.path)).stdout
    assert "needs_review" in text and built.ids["h1"][:10] in text
    assert cli("runs", "--spec", "nope", "--ledger", str(built.path)).stdout.strip() == "no runs match"


def test_runs_refuses_what_it_cannot_answer(cli, built):
    not_batch = cli("runs", "--batch", built.ids["p1"], "--ledger", str(built.path))
    assert not_batch.returncode == 2 and "is a run, not a batch" in not_batch.stderr
    status = cli("runs", "--status", "pass", "--ledger", str(built.path))
    assert status.returncode == 2 and "passed, failed, needs_review" in status.stderr
    unknown = cli("runs", "--batch", "fedcba9876", "--ledger", str(built.path))
    assert unknown.returncode == 2 and "no run or batch" in unknown.stderr


def test_show_batch_pass_rate_cost_per_pass_stop_reasons_slowest_and_most_expensive(cli, built):
    done = cli("show", built.alpha[:8], "--json", "--ledger", str(built.path))
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    with Ledger(built.path, readonly=True) as ledger:
        costs = {r["case_id"]: r["cost_usd"] for r in ledger.query("SELECT case_id, cost_usd FROM runs WHERE batch_id=?", (built.alpha,))}
    assert (s["runs"], s["passed"]) == (3, 2) and s["pass_rate"] == pytest.approx(2 / 3)
    assert s["cost_usd"] == pytest.approx(sum(costs.values())) and s["cost_per_pass"] == pytest.approx(sum(costs.values()) / 2)
    assert s["stop_reasons"] == {"passed": 2, "max_iterations": 1}
    assert s["most_expensive"][0]["case_id"] == "f1"  # two iterations
    assert {r["case_id"] for r in s["slowest"]} <= {"p1", "p2", "f1"} and s["slowest"]
    assert s["batch"]["id"] == built.alpha and s["spec_name"] == "alpha"
    text = cli("show", built.alpha[:8], "--ledger", str(built.path)).stdout
    for words in ("passed 2 (67%)", "cost per passed case", "stop reasons: passed 2, max_iterations 1", "slowest:", "most expensive: f1"):
        assert words in text, words


def test_show_run_and_unknown_ids(cli, built):
    detail = json.loads(cli("show", built.ids["f1"][:9], "--json", "--ledger", str(built.path)).stdout)
    assert detail["status"] == "failed" and len(detail["iterations"]) == 2 and detail["case"]["id"] == "f1"
    assert cli("show", "0123456789abcdef", "--ledger", str(built.path)).returncode == 2


def test_the_query_functions_read_what_the_cli_shows(built):
    with Ledger(built.path, readonly=True) as ledger:
        assert [r["case_id"] for r in list_runs(ledger, spec="beta", status="passed")] == ["b1"]
        assert batch_summary(ledger, built.beta)["stop_reasons"] == {"human": 1, "passed": 1}


def test_the_query_commands_never_import_litellm(built):
    """--help, runs, show, cost, diff and review in one process: litellm (and the openai SDK) stay unloaded."""
    script = """
import contextlib, io, json, sys
import loopkit.cli
from loopkit.cli import main
ledger = sys.argv[1]
commands = json.loads(sys.argv[2])
codes = []
for args in commands:
    sys.argv = ["loopkit", *args, "--ledger", ledger] if args != ["--help"] else ["loopkit", "--help"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code)
print(json.dumps({"codes": codes, "loaded": sorted(m for m in ("litellm", "openai", "tiktoken") if m in sys.modules)}))
"""
    commands = [["--help"], ["runs"], ["runs", "--json", "--since", "7d"], ["show", built.alpha], ["show", built.ids["f1"], "--calls"],
                ["cost", "--by", "model"], ["cost", "--since", "yesterday", "--by", "day", "--json"], ["diff", built.alpha, built.beta],
                ["diff", str(built.root / "alpha.yaml"), str(built.root / "beta.yaml"), "--json"], ["review"], ["review", "--json"]]
    done = subprocess.run([sys.executable, "-c", script, str(built.path), json.dumps(commands)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0] * len(commands)
    assert result["loaded"] == []


def test_a_batch_summary_reads_the_same_few_rows_however_big_the_batch(tmp_path, monkeypatch):
    (tmp_path / "many.yaml").write_text("name: many\nmodel: {id: loopkit/scripted, replies: ['{{ case.reply }}']}\n"
                                        "task: {prompt: 'Answer {{ case.id }}'}\ninputs: [{id: a, reply: ok}, {id: b, reply: bad}]\n"
                                        "checkers: [{name: says_ok, type: contains, expected: ok}]\nstop: {max_iterations: 1}\n")
    with Ledger(tmp_path / "ledger.db") as ledger:
        batch = run_batch(load_spec(tmp_path / "many.yaml"), ledger=ledger, options=BatchOptions(repeat=150)).batch_id
    fetched = []
    real_query, real_one = Ledger.query, Ledger.one
    monkeypatch.setattr(Ledger, "query", lambda self, *a: fetched.extend(rows := real_query(self, *a)) or rows)
    monkeypatch.setattr(Ledger, "one", lambda self, *a: fetched.append(row := real_one(self, *a)) or row)
    with Ledger(tmp_path / "ledger.db", readonly=True) as ledger:
        summary = batch_summary(ledger, batch, shown=50)
        truth = ledger.conn.execute("SELECT COUNT(*), SUM(success) FROM runs WHERE batch_id=?", (batch,)).fetchone()
    assert (summary["runs"], summary["passed"]) == tuple(truth) == (300, 150)
    assert summary["statuses"] == {"passed": 150, "failed": 150} and summary["stop_reasons"] == {"passed": 150, "max_iterations": 150}
    assert len(summary["first_runs"]) == 50
    assert len(fetched) < 80  # 50 shown runs and a few aggregate rows, not 300 runs


def test_listing_runs_loads_no_spec_models_or_templates(built):
    """`--help`, `runs` and `cost` start without the spec's pydantic models and jinja2 (a command module that
    imported them at the top made every command pay for them)."""
    script = """
import contextlib, io, json, sys
from loopkit.cli import main
for args in (["--help"], ["runs", "--ledger", sys.argv[1]], ["cost", "--ledger", sys.argv[1]]):
    sys.argv = ["loopkit", *args]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with contextlib.suppress(SystemExit):
            main()
print(json.dumps(sorted(m for m in ("jinja2", "loopkit.spec.schema", "loopkit.templates", "loopkit.engine") if m in sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script, str(built.path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_what_a_cached_call_saved_is_priced_from_the_cache_key_index_alone(tmp_path: Path) -> None:
    """The writer prices each cached call at its original's cost (for `show` and `cost`): one index range, no row
    read per original."""
    from loopkit.ledger.rows import _PRICE_CACHED

    ledger = Ledger(tmp_path / "l.db")
    plan = " ".join(row[3] for row in ledger.conn.execute("EXPLAIN QUERY PLAN " + _PRICE_CACHED, ("k", "id")))
    assert "COVERING INDEX idx_calls_cache_key_cost" in plan, plan
    lookup = " ".join(row[3] for row in ledger.conn.execute(
        "EXPLAIN QUERY PLAN SELECT c.response FROM calls c WHERE c.cache_key=? AND c.error IS NULL ORDER BY c.created_at LIMIT 1", ("k",)))
    assert "idx_calls_cache_key_cost (cache_key=?)" in lookup, "the cache's own lookup still finds its key by the index"
