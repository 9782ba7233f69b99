"""Checkers (SPEC.md §1): each turns an output into a score in [0, 1], a pass/fail and feedback.

The feedback of a failed check is what the model reads on its next try, so the tests pin its text.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopkit.budget import BudgetStop
from loopkit.checkers import (
    JUDGE_SYSTEM,
    CheckContext,
    CheckerError,
    CheckResult,
    as_result,
    judge_messages,
    parse_judgement,
    run_checker,
)
from loopkit.status import StopReason
from loopkit.spec import (
    CommandChecker,
    ContainsChecker,
    EqualsChecker,
    JsonChecker,
    JudgeChecker,
    NumberChecker,
    PythonChecker,
    RegexChecker,
)

PASS = CheckResult(1.0, True, "")


async def _no_judge(checker, messages):  # noqa: ANN001, ANN202
    raise AssertionError("this checker must not call a judge")


def check(checker, output: str, case: dict | None = None, *, base_dir: Path = Path("."), threshold: float = 1.0,
          judge=_no_judge, time_left=lambda: None) -> CheckResult:
    ctx = CheckContext(case=case or {}, base_dir=base_dir, pass_threshold=threshold, prompt="What is 6 x 7?", judge=judge,
                       time_left=time_left)
    return asyncio.run(run_checker(checker, output, ctx))


def broken(checker, output: str, case: dict | None = None, **kw) -> str:
    """The reason a checker could not judge (it must raise CheckerError naming itself)."""
    with pytest.raises(CheckerError) as caught:
        check(checker, output, case, **kw)
    assert caught.value.checker == checker.name
    assert str(caught.value) == f"checker {checker.name}: {caught.value.reason}"
    return caught.value.reason


def equals(expected) -> EqualsChecker:
    return EqualsChecker(name="exact", type="equals", expected=expected)


def number(expected, tolerance: float = 0.0) -> NumberChecker:
    return NumberChecker(name="answer", type="number", expected=expected, tolerance=tolerance)


def python(tmp_path: Path, source: str, function: str = "check", **kw) -> PythonChecker:
    (tmp_path / "checks.py").write_text(textwrap.dedent(source))
    return PythonChecker(name="custom", type="python", function=f"checks.py:{function}", **kw)


def command(run: str, timeout: float = 10, **kw) -> CommandChecker:
    return CommandChecker(name="cmd", type="command", run=run, timeout=timeout, **kw)


# --- equals, contains, regex ------------------------------------------------------------------


def test_equals_passes_on_the_same_text_ignoring_surrounding_whitespace():
    assert check(equals("42"), "  42\n") == PASS
    assert check(equals("  42 \n"), "42") == PASS


def test_equals_fails_with_what_it_expected_and_what_it_got():
    assert check(equals("42"), "41\n") == CheckResult(0.0, False, "expected exactly '42', got '41'")


def test_equals_renders_expected_as_a_template_of_the_case():
    assert check(equals("{{ case.x * 2 }}"), "42", {"x": 21}) == PASS
    assert check(equals(42), "42") == PASS  # a YAML number is compared as its text


def test_an_expected_value_naming_a_missing_case_field_is_a_checker_error_not_the_models_failure():
    assert broken(equals("{{ case.answer }}"), "42", {"x": 1}) == "template uses an undefined value: 'dict object' has no attribute 'answer'"


def test_contains_passes_when_the_stripped_expected_text_is_in_the_output():
    contains = ContainsChecker(name="mentions", type="contains", expected="  standard deduction \n")
    assert check(contains, "I took the standard deduction of 14,600.") == PASS
    assert check(contains, "No deduction.") == CheckResult(0.0, False, "the answer must contain 'standard deduction'")


def test_regex_searches_the_stripped_output():
    regex = RegexChecker(name="shape", type="regex", pattern=r"^\d{3}-\d{4}$")
    assert check(regex, "\n555-1234\n") == PASS
    assert check(regex, "call 555-1234") == CheckResult(0.0, False, r"the answer must match /^\d{3}-\d{4}$/")


def test_a_bad_regex_is_a_checker_error_instead_of_a_crash():
    assert broken(RegexChecker(name="shape", type="regex", pattern="(unclosed"), "x").startswith("bad regular expression /(unclosed/")


def test_a_regex_with_catastrophic_backtracking_is_cut_by_its_timeout(monkeypatch):
    monkeypatch.setattr("loopkit.checkers.text.REGEX_TIMEOUT", 0.2)
    # (a|aa)+ can split a run of a's in exponentially many ways before the final b fails them all
    assert broken(RegexChecker(name="shape", type="regex", pattern="^(a|aa)+$"), "a" * 60 + "b") == "timed out after 0.2s"


def test_a_regex_running_past_the_cases_time_budget_ends_the_run_on_its_budget():
    with pytest.raises(BudgetStop) as caught:
        check(RegexChecker(name="shape", type="regex", pattern="^(a|aa)+$"), "a" * 60 + "b", time_left=lambda: 0.1)
    assert caught.value.reason == StopReason.BUDGET_SECONDS
    assert caught.value.detail == "the case's time budget ran out while checker shape ran"


def test_long_outputs_are_shortened_in_feedback():
    result = check(equals("short"), "y" * 500)
    assert result.feedback == f"expected exactly 'short', got '{'y' * 197}...'"


# --- number -------------------------------------------------------------------------------------


def test_number_reads_the_first_number_of_the_answer():
    assert check(number("42"), "The answer is 42.") == PASS
    assert check(number("{{ case.tax }}"), "Tax: 5000 USD (year 2024)", {"tax": 5000}) == PASS


def test_number_fails_with_the_expected_and_found_values():
    assert check(number("42"), "41") == CheckResult(0.0, False, "expected 42, got 41")


def test_number_tolerance_is_inclusive_and_shown_in_feedback():
    assert check(number("42", tolerance=0.5), "42.5") == PASS
    assert check(number("42", tolerance=0.5), "41.4") == CheckResult(0.0, False, "expected 42 (±0.5), got 41.4")


def test_number_understands_thousands_separators_signs_decimals_and_exponents():
    assert check(number("1234567.5"), "Total: $1,234,567.50") == PASS
    assert check(number("-1200"), "a loss of -1,200") == PASS
    assert check(number("0.5"), "about .5") == PASS
    assert check(number("1500"), "1.5e3") == PASS
    assert check(number("{{ case.wages }}"), "50000", {"wages": "50,000"}) == PASS


def test_a_comma_between_numbers_is_not_a_thousands_separator():
    assert check(number("1"), "1,2,3") == PASS
    assert check(number("42"), "42, then 43") == PASS


def test_number_feedback_shows_every_digit_that_was_compared():
    assert check(number("1234567"), "1,234,568").feedback == "expected 1234567, got 1234568"
    assert check(number("0.1"), "0.30000000000000004").feedback == "expected 0.1, got 0.30000000000000004"


def test_number_fails_when_the_answer_has_no_number():
    assert check(number("42"), "forty-two") == CheckResult(0.0, False, "no number in the answer; expected 42")


def test_an_expected_value_that_is_not_a_number_is_a_checker_error():
    assert broken(number("{{ case.x }}"), "42", {"x": "n/a"}) == "expected value 'n/a' is not a number"


# --- json -----------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["tax"], "properties": {"tax": {"type": "number", "minimum": 0}}}


def test_json_passes_on_any_valid_json_without_a_schema():
    assert check(JsonChecker(name="j", type="json"), '{"tax": "anything"}') == PASS
    assert check(JsonChecker(name="j", type="json"), "[1, 2]") == PASS


def test_json_fails_on_invalid_json_with_where_it_broke():
    assert check(JsonChecker(name="j", type="json"), '{"tax": 1,}') == CheckResult(
        0.0, False, "the answer is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 11")


def test_json_accepts_an_answer_wrapped_in_a_markdown_fence():
    fenced = '```json\n{"tax": 5}\n```\n'
    assert check(JsonChecker(name="j", type="json", schema=SCHEMA), fenced) == PASS
    assert check(JsonChecker(name="j", type="json"), '```\n{"tax": 5}\n```') == PASS


def test_json_with_a_schema_lists_what_does_not_match():
    checker = JsonChecker(name="j", type="json", schema=SCHEMA)
    assert check(checker, '{"tax": 5}') == PASS
    assert check(checker, '{"total": 5}') == CheckResult(0.0, False, "the JSON does not match the schema: (root): 'tax' is a required property")
    assert check(checker, '{"tax": -1}') == CheckResult(
        0.0, False, "the JSON does not match the schema: tax: -1 is less than the minimum of 0")


def test_json_schema_errors_at_several_paths_are_all_reported():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}}}
    result = check(JsonChecker(name="j", type="json", schema=schema), '{"a": "x", "b": [1, "ok", 2]}')
    assert result.feedback == ("the JSON does not match the schema: a: 'x' is not of type 'integer'; "
                               "b/0: 1 is not of type 'string'; b/2: 2 is not of type 'string'")


# --- python -------------------------------------------------------------------------------------


def test_a_python_checker_returning_true_or_false(tmp_path):
    checker = python(tmp_path, """
        def check(output, case):
            return output.strip() == str(case["x"] * 2)
    """)
    assert check(checker, "42", {"x": 21}, base_dir=tmp_path) == PASS
    assert check(checker, "41", {"x": 21}, base_dir=tmp_path) == CheckResult(0.0, False, "")


def test_a_python_checker_returning_a_score_passes_at_the_threshold(tmp_path):
    checker = python(tmp_path, """
        def check(output, case):
            return len(output) / 10
    """)
    assert check(checker, "12345678", base_dir=tmp_path, threshold=0.8) == CheckResult(0.8, True, "")
    assert check(checker, "1234567", base_dir=tmp_path, threshold=0.8) == CheckResult(0.7, False, "")
    assert check(checker, "x" * 50, base_dir=tmp_path, threshold=0.8) == CheckResult(1.0, True, "")  # clamped to [0, 1]


def test_a_python_checker_returning_a_check_result_keeps_its_feedback(tmp_path):
    checker = python(tmp_path, """
        from loopkit import CheckResult

        def check(output, case):
            return CheckResult(score=0.25, passed=False, feedback="the deduction is missing")
    """)
    assert check(checker, "x", base_dir=tmp_path) == CheckResult(0.25, False, "the deduction is missing")


def test_a_python_checker_that_raises_is_a_checker_error_naming_the_exception(tmp_path):
    checker = python(tmp_path, """
        def check(output, case):
            return 1 / 0
    """)
    assert broken(checker, "x", base_dir=tmp_path) == "checks.py:check raised ZeroDivisionError: division by zero"


@pytest.mark.parametrize("module, ending, reason", [
    ("sys", "sys.exit(3)", "checks.py:check called sys.exit(3)"),
    ("os", "os._exit(7)", "checks.py:check: its process ended (exit code 7)"),  # the worker dies: a new one takes over
])
def test_a_python_checker_that_exits_is_a_checker_error_and_the_next_check_still_runs(tmp_path, module, ending, reason):
    checker = python(tmp_path, f"""
        import {module}

        def check(output, case):
            if output == "exit":
                {ending}
            return True
    """)
    assert broken(checker, "exit", base_dir=tmp_path) == reason
    assert check(checker, "fine", base_dir=tmp_path) == PASS


def test_a_python_checker_returning_something_else_is_a_checker_error(tmp_path):
    checker = python(tmp_path, """
        def check(output, case):
            return None
    """)
    assert broken(checker, "x", base_dir=tmp_path) == (
        "checks.py:check raised TypeError: a checker must return bool, float or CheckResult, not NoneType")
    (tmp_path / "nan.py").write_text("def check(output, case):\n    return float('nan')\n")
    nan = PythonChecker(name="custom", type="python", function="nan.py:check")
    assert broken(nan, "x", base_dir=tmp_path) == "nan.py:check raised TypeError: a checker must return a score in [0, 1], not NaN"


def _pid_looping_forever(tmp_path: Path, **kw) -> tuple[PythonChecker, Path]:
    pidfile = tmp_path / "worker.pid"
    checker = python(tmp_path, f"""
        import os

        def check(output, case):
            open({str(pidfile)!r}, "w").write(str(os.getpid()))
            while True:
                pass
    """, **kw)
    return checker, pidfile


def test_a_python_checker_that_loops_forever_is_killed_at_its_timeout(tmp_path):
    checker, pidfile = _pid_looping_forever(tmp_path, timeout=0.5)
    assert broken(checker, "x", base_dir=tmp_path) == "timed out after 0.5s"
    assert not _alive(int(pidfile.read_text()))


def test_a_python_checker_running_past_the_cases_time_budget_ends_the_run_on_its_budget(tmp_path):
    checker, pidfile = _pid_looping_forever(tmp_path)  # its own timeout (60 s) is not what stops it
    with pytest.raises(BudgetStop) as caught:
        check(checker, "x", base_dir=tmp_path, time_left=lambda: 0.5)
    assert caught.value.reason == StopReason.BUDGET_SECONDS
    assert not _alive(int(pidfile.read_text()))


def test_a_python_checker_may_print_and_read_stdin_without_disturbing_loopkit(tmp_path):
    checker = python(tmp_path, """
        import sys

        def check(output, case):
            print("debugging", output)
            return sys.stdin.read() == "" and output == "ok"
    """)
    assert check(checker, "ok", base_dir=tmp_path) == PASS
    assert check(checker, "ok", base_dir=tmp_path) == PASS


def test_a_python_checker_cannot_change_the_case_other_checkers_see(tmp_path):
    checker = python(tmp_path, """
        def check(output, case):
            case["x"] = "changed"
            return True
    """)
    case = {"x": 1}
    assert check(checker, "ok", case, base_dir=tmp_path) == PASS
    assert case == {"x": 1}


def test_a_python_checker_may_be_async(tmp_path):
    checker = python(tmp_path, """
        async def check(output, case):
            return output == "ok"
    """)
    assert check(checker, "ok", base_dir=tmp_path) == PASS


def test_the_python_file_is_found_relative_to_the_spec_folder_and_may_import_its_neighbours(tmp_path, monkeypatch):
    folder = tmp_path / "loop"
    folder.mkdir()
    (folder / "rules.py").write_text("LIMIT = 3\n")
    checker = python(folder, """
        from rules import LIMIT

        def short_enough(output, case):
            return len(output.split()) <= LIMIT
    """, function="short_enough")
    monkeypatch.chdir(tmp_path)  # not the spec's folder: the path is relative to base_dir, not the cwd
    assert check(checker, "one two three", base_dir=folder) == PASS
    assert check(checker, "one two three four", base_dir=folder).passed is False


def test_a_missing_function_is_a_checker_error(tmp_path):
    checker = python(tmp_path, "def other(output, case):\n    return True\n", function="absent")
    assert "has no function 'absent'" in broken(checker, "x", base_dir=tmp_path)


def test_as_result_normalises_what_a_user_checker_returns():
    assert as_result(True, 1.0) == CheckResult(1.0, True, "")
    assert as_result(0, 0.5) == CheckResult(0.0, False, "")
    assert as_result(0.5, 0.5) == CheckResult(0.5, True, "")
    assert as_result(-3, 0.5) == CheckResult(0.0, False, "")
    assert as_result(CheckResult(1.5, True, "great"), 1.0) == CheckResult(1.0, True, "great")
    assert as_result((0.3, False, "why"), 1.0) == CheckResult(0.3, False, "why")
    with pytest.raises(TypeError):
        as_result("yes", 1.0)


# --- command --------------------------------------------------------------------------------------


def test_a_command_that_exits_0_passes():
    assert check(command("true"), "x") == PASS


def test_a_command_that_fails_gives_its_exit_code_and_output_as_feedback():
    result = check(command("echo 'FAILED test_median - assert 2 == 3' >&2; exit 1"), "x")
    assert result == CheckResult(0.0, False, "`echo 'FAILED test_median - assert 2 == 3' >&2; exit 1` exited 1:\n"
                                             "FAILED test_median - assert 2 == 3")


def test_a_failing_command_feedback_keeps_only_the_tail_of_a_long_output():
    result = check(command("seq 1 5000; exit 3"), "x")
    assert not result.passed
    assert result.feedback.endswith("\n4999\n5000") and len(result.feedback) < 2100
    assert "\n1\n2\n" not in result.feedback


def test_a_command_gets_the_output_on_stdin_and_in_loopkit_output():
    assert check(command('test "$(cat)" = "hello world"'), "hello world") == PASS
    assert check(command('test "$LOOPKIT_OUTPUT" = "hello world"'), "hello world") == PASS
    assert check(command('test "$LOOPKIT_OUTPUT" = "hello world"'), "bye").passed is False


def test_a_command_runs_in_the_spec_folder(tmp_path):
    (tmp_path / "marker.txt").write_text("here")
    assert check(command("test -f marker.txt"), "x", base_dir=tmp_path) == PASS


def test_a_command_that_runs_past_its_timeout_is_killed_and_fails(tmp_path):
    pidfile = tmp_path / "child.pid"
    # the shell starts a child and waits: the kill must reach the child too, not just the shell
    result = check(command(f"sleep 5 & echo $! > {pidfile}; wait", timeout=0.2), "x")
    assert result == CheckResult(0.0, False, f"`sleep 5 & echo $! > {pidfile}; wait` timed out after 0.2s")
    child = int(pidfile.read_text())
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child may linger as a zombie until its (dead) parent's reaper collects it
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _carrying(tag: str) -> list[int]:
    """Processes whose environment holds LOOPKIT_CHECK_ID=tag, read straight from /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOOPKIT_CHECK_ID={tag}".encode() in environ:
            found.append(int(pid))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize("run, timeout, passed", [
    # the shell waits until its escaped child has written its pid, then exits 0 and leaves it running
    ("echo $LOOPKIT_CHECK_ID > tag; setsid sh -c 'echo $$ > pid; exec sleep 1000' </dev/null >/dev/null 2>&1 &"
     " while [ ! -s pid ]; do :; done", 10, True),
    # the shell waits for a child in its own session, past the timeout
    ("echo $LOOPKIT_CHECK_ID > tag; setsid sh -c 'echo $$ > pid; exec sleep 1000' & wait", 0.5, False),
])
def test_no_process_a_command_started_outlives_it_even_in_a_new_session(tmp_path, run, timeout, passed):
    result = check(command(run, timeout=timeout), "x", base_dir=tmp_path)
    assert result.passed is passed
    escaped = int((tmp_path / "pid").read_text())
    assert not _alive(escaped)
    assert _carrying((tmp_path / "tag").read_text().strip()) == []


