"""The console script, end to end: what a user types and what they see (SPEC.md §3)."""

from __future__ import annotations

import json

from fake_llm import Reply

from loopkit.formatting import usd as money

TWO_STEP = """
model: {{id: openai/gpt-4o-mini, api_base: "{base}"}}
params: {{max_tokens: 100}}
task:
  prompt: "What is 6 x 7? Answer with the number."
  feedback: "Not quite: {{{{ feedback }}}}"
checkers:
  - {{name: answer, type: number, expected: "42"}}
"""


def test_a_run_that_fails_once_then_passes_shows_both_iterations_calls_tokens_and_exact_cost(cli, write_spec, fake_llm):
    fake_llm.queue(Reply("41", prompt_tokens=1000, completion_tokens=10), Reply("42", prompt_tokens=2000, completion_tokens=20))
    spec = write_spec(TWO_STEP.format(base=fake_llm.base_url))
    done = cli("run", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] == 1 and report["exit_code"] == 0
    run = report["runs"][0]
    # gpt-4o-mini: $0.15 / $0.60 per million tokens, from litellm's bundled prices
    first, second = 1000 * 0.15e-6 + 10 * 0.60e-6, 2000 * 0.15e-6 + 20 * 0.60e-6
    assert run["cost_usd"] == first + second or abs(run["cost_usd"] - (first + second)) < 1e-12
    assert fake_llm.requests[1]["messages"][-1]["content"] == "Not quite: - answer: expected 42, got 41"

    shown = cli("show", run["id"][:8], "--json")
    detail = json.loads(shown.stdout)
    assert [i["output"] for i in detail["iterations"]] == ["41", "42"]
    assert [(c["prompt_tokens"], c["completion_tokens"]) for c in detail["calls"]] == [(1000, 10), (2000, 20)]
    assert [round(c["cost_usd"], 12) for c in detail["calls"]] == [round(first, 12), round(second, 12)]
    assert detail["iterations"][0]["checks"][0]["feedback"] == "expected 42, got 41"

    text = cli("show", run["id"][:8], "--calls").stdout
    assert "iteration 1" in text and "iteration 2" in text and "1000+10 tokens" in text and "2000+20 tokens" in text
    assert "Not quite: - answer: expected 42, got 41" in text


def test_runs_lists_newest_first_and_filters(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["{{ case.a }}"]}
        task: {prompt: "{{ case.a }}"}
        inputs: [{id: one, a: good}, {id: two, a: bad}]
        checkers: [{name: good, type: equals, expected: "good"}]
        stop: {max_iterations: 1}
        """)
    assert cli("run", str(spec)).returncode == 0
    listed = json.loads(cli("runs", "--json").stdout)
    assert [r["case_id"] for r in listed] == ["two", "one"]
    failed = json.loads(cli("runs", "--status", "failed", "--json").stdout)
    assert [r["case_id"] for r in failed] == ["two"]
    assert json.loads(cli("runs", "--spec", "nope", "--json").stdout) == []


def test_a_bad_spec_is_exit_2_with_file_line_and_no_traceback(cli_proc, write_spec):
    cli = cli_proc  # through the real console script
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: [x]}
        task: {prompt: go}
        chekers: []
        stop: {max_iterations: five}
        """)
    done = cli("run", str(spec))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{spec}:4:1: chekers: unknown key; did you mean `checkers`?" in done.stderr
    assert f"{spec}:5:" in done.stderr and "max_iterations" in done.stderr
    checked = cli("check", str(spec))
    assert checked.returncode == 2 and checked.stderr.count("error:") == 2


