"""Checkers: each turns an output into a score in [0, 1], a pass/fail, and feedback for the next try.

A user's own checker is a plain function `def check(output, case) -> bool | float | CheckResult`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
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


_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


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
    return _verdict(re.search(checker.pattern, output.strip()) is not None, f"the answer must match /{checker.pattern}/")


def check_number(checker: NumberChecker, output: str, ctx: CheckContext) -> CheckResult:
    expected_text = _expected(checker, ctx)
    expected = _first_number(expected_text)
    if expected is None:
        return CheckResult(0.0, False, f"expected value {expected_text!r} is not a number")
    found = _first_number(output)
    if found is None:
        return CheckResult(0.0, False, f"no number in the answer; expected {expected:g}")
    ok = abs(found - expected) <= checker.tolerance
    within = f" (±{checker.tolerance:g})" if checker.tolerance else ""
    return _verdict(ok, f"expected {expected:g}{within}, got {found:g}")


def check_json(checker: JsonChecker, output: str, ctx: CheckContext) -> CheckResult:
    try:
        value = json.loads(_strip_fences(output))
    except json.JSONDecodeError as exc:
        return CheckResult(0.0, False, f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if checker.json_schema:
        import jsonschema

        errors = sorted(jsonschema.Draft202012Validator(checker.json_schema).iter_errors(value), key=lambda e: list(e.path))
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
        module_name = f"loopkit_user_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        fn = getattr(module, name, None)
        if not callable(fn):
            raise ImportError(f"{path} has no function {name!r}")
        _functions[key] = fn
    return _functions[key]


def as_result(value: Any, pass_threshold: float) -> CheckResult:
    """Normalise a user checker's return value: bool, a number in [0, 1], or a CheckResult."""
    if isinstance(value, CheckResult):
        return CheckResult(min(1.0, max(0.0, float(value.score))), bool(value.passed), value.feedback or "")
    if isinstance(value, bool):
        return CheckResult(1.0 if value else 0.0, value, "")
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


async def check_command(checker: CommandChecker, output: str, ctx: CheckContext) -> CheckResult:
    env = {**os.environ, "LOOPKIT_OUTPUT": output, "LOOPKIT_CASE": json.dumps(ctx.case, default=str)}
    proc = await asyncio.create_subprocess_shell(
        checker.run, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=ctx.base_dir, env=env, start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(output.encode()), timeout=checker.timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return CheckResult(0.0, False, f"`{checker.run}` timed out after {checker.timeout:g}s")
    tail = out.decode(errors="replace")[-FEEDBACK_TAIL:].strip()
    ok = proc.returncode == 0
    return _verdict(ok, f"`{checker.run}` exited {proc.returncode}:\n{tail}" if tail else f"`{checker.run}` exited {proc.returncode}")


JUDGE_SYSTEM = (
    "You are a strict, fair grader. Grade the answer against the rubric. Reply with JSON only: "
    '{"score": <number from 0 to 1>, "reason": "<one or two sentences>"}'
)


def judge_messages(checker: JudgeChecker, prompt: str, output: str) -> list[dict[str, str]]:
    user = f"Rubric:\n{checker.rubric}\n\nTask given to the model:\n{prompt}\n\nThe model's answer:\n{output}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_judgement(text: str, pass_threshold: float) -> CheckResult:
    match = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(match.group() if match else text)
        score = min(1.0, max(0.0, float(data["score"])))
    except (ValueError, KeyError, TypeError):
        return CheckResult(0.0, False, f"the judge did not answer with JSON score: {_short(text)!r}")
    return CheckResult(score, score >= pass_threshold, str(data.get("reason", "")))


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