def test_a_command_does_not_see_secrets_unless_its_env_names_them(monkeypatch):
    monkeypatch.setenv("SHOP_API_KEY", "sk-shop-0123456789")
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-0123456789")
    monkeypatch.setenv("PLAIN_SETTING", "visible")
    assert check(command('test -z "$SHOP_API_KEY" && test -z "$DEPLOY_TOKEN" && test "$PLAIN_SETTING" = visible'), "x") == PASS
    passed = command('test "$SHOP_API_KEY" = sk-shop-0123456789 && test -z "$DEPLOY_TOKEN"', env=["SHOP_API_KEY"])
    assert check(passed, "x") == PASS


def test_a_command_running_past_the_cases_time_budget_ends_the_run_on_its_budget(tmp_path):
    with pytest.raises(BudgetStop) as caught:
        check(command(f"echo $$ > {tmp_path}/pid; exec sleep 1000", timeout=60), "x", time_left=lambda: 0.5)
    assert caught.value.reason == StopReason.BUDGET_SECONDS
    assert not _alive(int((tmp_path / "pid").read_text()))


def test_a_command_that_cannot_start_is_a_checker_error(tmp_path):
    assert broken(command("true"), "x", base_dir=tmp_path / "missing").startswith("`true` could not start: ")


def test_an_output_with_a_nul_byte_still_reaches_the_command():
    assert check(command("test $(wc -c) = 3"), "a\0b") == PASS