def test_check_prints_the_worst_case_cost_per_case(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: [x], price: {input_per_mtok: 1000000, output_per_mtok: 1000000}}
        params: {max_tokens: 10}
        task: {prompt: "abcdefgh"}
        stop: {max_iterations: 2}
        budget: {usd: 100}
        """)
    done = cli("check", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)["specs"]
    # at most one token per byte: prompt 8+4+3 = 15 → ceil(15*1.1)+8 = 25, plus max_tokens 10 = 35 tokens at $1/token;
    # the second iteration adds a full reply (10+4) and the feedback message (4): 33 → 37+8+10 = 55
    assert report["worst_case_usd_per_case"] == 90.0
    assert report["worst_case_tokens_per_case"] == 90


def test_a_missing_key_is_one_line_naming_the_variable(cli, write_spec):
    spec = write_spec("""
        model: {id: openai/gpt-4o-mini, api_base: "http://127.0.0.1:9/v1", api_key_env: LOOPKIT_TEST_MISSING_KEY}
        task: {prompt: go}
        """)
    done = cli("run", str(spec))
    assert done.returncode == 2
    assert done.stderr.strip() == "error: model openai/gpt-4o-mini needs an API key: set the environment variable LOOPKIT_TEST_MISSING_KEY"


def test_a_parked_run_is_listed_resumed_with_feedback_and_passes(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["guess", "{{ 'married' if 'married' in feedback else 'guess' }}"]}
        task: {prompt: "Filing status?", feedback: "Reviewer says: {{ feedback }}"}
        checkers: [{name: status, type: equals, expected: married}]
        stop: {max_iterations: 3}
        escalate:
          - when: {iterations: 1}
            human: "Unusual household: check the filing status."
        """)
    done = cli("run", str(spec), "--json")
    assert done.returncode == 0
    run_id = json.loads(done.stdout)["runs"][0]["id"]
    queue = json.loads(cli("review", "--json").stdout)
    assert [(r["id"], r["message"], r["failed_checks"]) for r in queue] == [
        (run_id, "Unusual household: check the filing status.", ["status"])]
    decided = cli("review", run_id[:6], "--feedback", "they are married", "--reviewer", "ana", "--json")
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout)["status"] == "passed"
    detail = json.loads(cli("show", run_id, "--json").stdout)
    assert detail["status"] == "passed" and len(detail["iterations"]) == 2
    review = [e for e in detail["events"] if e["kind"] == "review"][0]
    assert review["detail"]["reviewer"] == "ana" and review["detail"]["decision"] == "feedback"
    assert json.loads(cli("review", "--json").stdout) == []


def test_review_approve_and_reject_record_the_decision(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{n: 1}, {n: 2}]
        checkers: [{name: y, type: equals, expected: y}]
        escalate: [{when: {iterations: 1}, human: "look"}]
        """)
    runs = json.loads(cli("run", str(spec), "--json").stdout)["runs"]
    a, b = (r["id"] for r in runs)
    assert cli("review", a, "--approve").returncode == 0
    assert cli("review", b, "--reject").returncode == 0
    statuses = {r["id"]: (r["status"], r["stop_reason"]) for r in json.loads(cli("runs", "--json").stdout)}
    assert statuses == {a: ("passed", "approved"), b: ("failed", "rejected")}
    again = cli("review", a, "--approve")
    assert again.returncode == 2 and "not waiting for review" in again.stderr


def test_unknown_and_ambiguous_ids_are_usage_errors(cli, write_spec):
    import itertools
    import os

    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{n: 1}, {n: 2}, {n: 3}, {n: 4}, {n: 5}, {n: 6}, {n: 7}, {n: 8}]
        """)
    for _ in range(10):  # nine new ids a batch (its runs and itself): two soon share a first character
        assert cli("run", str(spec)).returncode == 0
        runs = json.loads(cli("runs", "--json", "--limit", "1000").stdout)
        ids = {r["id"] for r in runs} | {r["batch_id"] for r in runs}
        a, b = max(itertools.combinations(sorted(ids), 2), key=lambda pair: len(os.path.commonprefix(pair)))
        if os.path.commonprefix((a, b)):
            break
    prefix = os.path.commonprefix((a, b))
    assert prefix, "ten batches and still no two ids sharing a first character"
    done = cli("show", prefix)
    assert done.returncode == 2
    assert f"ID prefix {prefix!r} is ambiguous" in done.stderr and "give more characters" in done.stderr
    assert a in done.stderr or b in done.stderr
    assert cli("show", a).returncode == 0 and cli("show", b).returncode == 0  # each whole id is still unique
    unique = a[:len(prefix) + 1]
    assert cli("show", unique).returncode == 0
    done = cli("show", "ffffffffffff")
    assert done.returncode == 2 and "no run or batch" in done.stderr


