"""Checkers: each turns an output into a score in [0, 1], a pass/fail, and feedback for the next try.

A user's own checker is a plain function `def check(output, case) -> bool | float | CheckResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import (
    Checker,
    CommandChecker,
    ContainsChecker,
    EqualsChecker,
    JsonChecker,
    JudgeChecker,
    NumberChecker,
    PythonChecker,
    RegexChecker,
)
from .templates import TemplateError, render

FEEDBACK_TAIL = 2000
MAX_ENV_OUTPUT = 100_000  # bytes; Linux refuses one environment string over 128 KiB


@dataclass(frozen=True)
class CheckResult:
    """One checker's verdict on one output."""

    score: float
    passed: bool
    feedback: str = ""


JudgeCall = Callable[[JudgeChecker, list[dict[str, str]]], Awaitable[str]]


@dataclass(frozen=True)
class CheckContext:
    """What a checker may look at besides the output."""

    case: dict[str, Any]
    base_dir: Path
    pass_threshold: float
    prompt: str
    judge: JudgeCall


def _short(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _verdict(ok: bool, feedback: str) -> CheckResult:
    return CheckResult(1.0 if ok else 0.0, ok, "" if ok else feedback)


def _expected(checker: EqualsChecker | ContainsChecker | NumberChecker, ctx: CheckContext) -> str:
    value = checker.expected
    return render(value, case=ctx.case) if isinstance(value, str) else str(value)


# A number as people write it: -1,234.5 (comma thousands separators), 42, .5, 1e-3.
_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


def _number(value: float) -> str:
    """A number as feedback shows it: every digit the comparison saw (1234567, not 1.23457e+06)."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def _strip_fences(text: str) -> str:
    fenced = re.fullmatch(r"\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n\s*```\s*", text, re.S)
    return fenced.group(1) if fenced else text


def check_equals(checker: EqualsChecker, output: str, ctx: CheckContext) -> CheckResult:
    expected = _expected(checker, ctx).strip()
    return _verdict(output.strip() == expected, f"expected exactly {_short(expected)!r}, got {_short(output)!r}")


def check_contains(checker: ContainsChecker, output: str, ctx: CheckContext) -> CheckResult:
    expected = _expected(checker, ctx).strip()
    return _verdict(expected in output, f"the answer must contain {_short(expected)!r}")


def check_regex(checker: RegexChecker, output: str, ctx: CheckContext) -> CheckResult:
    try:
        found = re.search(checker.pattern, output.strip()) is not None
    except re.error as exc:
        return CheckResult(0.0, False, f"checker {checker.name}: bad regular expression /{checker.pattern}/: {exc}")
    return _verdict(found, f"the answer must match /{checker.pattern}/")


def check_number(checker: NumberChecker, output: str, ctx: CheckContext) -> CheckResult:
    expected_text = _expected(checker, ctx)
    expected = _first_number(expected_text)
    if expected is None:
        return CheckResult(0.0, False, f"expected value {expected_text!r} is not a number")
    found = _first_number(output)
    if found is None:
        return CheckResult(0.0, False, f"no number in the answer; expected {_number(expected)}")
    ok = abs(found - expected) <= checker.tolerance
    within = f" (±{_number(checker.tolerance)})" if checker.tolerance else ""
    return _verdict(ok, f"expected {_number(expected)}{within}, got {_number(found)}")


def check_json(checker: JsonChecker, output: str, ctx: CheckContext) -> CheckResult:
    try:
        value = json.loads(_strip_fences(output))
    except json.JSONDecodeError as exc:
        return CheckResult(0.0, False, f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if checker.json_schema:
        import jsonschema

        validator = jsonschema.Draft202012Validator(checker.json_schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])
        if errors:
            detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5])
            return CheckResult(0.0, False, f"the JSON does not match the schema: {detail}")
    return CheckResult(1.0, True, "")


_functions: dict[tuple[str, str], Callable[..., Any]] = {}


def load_function(reference: str, base_dir: Path) -> Callable[..., Any]:
    """Import `file.py:function` relative to the spec's folder (once per process)."""
    rel, name = reference.split(":")
    path = (base_dir / rel).resolve()
    key = (str(path), name)
    if key not in _functions:
        module_name = f"loopkit_user_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            # The file may import its neighbours (`from helpers import ...`), as a script would.
            sys.path.insert(0, str(path.parent))
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(str(path.parent))
        fn = getattr(module, name, None)
        if not callable(fn):
            raise ImportError(f"{path} has no function {name!r}")
        _functions[key] = fn
    return _functions[key]


def as_result(value: Any, pass_threshold: float) -> CheckResult:
    """Normalise a user checker's return value: bool, a number in [0, 1], or a CheckResult."""
    if isinstance(value, CheckResult):
        return CheckResult(min(1.0, max(0.0, float(value.score))), bool(value.passed), value.feedback or "")
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # also numpy's bool
        return CheckResult(1.0 if value else 0.0, bool(value), "")
    if isinstance(value, (int, float)):
        score = min(1.0, max(0.0, float(value)))
        return CheckResult(score, score >= pass_threshold, "")
    if isinstance(value, tuple) and len(value) in (2, 3):
        return as_result(CheckResult(float(value[0]), bool(value[1]), str(value[2]) if len(value) == 3 else ""), pass_threshold)
    raise TypeError(f"a checker must return bool, float or CheckResult, not {type(value).__name__}")


async def check_python(checker: PythonChecker, output: str, ctx: CheckContext) -> CheckResult:
    try:
        fn = load_function(checker.function, ctx.base_dir)
        value = await asyncio.to_thread(fn, output, ctx.case)
        if inspect.isawaitable(value):
            value = await value
        return as_result(value, ctx.pass_threshold)
    except Exception as exc:  # noqa: BLE001 - a broken user checker fails its check, visibly, not the batch
        return CheckResult(0.0, False, f"checker {checker.function} raised {type(exc).__name__}: {exc}")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the command and everything it started (it runs in its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def check_command(checker: CommandChecker, output: str, ctx: CheckContext) -> CheckResult:
    data = output.encode()
    env = {**os.environ, "LOOPKIT_CASE": json.dumps(ctx.case, default=str)}
    note = ""
    if len(data) <= MAX_ENV_OUTPUT:
        env["LOOPKIT_OUTPUT"] = output.replace("\0", "")  # a variable cannot hold a NUL byte; stdin can
    else:  # the kernel refuses larger variables (E2BIG): stdin only
        env.pop("LOOPKIT_OUTPUT", None)
        note = f"\n(the answer, {len(data):,} bytes, is too long for $LOOPKIT_OUTPUT; it was given on stdin only)"
    try:
        proc = await asyncio.create_subprocess_shell(
            checker.run, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=ctx.base_dir, env=env, start_new_session=True,
        )
    except OSError as exc:  # e.g. an output too long for an environment variable (E2BIG)
        return CheckResult(0.0, False, f"`{checker.run}` could not start: {exc.strerror or exc}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), timeout=checker.timeout)
    except asyncio.TimeoutError:
        _kill_group(proc)
        await proc.wait()
        return CheckResult(0.0, False, f"`{checker.run}` timed out after {checker.timeout:g}s{note}")
    except BaseException:  # cancelled (Ctrl-C): leave nothing running
        _kill_group(proc)
        raise
    tail = out.decode(errors="replace")[-FEEDBACK_TAIL:].strip()
    ok = proc.returncode == 0
    return _verdict(ok, (f"`{checker.run}` exited {proc.returncode}:\n{tail}" if tail else f"`{checker.run}` exited {proc.returncode}") + note)


JUDGE_SYSTEM = (
    "You are a strict, fair grader. Grade the answer against the rubric. Reply with JSON only: "
    '{"score": <number from 0 to 1>, "reason": "<one or two sentences>"}'
)


def judge_messages(checker: JudgeChecker, prompt: str, output: str) -> list[dict[str, str]]:
    user = f"Rubric:\n{checker.rubric}\n\nTask given to the model:\n{prompt}\n\nThe model's answer:\n{output}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def _judgement_objects(text: str) -> Iterator[Any]:
    """The JSON value of the whole text, then every JSON object embedded in it (in prose or fences)."""
    decoder = json.JSONDecoder()
    with contextlib.suppress(ValueError):
        yield json.loads(text)
    for match in re.finditer(r"\{", text):
        with contextlib.suppress(ValueError):
            yield decoder.raw_decode(text, match.start())[0]


def parse_judgement(text: str, pass_threshold: float) -> CheckResult:
    """A judge's reply `{"score": 0..1, "reason": "..."}`, also when wrapped in prose; else a failed check."""
    for data in _judgement_objects(text):
        if not isinstance(data, dict) or "score" not in data:
            continue
        try:
            score = float(data["score"])
        except (TypeError, ValueError):
            continue
        if score != score:  # NaN
            continue
        score = min(1.0, max(0.0, score))
        return CheckResult(score, score >= pass_threshold, str(data.get("reason", "")))
    return CheckResult(0.0, False, f'the judge did not answer with a JSON {{"score": ...}}: {_short(text)!r}')


async def check_judge(checker: JudgeChecker, output: str, ctx: CheckContext) -> CheckResult:
    text = await ctx.judge(checker, judge_messages(checker, ctx.prompt, output))
    return parse_judgement(text, ctx.pass_threshold)


_SYNC = {EqualsChecker: check_equals, ContainsChecker: check_contains, RegexChecker: check_regex,
         NumberChecker: check_number, JsonChecker: check_json}
_ASYNC = {PythonChecker: check_python, CommandChecker: check_command, JudgeChecker: check_judge}


async def run_checker(checker: Checker, output: str, ctx: CheckContext) -> CheckResult:
    """Score one output with one checker; a template error is that check's failure."""
    try:
        sync = _SYNC.get(type(checker))
        if sync is not None:
            return sync(checker, output, ctx)  # type: ignore[operator]
        return await _ASYNC[type(checker)](checker, output, ctx)  # type: ignore[operator]
    except TemplateError as exc:
        return CheckResult(0.0, False, f"checker {checker.name}: {exc}")