def test_an_output_too_long_for_an_environment_variable_is_given_on_stdin_only():
    long = "x" * 300_000
    assert check(command("test $(wc -c) = 300000"), long) == PASS
    failed = check(command('test -n "$LOOPKIT_OUTPUT"'), long)
    assert failed.feedback == ('`test -n "$LOOPKIT_OUTPUT"` exited 1\n'
                               "(the answer, 300,000 bytes, is too long for $LOOPKIT_OUTPUT; it was given on stdin only)")


# --- judge ----------------------------------------------------------------------------------------


def test_parse_judgement_reads_a_json_score_and_reason():
    assert parse_judgement('{"score": 0.8, "reason": "mostly justified"}', 0.75) == CheckResult(0.8, True, "mostly justified")
    assert parse_judgement('{"score": 0.5}', 0.75) == CheckResult(0.5, False, "")


def test_parse_judgement_finds_the_json_inside_prose_or_a_fence():
    text = 'Let me grade {the answer}.\n```json\n{"score": 1, "reason": "every figure {is} shown"}\n```\nDone {ok}.'
    assert parse_judgement(text, 1.0) == CheckResult(1.0, True, "every figure {is} shown")


def test_parse_judgement_clamps_scores_to_0_1():
    assert parse_judgement('{"score": 7}', 1.0).score == 1.0
    assert parse_judgement('{"score": -1}', 0.5).score == 0.0
    assert parse_judgement('{"score": "0.9"}', 0.5) == CheckResult(0.9, True, "")