def test_ledger_option_goes_before_or_after_the_command(cli, write_spec, tmp_path):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: go}
        """)
    other = tmp_path / "other.db"
    assert cli("--ledger", str(other), "run", str(spec)).returncode == 0
    assert len(json.loads(cli("runs", "--ledger", str(other), "--json").stdout)) == 1
    assert cli("runs", "--json").returncode == 2  # the default ledger was never created


def test_the_console_script_runs_a_loop_offline_and_its_help_lists_every_command(cli_proc, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: go}
        """)
    done = cli_proc("run", str(spec), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["passed"] == 1
    helped = cli_proc("--help")
    for command in ("run", "check", "runs", "show", "review", "resume"):
        assert command in helped.stdout


def test_every_json_output_is_one_document_and_nothing_else(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: go}
        """)
    for args in (["run", str(spec), "--json"], ["runs", "--json"], ["review", "--json"], ["check", str(spec), "--json"]):
        done = cli(*args)
        json.loads(done.stdout)


def test_resume_finishes_the_cases_without_a_finished_run_and_records_the_invocation(cli, write_spec, tmp_path):
    import sqlite3

    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["ok"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{id: a, n: 1}, {id: b, n: 2}, {id: c, n: 3}]
        """)
    report = json.loads(cli("run", str(spec), "--json").stdout)
    batch_id = report["batch_id"]
    db = sqlite3.connect(tmp_path / "ledger.db")
    with db:  # as if Ctrl-C came before case c started and while b was in flight
        db.execute("DELETE FROM runs WHERE case_id='c'")
        db.execute("UPDATE runs SET status='interrupted', stop_reason='interrupted' WHERE case_id='b'")
        db.execute("UPDATE batches SET status='interrupted' WHERE id=?", (batch_id,))
    done = cli("resume", batch_id[:8], "--json")
    assert done.returncode == 0, done.stderr
    rows = db.execute("SELECT case_id, status FROM runs WHERE batch_id=? ORDER BY case_id, started_at", (batch_id,)).fetchall()
    # b continued in place from its last committed iteration; c ran; a was neither run nor paid again
    assert rows == [("a", "passed"), ("b", "passed"), ("c", "passed")]
    batches = dict(db.execute("SELECT kind, status FROM batches").fetchall())
    assert batches == {"run": "done", "resume": "done"}
    tags = json.loads(db.execute("SELECT tags FROM batches WHERE kind='resume'").fetchone()[0])
    assert tags["resumes"] == batch_id


def test_version_prints_the_package_version(cli):
    import loopkit

    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"loopkit {loopkit.__version__}"


def test_the_version_is_the_installed_distribution_version(cli):
    from importlib.metadata import version

    assert cli("--version").stdout == f"loopkit {version('loopkit')}\n"


def test_shell_completion_completes_commands_and_options(cli):
    commands = cli(env={"_LOOPKIT_COMPLETE": "complete_bash", "COMP_WORDS": "loopkit sch", "COMP_CWORD": "1"})
    assert commands.returncode == 0 and commands.stdout.split() == ["schema"]
    options = cli("run", env={"_LOOPKIT_COMPLETE": "complete_bash", "COMP_WORDS": "loopkit run --conc", "COMP_CWORD": "2"})
    assert options.stdout.split() == ["--concurrency"]


