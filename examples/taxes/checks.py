"""Checkers for the taxes loop: 2024 US federal income tax for one W-2 household.

Each checker is a pure function `fn(output, case) -> CheckResult`: `output` is the model's answer
(a JSON object as text), `case` is one row of cases.jsonl (`status`, `wages`, maybe `notes`).
Feedback names the right figure and, when it recognises the mistake, what went wrong, so the
next iteration can fix it.

The tax is computed exactly, bracket by bracket (the "Tax Computation Worksheet" method), in
Decimal so cents are exact; an answer within TOLERANCE of it passes.

Sources: IRS Rev. Proc. 2023-34 (tax year 2024 brackets and standard deduction).
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from loopkit import CheckResult

# Upper end of each bracket (None = no upper end) and its marginal rate, tax year 2024.
BRACKETS: dict[str, list[tuple[int | None, Decimal]]] = {
    "single": [
        (11_600, Decimal("0.10")),
        (47_150, Decimal("0.12")),
        (100_525, Decimal("0.22")),
        (191_950, Decimal("0.24")),
        (243_725, Decimal("0.32")),
        (609_350, Decimal("0.35")),
        (None, Decimal("0.37")),
    ],
    "married_joint": [
        (23_200, Decimal("0.10")),
        (94_300, Decimal("0.12")),
        (201_050, Decimal("0.22")),
        (383_900, Decimal("0.24")),
        (487_450, Decimal("0.32")),
        (731_200, Decimal("0.35")),
        (None, Decimal("0.37")),
    ],
}

STANDARD_DEDUCTION: dict[str, Decimal] = {
    "single": Decimal("14600"),
    "married_joint": Decimal("29200"),
}

#: How far (USD) an answer may be from the exact figure and still pass.
TOLERANCE = Decimal("1.00")

CENT = Decimal("0.01")


# --- the arithmetic -------------------------------------------------------------------------


def taxable_income(wages: Any, status: str) -> Decimal:
    """Wages minus the standard deduction for `status`, never below zero."""
    return max(_money(wages) - STANDARD_DEDUCTION[status], Decimal(0)).quantize(CENT)


def tax_on(taxable: Any, status: str) -> Decimal:
    """Tax on `taxable` income: each slice of income taxed at its bracket's rate, rounded to cents."""
    return sum((amount * rate for amount, rate in bracket_slices(taxable, status)), Decimal(0)).quantize(
        CENT, rounding=ROUND_HALF_UP
    )


def bracket_slices(taxable: Any, status: str) -> list[tuple[Decimal, Decimal]]:
    """(amount taxed, rate) for every bracket `taxable` reaches, lowest first."""
    income = _money(taxable)
    slices = []
    lower = Decimal(0)
    for upper, rate in BRACKETS[status]:
        if income <= lower:
            break
        top = income if upper is None else min(income, Decimal(upper))
        slices.append((top - lower, rate))
        if upper is None:
            break
        lower = Decimal(upper)
    return slices


# --- checkers -------------------------------------------------------------------------------


def taxable_matches(output: str, case: dict) -> CheckResult:
    """`taxable_income` equals wages minus the standard deduction for the filing status."""
    answer, problem = _answer(output, case, "taxable_income")
    if problem:
        return CheckResult(0.0, False, problem)
    status = case["status"]
    expected = taxable_income(case["wages"], status)
    if abs(answer - expected) <= TOLERANCE:
        return CheckResult(1.0, True, "")
    deduction = STANDARD_DEDUCTION[status]
    message = (
        f"taxable_income should be {_fmt(expected)} = wages {_fmt(_money(case['wages']))} - standard deduction "
        f"{_fmt(deduction)} ({status}); you answered {_fmt(answer)}"
    )
    if abs(answer - _money(case["wages"])) <= TOLERANCE:
        message += ". You did not subtract the standard deduction"
    return CheckResult(0.0, False, message)


def tax_matches(output: str, case: dict) -> CheckResult:
    """`tax` equals the bracket-table tax on the correct taxable income (within TOLERANCE)."""
    answer, problem = _answer(output, case, "tax")
    if problem:
        return CheckResult(0.0, False, problem)
    status = case["status"]
    taxable = taxable_income(case["wages"], status)
    expected = tax_on(taxable, status)
    if abs(answer - expected) <= TOLERANCE:
        return CheckResult(1.0, True, "")
    message = f"tax should be {_fmt(expected)} for taxable income {_fmt(taxable)} ({status}); you answered {_fmt(answer)}"
    hint = _diagnose(answer, case)
    if hint:
        message += f". {hint}"
    return CheckResult(0.0, False, message)