def test_parse_judgement_of_a_reply_without_a_score_is_none():
    for reply in ("I think it's fine!", '{"grade": "A"}', '{"score": "high"}', '{"score": NaN}', '{"score": 1' + '0' * 400 + '}', ""):
        assert parse_judgement(reply, 0.5) is None, reply


def test_a_judge_that_gives_no_score_is_a_checker_error_quoting_its_reply():
    async def judge(checker, messages):  # noqa: ANN001, ANN202
        return "I think it's fine!"

    checker = JudgeChecker(name="review", type="judge", rubric="Is every figure justified?")
    assert broken(checker, "42", judge=judge) == "the judge did not answer with a JSON {\"score\": ...}: \"I think it's fine!\""


def test_the_judge_is_asked_with_the_rubric_the_task_and_the_answer():
    checker = JudgeChecker(name="review", type="judge", rubric="Is every figure justified?")
    system, user = judge_messages(checker, "What is 6 x 7?", "42")
    assert system == {"role": "system", "content": JUDGE_SYSTEM}
    assert user == {"role": "user", "content": "Rubric:\nIs every figure justified?\n\nTask given to the model:\nWhat is 6 x 7?"
                                               "\n\nThe model's answer:\n42"}


def test_check_judge_calls_the_judge_and_grades_with_its_reply():
    asked = []

    async def judge(checker, messages):  # noqa: ANN001, ANN202
        asked.append((checker.name, messages[-1]["content"]))
        return 'Sure. {"score": 0.6, "reason": "the deduction is not explained"}'

    checker = JudgeChecker(name="review", type="judge", rubric="Is every figure justified?")
    assert check(checker, "42", judge=judge, threshold=0.9) == CheckResult(0.6, False, "the deduction is not explained")
    assert asked == [("review", "Rubric:\nIs every figure justified?\n\nTask given to the model:\nWhat is 6 x 7?"
                                "\n\nThe model's answer:\n42")]