def test_show_completion_prints_a_script_that_calls_back_into_loopkit(cli):
    done = cli("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert done.returncode == 0
    assert "_LOOPKIT_COMPLETE=complete_bash" in done.stdout and "complete -o default -F _loopkit_completion loopkit" in done.stdout


def test_the_run_summary_and_show_batch_say_why_runs_errored(cli, write_spec, fake_llm):
    from fake_llm import Reply

    fake_llm.default = Reply(status=401)
    unauthorized = write_spec(f"""
        model: {{id: openai/gpt-4o-mini, api_base: "{fake_llm.base_url}"}}
        task: {{prompt: "{{{{ case.n }}}}"}}
        inputs: [{{id: a, n: 1}}, {{id: b, n: 2}}]
        """, name="unauthorized.yaml")
    done = cli("run", str(unauthorized), "--max-retries", "1")
    assert done.returncode == 4, done.stderr
    assert "why 2 runs errored:" in done.stdout
    assert "2 × authentication failed (401/403): AuthenticationError" in done.stdout and "fake error 401" in done.stdout
    batch = json.loads(cli("runs", "--json").stdout)[0]["batch_id"]
    shown = cli("show", batch)
    assert "2 × authentication failed (401/403)" in shown.stdout
    (kind,) = json.loads(cli("show", batch, "--json").stdout)["error_kinds"]
    assert (kind["kind"], kind["runs"], kind["case_id"]) == ("authentication failed (401/403)", 2, "a")

    refused = write_spec("""
        model: {id: openai/gpt-4o-mini, api_base: "http://127.0.0.1:9/v1"}
        task: {prompt: go}
        """, name="refused.yaml")
    done = cli("run", str(refused), "--max-retries", "1", "--json")
    assert done.returncode == 4
    assert [(k["kind"], k["runs"]) for k in json.loads(done.stdout)["error_kinds"]] == [("connection failed", 1)]


def test_checker_errors_and_replay_misses_are_named_in_the_summary(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["{{ case.n }}"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{id: a, n: 1}, {id: b, n: 2}, {id: c, n: 3}]
        checkers: [{name: broken, type: python, function: "checks.py:broken"}]
        """, checks__py="def broken(output, case):\n    if case['n'] == 3:\n        raise ValueError('no judgement today')\n    return True\n")
    done = cli("run", str(spec))
    assert done.returncode == 4
    assert "why 1 run errored:" in done.stdout and "1 × checker error" in done.stdout and "no judgement today" in done.stdout
    batch = json.loads(cli("runs", "--json").stdout)[0]["batch_id"]
    changed = write_spec(spec.read_text().replace('task: {prompt: "{{ case.n }}"}', 'task: {prompt: "again {{ case.n }}"}'),
                         name="changed.yaml", checks__py="def broken(output, case):\n    return True\n")
    replayed = cli("run", str(changed), "--replay", batch, "--json")
    assert replayed.returncode == 4
    (kind,) = json.loads(replayed.stdout)["error_kinds"]
    assert kind["kind"] == "replay miss (no recorded response)" and kind["runs"] == 3


def test_under_json_a_user_error_is_also_a_json_document_on_stdout(cli, write_spec, tmp_path):
    missing = cli("runs", "--json")  # no ledger yet
    assert missing.returncode == 2
    error = json.loads(missing.stdout)["error"]
    assert error["exit_code"] == 2 and error["location"] == str(tmp_path / "ledger.db") and "no ledger here yet" in error["message"]
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1

    bad = write_spec("""
        model: {id: loopkit/scripted, replies: [x]}
        task: {prompt: go}
        chekers: []
        """)
    done = cli("run", str(bad), "--json")
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == 2 and any(f"{bad}:4:1: chekers: unknown key" in p for p in error["problems"])
    assert f"{bad}:4:1" in done.stderr

    good = write_spec("""
        model: {id: loopkit/scripted, replies: [x]}
        task: {prompt: go}
        """, name="good.yaml")
    assert cli("run", str(good)).returncode == 0
    for args, words in ((["show", "ffffffff"], "no run or batch"), (["runs", "--since", "someday"], "bad time 'someday'"),
                        (["cost", "--by", "colour"], "--by 'colour'"), (["runs", "--status", "won"], "--status 'won'")):
        done = cli(*args, "--json")
        assert done.returncode == 2, args
        error = json.loads(done.stdout)["error"]
        assert error["exit_code"] == 2 and words in error["message"], (args, error)
        assert words in done.stderr
    assert cli("show", "ffffffff").stdout == ""  # without --json, stdout stays empty


def test_show_prints_checker_feedback_whole(cli, write_spec):
    feedback = ("The total is off because the standard deduction for a married couple filing jointly was applied twice, "
                "once in the adjusted gross income and once again in the taxable income; subtract it only once and "
                "recompute the bracket amounts from the second bracket onwards, then round to whole dollars at the very end.")
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: go}
        checkers: [{name: tax, type: python, function: "checks.py:tax"}]
        stop: {max_iterations: 1}
        """, checks__py=f"from loopkit import CheckResult\ndef tax(output, case):\n    return CheckResult(score=0, passed=False, feedback={feedback!r})\n")
    run_id = json.loads(cli("run", str(spec), "--json").stdout)["runs"][0]["id"]
    shown = cli("show", run_id).stdout
    assert " ".join(feedback.split()) in " ".join(shown.split())
    assert "…" not in shown


def test_show_says_a_run_was_answered_from_the_cache_and_what_it_would_have_cost(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["{{ case.n }}", "ok"], price: {input_per_mtok: 1000, output_per_mtok: 1000}}
        task: {prompt: "{{ case.n }}"}
        inputs: [{id: a, n: 1}, {id: b, n: 2}]
        checkers: [{name: ok, type: equals, expected: ok}]
        """)
    first = {r["case_id"]: r for r in json.loads(cli("run", str(spec), "--json").stdout)["runs"]}
    assert all(r["cost_usd"] > 0 for r in first.values())
    again = cli("run", str(spec))
    assert f"answered from the cache: 4 of 4 calls; would have cost {money(sum(r['cost_usd'] for r in first.values()))}" in again.stdout
    second = json.loads(cli("runs", "--json").stdout)[0]  # newest first: a run of the second batch
    assert second["cost_usd"] == 0
    shown = cli("show", second["id"])
    assert f"answered from the cache: 2 of 2 calls; would have cost {money(first[second['case_id']]['cost_usd'])}" in shown.stdout
    assert json.loads(cli("show", second["id"], "--json").stdout)["cache"]["cached"] == 2
    assert "answered from the cache: 4 of 4 calls" in cli("show", second["batch_id"]).stdout
    assert "answered from the cache" not in cli("show", first["a"]["id"]).stdout


def test_runs_says_when_it_stopped_at_its_limit(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{n: 1}, {n: 2}, {n: 3}]
        """)
    assert cli("run", str(spec)).returncode == 0
    assert "showing 2 of 3 runs; --limit N for more" in cli("runs", "--limit", "2").stdout
    assert "showing" not in cli("runs", "--limit", "3").stdout
    assert "showing 1 of 3 runs" in cli("runs", "--limit", "1", "--status", "passed").stdout
    assert len(json.loads(cli("runs", "--limit", "2", "--json").stdout)) == 2