def in_scope(output: str, case: dict) -> CheckResult:
    """Fails when the answer asks for a person (`"needs_review": true`): the household is outside
    what this loop can check (income besides W-2 wages, itemized deductions, wages over $1M...).
    The spec escalates that failure to a human."""
    data = _parse(output)
    if data is None:
        return CheckResult(0.0, False, "the answer is not a JSON object")
    if data.get("needs_review") is True:
        reason = str(data.get("review_reason") or "no reason given").strip()
        return CheckResult(0.0, False, f"the answer asks for a person's review: {reason}")
    return CheckResult(1.0, True, "")


def mentions_deduction(output: str, case: dict) -> CheckResult:
    """Audit: the explanation names the standard deduction and its amount for the filing status.

    An answer can get the numbers right without saying how; this is logged, not fed back."""
    data = _parse(output)
    explanation = str((data or {}).get("explanation") or "")
    status = case.get("status")
    if status not in STANDARD_DEDUCTION:
        return CheckResult(0.0, False, f"unknown filing status {status!r}")
    amount = STANDARD_DEDUCTION[status]
    named = "standard deduction" in explanation.lower()
    amounts = {f"{amount:,.0f}", f"{amount:.0f}", f"{amount:,.2f}", f"{amount:.2f}"}
    stated = any(a in explanation for a in amounts)
    if named and stated:
        return CheckResult(1.0, True, "")
    missing = [what for what, ok in (("the words 'standard deduction'", named), (f"its amount {_fmt(amount)}", stated)) if not ok]
    return CheckResult(0.0, False, "the explanation does not state " + " or ".join(missing))


# --- helpers --------------------------------------------------------------------------------


def _parse(output: str) -> dict | None:
    """The answer's JSON object, tolerating a ```json fence or text around it."""
    text = output.strip()
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    if fenced:
        text = fenced.group(1)
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1]):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _money(value: Any) -> Decimal:
    """A dollar amount from a number or a string such as '$5,216.00'."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    text = str(value).strip().replace(",", "").replace("$", "")
    return Decimal(text)


def _answer(output: str, case: dict, key: str) -> tuple[Decimal, str]:
    """The answer's `key` as a Decimal, or a problem message saying why there is none."""
    if case.get("status") not in BRACKETS:
        return Decimal(0), f"unknown filing status {case.get('status')!r}: expected one of {', '.join(BRACKETS)}"
    data = _parse(output)
    if data is None:
        return Decimal(0), f"the answer is not a JSON object with a numeric {key!r}"
    if key not in data:
        return Decimal(0), f"the answer has no {key!r} field"
    try:
        return _money(data[key]), ""
    except (ArithmeticError, ValueError):
        return Decimal(0), f"{key!r} is {data[key]!r}, expected a number"


def _diagnose(answer: Decimal, case: dict) -> str:
    """Name a common mistake when the wrong answer matches it."""
    status = case["status"]
    wages = _money(case["wages"])
    taxable = taxable_income(wages, status)
    other = "single" if status == "married_joint" else "married_joint"
    known = [
        (tax_on(wages, status), "That is the tax on the full wages: subtract the standard deduction first"),
        (tax_on(taxable_income(wages, other), other), f"That is the {other} amount: use the {status} brackets and deduction"),
        (tax_on(taxable, other), f"That uses the {other} brackets: use the {status} brackets"),
        (tax_on(wages, other), f"That skips the standard deduction and uses the {other} brackets"),
    ]
    slices = bracket_slices(taxable, status)
    if slices:
        top_rate = slices[-1][1]
        known.append(((taxable * top_rate).quantize(CENT), f"That taxes all income at the top rate {top_rate:.0%}: "
                      "each bracket's rate applies only to the income inside that bracket"))
    for value, hint in known:
        if abs(answer - value) <= TOLERANCE:
            return hint
    return ""


def _fmt(amount: Decimal) -> str:
    return f"{amount:,.2f}"
