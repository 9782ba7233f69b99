"""The `judge` checker: a model grades the answer against a rubric and replies with a JSON score."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

from ..spec import JudgeChecker
from ..redact import safe_text
from .base import CheckContext, CheckerError, CheckResult, short

JUDGE_SYSTEM = (
    "You are a strict, fair grader. Grade the answer against the rubric. Reply with JSON only: "
    '{"score": <number from 0 to 1>, "reason": "<one or two sentences>"}'
)


TOOL_RESULT_CHARS = 2_000  # of each tool result shown to the judge


def tool_call_lines(tool_calls: list[dict[str, Any]]) -> str:
    """The model's tool calls, in order, as a judge reads them (each result cut to TOOL_RESULT_CHARS)."""
    lines = []
    for i, t in enumerate(tool_calls, start=1):
        arguments = json.dumps(t.get("arguments"), ensure_ascii=False)
        said = f"error: {t['error']}" if t.get("error") else (t.get("result") or "")
        lines.append(f"{i}. (step {t.get('step')}) {t.get('tool')}({arguments}) ->\n{short(said, TOOL_RESULT_CHARS)}")
    return "\n".join(lines)


def judge_messages(checker: JudgeChecker, prompt: str, output: str, tool_calls: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
    """What the judge is asked; with the tool calls the model made before answering, when it made any."""
    user = f"Rubric:\n{checker.rubric}\n\nTask given to the model:\n{prompt}\n\n"
    if tool_calls:
        user += f"The tool calls the model made before answering, in order:\n{tool_call_lines(tool_calls)}\n\n"
    user += f"The model's answer:\n{output}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": safe_text(user)}]


def _judgement_objects(text: str) -> Iterator[Any]:
    """The JSON value of the whole text, then every JSON object embedded in it (in prose or fences)."""
    decoder = json.JSONDecoder()
    with contextlib.suppress(ValueError):
        yield json.loads(text)
    for match in re.finditer(r"\{", text):
        with contextlib.suppress(ValueError):
            yield decoder.raw_decode(text, match.start())[0]


def parse_judgement(text: str, pass_threshold: float) -> CheckResult | None:
    """A judge's reply `{"score": 0..1, "reason": "..."}`, also when wrapped in prose; None when it has none."""
    for data in _judgement_objects(text):
        if not isinstance(data, dict) or "score" not in data:
            continue
        try:
            score = float(data["score"])
        except (TypeError, ValueError, OverflowError):
            continue
        if score != score:  # NaN
            continue
        score = min(1.0, max(0.0, score))
        return CheckResult(score, score >= pass_threshold, str(data.get("reason", "")))
    return None


async def check_judge(checker: JudgeChecker, output: str, ctx: CheckContext) -> CheckResult:
    text = await ctx.judge(checker, judge_messages(checker, ctx.prompt, output, ctx.tool_calls))
    result = parse_judgement(text, ctx.pass_threshold)
    if result is None:
        raise CheckerError(checker.name, f'the judge did not answer with a JSON {{"score": ...}}: {short(text)!r}')
    return result
