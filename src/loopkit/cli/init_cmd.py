"""`loopkit init NAME`: a starter loop that checks clean and runs offline at once, to edit into your own."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template
from typing import Annotated

import typer

from ..errors import UsageError
from .app import JsonOpt, app, out, print_json

_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

SPEC = Template('''\
# A loopkit loop spec; every key is described in docs/spec.md of the loopkit repository.
#   loopkit check ${name}.yaml    validate it and print the worst-case cost of a case
#   loopkit run ${name}.yaml      run every case of ${name}.cases.jsonl
version: 1
name: "${name}"
description: Answer a question with one word, checked by a Python function.

# The built-in offline model: reply k answers iteration k (no key, no network, no cost).
# For a real model, replace the three `model:` lines below with one line, for example:
# model: gpt-4o-mini    # litellm's name for it; the key comes from OPENAI_API_KEY
model:
  id: loopkit/scripted
  replies: ["The answer is {{ case.answer }}.", "{{ case.answer }}"]
params: {temperature: 0, max_tokens: 20}

task:
  system: You answer with exactly one word.
  prompt: "{{ case.question }}"
  feedback: |
    That was not accepted:
    {{ feedback }}
    Answer with one word only.

inputs: "${name}.cases.jsonl"

checkers:
  - {name: answer, type: python, function: "${name}_checks.py:check"}

stop: {max_iterations: 3}
budget: {usd: 0.01}    # per case: a call that could cross it is never made
''')

CASES = '''\
{"id": "capital", "question": "What is the capital of France?", "answer": "Paris"}
{"id": "planet", "question": "Which planet of the solar system is the largest?", "answer": "Jupiter"}
{"id": "water", "question": "What is the chemical formula of water?", "answer": "H2O"}
'''

CHECKS = Template('''\
"""Checkers for ${name}.yaml.

loopkit calls `check(output, case)` with the model's answer (a string) and the case's fields (a dict).
Return True/False, a score from 0 to 1, or a CheckResult whose feedback is sent to the model before
its next try.
"""

from loopkit import CheckResult


def check(output: str, case: dict) -> CheckResult:
    words = output.strip().rstrip(".!").split()
    if len(words) != 1:
        return CheckResult(0.0, False, f"expected one word, found {len(words)}")
    ok = words[0].lower() == str(case["answer"]).lower()
    return CheckResult(1.0 if ok else 0.0, ok, "" if ok else "that is not the right word")
''')


def starter_files(name: str) -> dict[Path, str]:
    """The files `init` writes for NAME (a path without extension), by path."""
    base = Path(name.removesuffix(".yaml").removesuffix(".yml"))
    stem = base.name
    if not _STEM.fullmatch(stem):
        raise UsageError(f"cannot name a loop {stem!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    return {
        base.with_name(f"{stem}.yaml"): SPEC.substitute(name=stem),
        base.with_name(f"{stem}.cases.jsonl"): CASES,
        base.with_name(f"{stem}_checks.py"): CHECKS.substitute(name=stem),
    }


@app.command()
def init(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The loop's name, optionally in a folder: triage, evals/triage.")],
    as_json: JsonOpt = False,
) -> None:
    """Write a starter loop: NAME.yaml, NAME.cases.jsonl and NAME_checks.py; never overwrites a file."""
    files = starter_files(name)
    taken = [str(path) for path in files if path.exists()]
    if taken:
        raise UsageError(f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; "
                         "loopkit init writes only new files (choose another NAME)")
    spec = next(iter(files))
    spec.parent.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        with path.open("x", encoding="utf-8") as fh:  # "x": never replace a file that appeared meanwhile
            fh.write(text)
    if as_json:
        print_json({"spec": str(spec), "files": [str(p) for p in files]})
        return
    out.print(f"wrote {', '.join(str(p) for p in files)}", markup=False)
    out.print(f"next: loopkit check {spec} && loopkit run {spec}", markup=False)
