"""The built-in checkers that read the output as text: equals, contains, regex, number, json.

They run in the engine's process. The only one that could run away is `regex` (a pattern with
catastrophic backtracking), so it matches with the `regex` package, which takes a timeout.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import TYPE_CHECKING

from ..spec import ContainsChecker, EqualsChecker, JsonChecker, NumberChecker, RegexChecker
from ..templates import render
from .base import CheckContext, CheckerError, CheckResult, TimeLimit, short, verdict

if TYPE_CHECKING:
    import regex

REGEX_TIMEOUT = 5.0  # seconds one match may take; far beyond any sane pattern, short enough not to stall a batch


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
    return verdict(output.strip() == expected, f"expected exactly {short(expected)!r}, got {short(output)!r}")


def check_contains(checker: ContainsChecker, output: str, ctx: CheckContext) -> CheckResult:
    expected = _expected(checker, ctx).strip()
    return verdict(expected in output, f"the answer must contain {short(expected)!r}")


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern[str]:
    """A checker's pattern, compiled once (regex's own cache costs more per search than the search). The
    package is imported here: loading it takes ~17 ms, which only a spec with a regex checker pays."""
    import regex

    return regex.compile(pattern)


def check_regex(checker: RegexChecker, output: str, ctx: CheckContext) -> CheckResult:
    import regex

    limit = TimeLimit.of(REGEX_TIMEOUT, ctx)
    try:
        found = _compiled(checker.pattern).search(output.strip(), timeout=limit.seconds) is not None
    except regex.error as exc:
        raise CheckerError(checker.name, f"bad regular expression /{checker.pattern}/: {exc}") from None
    except TimeoutError:
        raise limit.expired(checker.name) from None
    return verdict(found, f"the answer must match /{checker.pattern}/")


def check_number(checker: NumberChecker, output: str, ctx: CheckContext) -> CheckResult:
    expected_text = _expected(checker, ctx)
    expected = _first_number(expected_text)
    if expected is None:
        raise CheckerError(checker.name, f"expected value {expected_text!r} is not a number")
    found = _first_number(output)
    if found is None:
        return CheckResult(0.0, False, f"no number in the answer; expected {_number(expected)}")
    ok = abs(found - expected) <= checker.tolerance
    within = f" (±{_number(checker.tolerance)})" if checker.tolerance else ""
    return verdict(ok, f"expected {_number(expected)}{within}, got {_number(found)}")


def check_json(checker: JsonChecker, output: str, ctx: CheckContext) -> CheckResult:
    try:
        value = json.loads(_strip_fences(output))
    except json.JSONDecodeError as exc:
        return CheckResult(0.0, False, f"the answer is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if checker.json_schema:
        import jsonschema

        validator = jsonschema.Draft202012Validator(checker.json_schema)  # a broken schema raises: a checker error
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.path])
        if errors:
            detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5])
            return CheckResult(0.0, False, f"the JSON does not match the schema: {detail}")
    return CheckResult(1.0, True, "")
