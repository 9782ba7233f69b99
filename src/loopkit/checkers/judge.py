"""The `judge` checker: a model grades the answer against a rubric and replies with a JSON score."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

from ..spec import JudgeChecker
from ..templates import safe_text
from .base import CheckContext, CheckerError, CheckResult, short

JUDGE_SYSTEM = (
    "You are a strict, fair grader. Grade the answer against the rubric. Reply with JSON only: "
    '{"score": <number from 0 to 1>, "reason": "<one or two sentences>"}'
)


def judge_messages(checker: JudgeChecker, prompt: str, output: str) -> list[dict[str, str]]:
    user = f"Rubric:\n{checker.rubric}\n\nTask given to the model:\n{prompt}\n\nThe model's answer:\n{output}"
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
    text = await ctx.judge(checker, judge_messages(checker, ctx.prompt, output))
    result = parse_judgement(text, ctx.pass_threshold)
    if result is None:
        raise CheckerError(checker.name, f'the judge did not answer with a JSON {{"score": ...}}: {short(text)!r}')
    return result
