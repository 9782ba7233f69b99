"""Checkers for extract-invoice.yaml. Each is `fn(output, case) -> CheckResult`.

- `adds_up` needs no answer key: subtotal + tax must equal total. Keep it on unlabeled invoices.
- `fields_match` compares every field with the case's `expected` answer key. Its feedback says
  which fields are wrong and what was extracted, not the right value, so the loop cannot pass by
  copying the key back (that would make an A/B of two prompts meaningless).
"""

from __future__ import annotations

import json
import re
from typing import Any

from loopkit import CheckResult

FIELDS = ("vendor", "invoice_number", "date", "currency", "subtotal", "tax", "total")
AMOUNTS = ("subtotal", "tax", "total")
CENT = 0.005  # amounts within half a cent are equal

HINTS = {
    "vendor": "the company that issued the invoice, not the customer",
    "invoice_number": "copy it exactly as printed",
    "date": "the issue date as YYYY-MM-DD",
    "currency": "the ISO 4217 code, e.g. USD, EUR, GBP",
    "subtotal": "the amount before tax",
    "tax": "the tax or VAT amount (0 if none)",
    "total": "the amount payable, tax included",
}


def adds_up(output: str, case: dict) -> CheckResult:
    """subtotal + tax == total, to the cent."""
    data = _parse(output)
    if data is None:
        return CheckResult(0.0, False, "the answer is not a JSON object")
    try:
        subtotal, tax, total = (float(data[k]) for k in AMOUNTS)
    except (KeyError, TypeError, ValueError):
        return CheckResult(0.0, False, "subtotal, tax and total must all be numbers")
    if abs(subtotal + tax - total) <= CENT:
        return CheckResult(1.0, True, "")
    return CheckResult(0.0, False, f"subtotal {subtotal:.2f} + tax {tax:.2f} = {subtotal + tax:.2f}, but total is {total:.2f}")


def fields_match(output: str, case: dict) -> CheckResult:
    """Every field equals the answer key; the score is the fraction of fields that do."""
    expected = case.get("expected")
    if not isinstance(expected, dict):
        return CheckResult(0.0, False, "this case has no `expected` answer key")
    data = _parse(output)
    if data is None:
        return CheckResult(0.0, False, "the answer is not a JSON object")
    wrong = []
    for field in FIELDS:
        if field not in expected:
            continue
        got = data.get(field)
        if not _same(field, got, expected[field]):
            shown = "missing" if got is None else json.dumps(got, ensure_ascii=False)
            wrong.append(f"{field} is wrong (you extracted {shown}; {HINTS[field]})")
    checked = sum(1 for f in FIELDS if f in expected)
    score = (checked - len(wrong)) / checked if checked else 0.0
    return CheckResult(score, not wrong, "; ".join(wrong))


def _same(field: str, got: Any, want: Any) -> bool:
    if got is None:
        return False
    if field in AMOUNTS:
        try:
            return abs(float(got) - float(want)) <= CENT
        except (TypeError, ValueError):
            return False
    if field == "vendor":
        return _loose(got) == _loose(want)
    if field == "currency":
        return str(got).strip().upper() == str(want).strip().upper()
    return str(got).strip() == str(want).strip()


def _loose(text: Any) -> str:
    """Lower case, punctuation dropped, spaces collapsed: 'ACME Industrial Supply Co' == 'Acme industrial supply co.'."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def _parse(output: str) -> dict | None:
    """The answer's JSON object, tolerating a ```json fence."""
    text = output.strip()
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