def test_show_batch_lists_its_first_runs_and_json_keeps_every_run(cli, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{n: 1}, {n: 2}]
        """)
    done = cli("run", str(spec), "--repeat", "30", "--json")
    report = json.loads(done.stdout)
    assert len(report["runs"]) == 60 and report["passed"] == 60
    batch = report["batch_id"]
    text = cli("show", batch).stdout
    assert f"showing 50 of 60 runs; loopkit runs --batch {batch[:10]} --limit 60 for all" in text
    assert sum(1 for r in report["runs"] if r["id"][:10] in text) == 50
    listed = json.loads(cli("show", batch, "--json").stdout)
    assert sorted(r["id"] for r in listed["run_rows"]) == sorted(r["id"] for r in report["runs"])
    assert listed["runs"] == 60 and listed["statuses"] == {"passed": 60}
    assert all("state" not in r and "case_json" not in r for r in listed["run_rows"])


# -- a reader that leaves early, a terminal that cannot print every character ----------------------


def _first_line_then_close(args: list[str], env: dict[str, str], cwd) -> tuple[bytes, int, str]:
    """Run the console script into a small pipe, read its first line, close the pipe (as `| head -1` does)
    and return (that line, the exit code, stderr). The output is larger than the pipe, so the script is still
    writing when the pipe closes."""
    import fcntl
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("loopkit")), *args], stdout=write_end, stderr=errors,
                                env={**os.environ, **env}, cwd=cwd)
        os.close(write_end)
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(read_end, 1)
            if not chunk:
                break
            line += chunk
        os.close(read_end)
        code = proc.wait(timeout=120)
        errors.seek(0)
        return line, code, errors.read().decode()


def test_a_reader_that_stops_early_ends_output_quietly_and_the_batch_is_kept(write_spec, tmp_path):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["x"]}
        task: {prompt: "{{ case.n }}"}
        inputs: [{id: a-rather-long-case-name-to-fill-the-table-row, n: 1}, {id: b-rather-long-case-name-to-fill-the-row, n: 2}]
        """)
    env = {"LOOPKIT_LEDGER": str(tmp_path / "ledger.db"), "COLUMNS": "200"}
    line, code, errors = _first_line_then_close(["run", str(spec), "--repeat", "40"], env, tmp_path)
    assert line.startswith(b"batch ") and code == 0, errors  # the batch passed: its own exit code, not 1
    assert "Traceback" not in errors and "BrokenPipe" not in errors
    line, code, errors = _first_line_then_close(["run", str(spec), "--repeat", "40", "--json"], env, tmp_path)
    assert line == b"{\n" and code == 0 and "Traceback" not in errors, errors
    line, code, errors = _first_line_then_close(["runs", "--limit", "1000"], env, tmp_path)
    assert code == 0 and "Traceback" not in errors, errors
    import sqlite3

    with sqlite3.connect(tmp_path / "ledger.db") as db:  # both batches were recorded whole
        assert db.execute("SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall() == [("done", 2)]
        assert db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall() == [("passed", 160)]


def test_a_terminal_that_cannot_encode_a_character_gets_it_escaped(cli_proc, write_spec):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["café ⚠ naïve"]}
        task: {prompt: go}
        inputs: [{id: "résumé"}]
        """)
    for env, encoding in (({"PYTHONIOENCODING": "ascii"}, "ascii"), ({"PYTHONIOENCODING": "latin-1"}, "latin-1"),
                          ({"LANG": "C", "LC_ALL": "C"}, "utf-8")):
        done = cli_proc("run", str(spec), env=env, encoding=encoding)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (env, done.stderr)
        run_id = json.loads(cli_proc("runs", "--json", "--limit", "1", env=env, encoding=encoding).stdout)[0]["id"]
        shown = cli_proc("show", run_id, env=env, encoding=encoding)
        assert shown.returncode == 0 and "UnicodeEncodeError" not in shown.stderr, (env, shown.stderr)
        assert "caf" in shown.stdout and ("\\u26a0" in shown.stdout or "⚠" in shown.stdout)
        assert json.loads(cli_proc("show", run_id, "--json", env=env, encoding=encoding).stdout)["output"] == "café ⚠ naïve"
    unknown = cli_proc("show", "ffffffff", env={"PYTHONIOENCODING": "ascii"})
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: ")