# --- a broken checker stops the run (SPEC.md §10) ------------------------------------------------

BROKEN = {
    "judge": ('{name: broken, type: judge, rubric: "Is it right?"}',
              """the judge did not answer with a JSON {"score": ...}: 'no score today'"""),
    "raises": ('{name: broken, type: python, function: "checks.py:raises"}', "checks.py:raises raised ValueError: boom"),
    "exits": ('{name: broken, type: python, function: "checks.py:exits"}', "checks.py:exits called sys.exit(3)"),
    "template": ('{name: broken, type: contains, expected: "{{ case.missing }}"}',
                 "template uses an undefined value: 'dict object' has no attribute 'missing'"),
}
CHECKS_PY = """
import sys

def raises(output, case):
    raise ValueError("boom")

def exits(output, case):
    sys.exit(3)
"""


@pytest.mark.parametrize("audit", [False, True], ids=["graded", "audit"])
@pytest.mark.parametrize("cause", sorted(BROKEN))
def test_a_broken_checker_ends_the_run_as_checker_error_and_is_never_fed_back(fake_llm, tmp_path, cli, cause, audit):
    line, reason = BROKEN[cause]
    (tmp_path / "checks.py").write_text(CHECKS_PY)
    (tmp_path / "spec.yaml").write_text(textwrap.dedent(f"""\
        name: broken
        model: {{id: openai/test-model, api_base: "{fake_llm.base_url}", api_key_env: TEST_KEY,
                 price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
        params: {{max_tokens: 50}}
        task: {{prompt: "what is six times seven?", feedback: "RETRY: {{{{ feedback }}}}"}}
        inputs: [{{id: one}}]
        stop: {{max_iterations: 3}}
        checkers:
          - {{name: answer, type: equals, expected: "42"}}
          - {line[:-1]}, audit: {str(audit).lower()}}}
        """))
    fake_llm.queue("42", "no score today")  # the worker's answer, then (for a judge) the judge's reply
    proc = cli("run", "spec.yaml", "--json", env={"TEST_KEY": "sk-test-0123456789abcdef"})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["runs"]
    assert (run["status"], run["stop_reason"], run["suspect"]) == ("error", "checker_error", None)
    assert run["message"] == f"checker broken: {reason}"

    db = sqlite3.connect(tmp_path / "ledger.db")
    events = db.execute("SELECT kind, detail FROM events WHERE run_id=?", (run["id"],)).fetchall()
    assert [(kind, json.loads(detail)) for kind, detail in events] == [("error", {"checker": "broken", "message": reason})]
    calls = db.execute("SELECT role, messages, response FROM calls WHERE run_id=? ORDER BY created_at", (run["id"],)).fetchall()
    paid = [("worker", "42")] + ([("judge", "no score today")] if cause == "judge" else [])
    assert [(role, response) for role, _, response in calls] == paid  # the calls the iteration paid for are kept
    assert len(fake_llm.requests) == len(paid)  # no further call: the model never hears of the broken checker
    assert not any("RETRY" in m or reason in m for _, m, _ in calls)


def test_ctrl_c_stops_a_batch_whose_python_checker_loops_forever_and_kills_its_process(tmp_path):
    pidfile = tmp_path / "worker.pid"
    (tmp_path / "checks.py").write_text(textwrap.dedent(f"""\
        import os

        def check(output, case):
            open({str(pidfile)!r}, "w").write(str(os.getpid()))
            while True:
                pass
        """))
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""\
        name: stuck
        model: {id: loopkit/scripted, replies: ["42"]}
        task: {prompt: "six times seven?"}
        checkers: [{name: forever, type: python, function: "checks.py:check"}]
        """))
    exe = Path(sys.executable).with_name("loopkit")
    env = {**os.environ, "LOOPKIT_LEDGER": str(tmp_path / "ledger.db")}
    proc = subprocess.Popen([str(exe), "run", "spec.yaml"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # polling for the checker to start, bounded
        assert pidfile.exists(), proc.communicate()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert not _alive(int(pidfile.read_text()))
