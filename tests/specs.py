"""Spec text for tests that run against the fake OpenAI server (tests/fake_llm.py)."""

from __future__ import annotations

import textwrap


def fake_spec(base_url: str, *, name: str = "faults", expected: str = "42", extra: str = "") -> str:
    """A one-checker loop on `openai/test-model` at `base_url`, keyed by $TEST_KEY, priced $1/$2 per M."""
    return textwrap.dedent(f"""\
        version: 1
        name: {name}
        model: {{id: openai/test-model, api_base: "{base_url}", api_key_env: TEST_KEY,
                 price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
        params: {{max_tokens: 50}}
        task:
          prompt: "case {{{{ case.id }}}}: what is six times seven?"
          feedback: "RETRY: {{{{ feedback }}}}"
        inputs: cases.jsonl
        checkers:
          - {{name: answer, type: equals, expected: "{expected}"}}
        """) + textwrap.dedent(extra)


def alias_bomb(levels: int = 9, indent: str = "") -> str:
    """A "billion laughs": YAML mapping lines, each list aliasing the one before nine times (9**levels values)."""
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    lines = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{indent}{name}: &{name} [{','.join([f'*{prev}'] * 9)}]" for prev, name in zip(names, names[1:])]
    return "\n".join(lines) + "\n"
