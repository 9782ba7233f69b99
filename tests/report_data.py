"""Ledgers for the report tests, filled offline with the scripted model through the public API.

The loop is built to show every part of a batch page: runs that pass on iteration 1, 2 or 3 or fail,
an escalation to a stronger model and then to a person, a judge, suspect runs (passed, failed an
audit), and case data and outputs carrying markup that must show as text.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import loopkit
from loopkit.batch import BatchOptions

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">'

LOOP = textwrap.dedent("""\
    version: 1
    name: {name}
    model: {{id: loopkit/scripted, name: cheap, price: {{input_per_mtok: 1, output_per_mtok: 2}}, params: {{max_tokens: 50}},
            replies: ["{{{{ 'ok' if case.x % 3 == 0 else 'nope ' ~ case.note }}}}", "{{{{ 'ok' if case.x % 3 == 1 else 'still no' }}}}"]}}
    params: {{max_tokens: 50}}
    task:
      prompt: "case {{{{ case.x }}}}: say ok. {{{{ case.note }}}}"
      feedback: "RETRY: {{{{ feedback }}}}"
    inputs: cases.jsonl
    stop: {{max_iterations: 4}}
    checkers:
      - {{name: ok, type: equals, expected: "ok"}}
      - name: review
        type: judge
        weight: 0.5
        rubric: "Is it ok?"
        model: {{id: loopkit/scripted, name: judge, price: {{input_per_mtok: 0.5, output_per_mtok: 1}}, params: {{max_tokens: 50}},
                replies: ['{{"score": {{{{ 1 if case.x % 2 else 0 }}}}, "reason": "fine"}}']}}
      - {{name: honest, type: equals, expected: "{{{{ 'not ok' if case.x % 9 == 0 else 'ok' }}}}", audit: true}}
    escalate:
      - when: {{iterations: 2}}
        model: {{id: loopkit/scripted, name: strong, price: {{input_per_mtok: 5, output_per_mtok: 10}}, params: {{max_tokens: 50}},
                replies: ["{{{{ 'ok' if case.x % 5 == 0 else 'no' }}}}"]}}
      - when: {{iterations: 3, reward_below: 0.2}}
        human: "A person should look at {{{{ case.x }}}}"
    """)


def cases(n: int) -> list[dict[str, Any]]:
    return [{"id": f"case-{i:04d}", "x": i, "note": HOSTILE if i % 4 == 1 else "plain"} for i in range(n)]


def write_loop(folder: Path, n: int, *, name: str = "report_loop") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases(n)))
    path = folder / f"{name}.yaml"
    path.write_text(LOOP.format(name=name))
    return path


def run_loop(folder: Path, n: int, ledger: Path) -> str:
    """Run the loop over n cases into `ledger`; returns the batch id."""
    spec = loopkit.load_spec(write_loop(folder, n))
    with loopkit.Ledger(ledger) as store:
        return loopkit.run_batch(spec, ledger=store, options=BatchOptions(concurrency=32)).batch_id


def ab_specs(folder: Path) -> tuple[Path, Path]:
    """Two one-iteration variants: A passes even cases, B all but every seventh."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.jsonl").write_text("".join(json.dumps({"id": f"c{i:03d}", "x": i, "note": HOSTILE}) + "\n" for i in range(60)))
    paths = []
    for name, reply in (("variant_a", "{{ 'ok' if case.x % 2 == 0 else 'no ' ~ case.note }}"),
                        ("variant_b", "{{ 'ok' if case.x % 7 != 0 else 'no' }}")):
        path = folder / f"{name}.yaml"
        path.write_text(textwrap.dedent(f"""\
            version: 1
            name: {name}
            model: {{id: loopkit/scripted, price: {{input_per_mtok: 1, output_per_mtok: 2}}, replies: ["{reply}"]}}
            params: {{max_tokens: 20}}
            task: {{prompt: "case {{{{ case.x }}}}: say ok", feedback: "RETRY: {{{{ feedback }}}}"}}
            inputs: cases.jsonl
            stop: {{max_iterations: 1}}
            checkers: [{{name: ok, type: equals, expected: "ok"}}]
            """))
        paths.append(path)
    return paths[0], paths[1]


def rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The source of truth: a plain SQL query on the ledger file."""
    with loopkit.Ledger(db, readonly=True) as store:
        return store.query(sql, args)
