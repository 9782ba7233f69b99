"""Templates (SPEC.md §1): Jinja2 with StrictUndefined, in a sandbox; case data is a value, never a template."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from loopkit.redact import safe_text
from loopkit.templates import TemplateError, case_templates, render, template_problem


def test_a_template_renders_the_case_fields():
    assert render("Filing status {{ case.status }}, wages {{ case.wages }}", case={"status": "single", "wages": 50000}) == (
        "Filing status single, wages 50000")


def test_filters_loops_and_set_work_as_in_jinja():
    text = "{% for k, v in case | dictsort %}{{ k }}={{ v }};{% endfor %} {{ case.items() | list | length }}"
    assert render(text, case={"b": 2, "a": 1}) == "a=1;b=2; 2"


def test_an_undefined_value_is_an_error_not_an_empty_string():
    with pytest.raises(TemplateError, match="template uses an undefined value: 'dict object' has no attribute 'wagse'"):
        render("wages {{ case.wagse }}", case={"wages": 1})
    with pytest.raises(TemplateError, match="'feedback' is undefined"):
        render("{{ feedback }}", case={})


def test_an_undefined_value_is_an_error_even_inside_a_filter_or_test():
    with pytest.raises(TemplateError):
        render("{{ case.missing | upper }}", case={})


def test_case_data_that_looks_like_a_template_is_rendered_literally():
    case = {"name": "{{ 7*7 }}", "note": "{% for x in range(10**9) %}{% endfor %}"}
    assert render("Hello {{ case.name }} / {{ case.note }}", case=case) == (
        "Hello {{ 7*7 }} / {% for x in range(10**9) %}{% endfor %}")


def test_the_sandbox_refuses_access_to_python_internals():
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ ''.__class__.__mro__ }}")
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ case.__class__.__init__.__globals__ }}", case={})
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ cycler.__init__.__globals__.os }}")


def test_a_template_cannot_change_the_case_it_is_given():
    case = {"a": 1, "items": [1, 2]}
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ case.clear() }}", case=case)
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ case['items'].append(3) }}", case=case)
    assert case == {"a": 1, "items": [1, 2]}
    assert render("{{ case.get('a') }} {{ case['items'] + [3] }}", case=case) == "1 [1, 2, 3]"


def test_a_render_failure_of_any_kind_is_a_template_error():
    with pytest.raises(TemplateError, match="template failed: division by zero"):
        render("{{ 1 / 0 }}")


def test_template_problem_reports_a_syntax_error_with_its_line_in_the_template():
    assert template_problem("one\ntwo {{ case.x\nthree") == (3, "bad template: expected token 'end of print statement', got 'three'")
    line, message = template_problem("{% if x %}\nunclosed")
    assert line == 1 and message.startswith("bad template: Unexpected end of template.")  # the unclosed `if`
    assert template_problem("fine {{ case.x }}") is None


def test_template_problem_reports_variables_that_will_not_be_defined():
    assert template_problem("{{ case.x }}\n{{ cse.y }}", variables=["case"]) == (
        2, "bad template: `cse` is not defined here (available: case); did you mean `case`?")
    assert template_problem("{{ case.x }} {{ feedback }}", variables=["case", "feedback"]) is None
    assert template_problem("{{ anything }}") is None  # without `variables`, only the syntax is checked


def test_template_problem_accepts_names_the_template_defines_and_jinja_globals():
    text = "{% set total = 1 %}{% for item in case.items %}{{ loop.index }}{{ item }}{% endfor %}{{ range(2) | list }}{{ total }}"
    assert template_problem(text, variables=["case"]) is None


# --- lone surrogates ------------------------------------------------------------------------------


def test_safe_text_escapes_lone_surrogates_and_leaves_other_text_alone():
    assert safe_text("4\ud8002 \udfff") == "4\\ud8002 \\udfff"
    assert safe_text("ok é 😀 \\ud800") == "ok é 😀 \\ud800"
    safe_text("\ud83d\ude00 \ud800").encode("utf-8")  # encodable, whatever came in


def test_a_reply_with_a_lone_surrogate_is_recorded_escaped_and_the_run_finishes(fake_llm, tmp_path, cli):
    """A model's JSON may carry "\\ud800"; the call is paid by then, so the run must go on and keep it."""
    (tmp_path / "spec.yaml").write_text(textwrap.dedent(f"""\
        name: surrogate
        model: {{id: openai/test-model, api_base: "{fake_llm.base_url}", api_key_env: TEST_KEY,
                 price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
        params: {{max_tokens: 50}}
        task: {{prompt: "what is six times seven?"}}
        inputs: [{{id: one}}]
        stop: {{max_iterations: 2}}
        checkers:
          - {{name: answer, type: equals, expected: "42"}}
          - {{name: shape, type: regex, pattern: "^4"}}
          - {{name: count, type: command, run: "test $(wc -c) -ge 2"}}
        """))
    fake_llm.queue("4\ud8002", "42")
    proc = cli("run", "spec.yaml", "--json", env={"TEST_KEY": "sk-test-0123456789abcdef"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads(proc.stdout)["runs"]
    assert (run["status"], run["iterations"]) == ("passed", 2)
    db = sqlite3.connect(tmp_path / "ledger.db")
    assert db.execute("SELECT response FROM calls ORDER BY created_at").fetchall() == [("4\\ud8002",), ("42",)]
    assert db.execute("SELECT output FROM iterations ORDER BY n").fetchall() == [("4\\ud8002",), ("42",)]
    # the escaped answer went back to the model as valid text
    assert fake_llm.requests[1]["messages"][1] == {"role": "assistant", "content": "4\\ud8002"}


def test_a_template_that_makes_a_lone_surrogate_is_checked_and_run_with_it_escaped(tmp_path, cli):
    """`{{ '\\udc80' }}` in a prompt renders a character no request, ledger row or byte count can encode."""
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""\
        name: made-surrogate
        model: {id: loopkit/scripted, replies: ["{{ case.x }}"], price: {input_per_mtok: 1, output_per_mtok: 1}}
        params: {max_tokens: 50}
        task: {prompt: "Echo {{ '\\udc80' }} {{ case.x }}"}
        inputs: [{id: a, x: "1"}]
        checkers: [{name: e, type: equals, expected: "{{ case.x }}"}]
        budget: {usd: 1.0}
        """))
    assert render("{{ '\\udc80' }}x") == "\\udc80x"
    checked = cli("check", "spec.yaml")
    assert checked.returncode == 0 and "Traceback" not in checked.stderr, checked.stderr
    ran = cli("run", "spec.yaml", "--json")
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stderr
    db = sqlite3.connect(tmp_path / "ledger.db")
    assert db.execute("SELECT messages FROM calls").fetchall() == [(json.dumps([{"role": "user", "content": "Echo \\udc80 1"}]),)]


# --- rendering once per case -------------------------------------------------------------------


@pytest.fixture
def jinja_renders(monkeypatch):
    """The sources Jinja actually rendered, in order (a spy on the one function that renders)."""
    from loopkit import templates

    seen: list[str] = []
    real = templates._render

    def spy(text, variables):
        seen.append(text)
        return real(text, variables)

    monkeypatch.setattr(templates, "_render", spy)
    return seen


def test_within_a_case_a_template_naming_only_the_case_is_rendered_once_and_reused(jinja_renders):
    case = {"n": 21}
    with case_templates(case):
        texts = [render("{{ case.n * 2 }}", case=case, iteration=i, feedback=f"f{i}") for i in (1, 2, 3)]
        assert render("plain text", case=case) == "plain text"
    assert texts == ["42", "42", "42"]
    assert jinja_renders == ["{{ case.n * 2 }}", "plain text"]


def test_a_template_naming_iteration_feedback_or_output_renders_every_time(jinja_renders):
    case = {"n": 1}
    with case_templates(case):
        assert [render("try {{ iteration }}", case=case, iteration=i) for i in (1, 2)] == ["try 1", "try 2"]
        assert [render("{{ feedback }}", case=case, feedback=f) for f in ("a", "b")] == ["a", "b"]
        assert [render("{{ output }}!", case=case, output=o) for o in ("x", "y")] == ["x!", "y!"]
    assert len(jinja_renders) == 6


def test_a_random_template_is_never_reused(jinja_renders):
    case = {"options": ["a", "b"]}
    with case_templates(case):
        for _ in range(3):
            render("{{ case.options | random }}", case=case)
            render("{{ lipsum(1) }}", case=case)
    assert len(jinja_renders) == 6


def test_only_the_same_case_object_inside_its_block_reuses_a_render(jinja_renders):
    case = {"n": 1}
    other = {"n": 2}
    with case_templates(case):
        assert render("{{ case.n }}", case=other) == "2"
        assert render("{{ case.n }}", case=other) == "2"
        assert render("{{ case.n }}", case=case) == "1"
    assert render("{{ case.n }}", case=case) == "1"  # outside the block: rendered afresh, nothing kept
    assert len(jinja_renders) == 4


def test_a_failed_render_is_not_kept_and_fails_again(jinja_renders):
    case = {"n": 1}
    with case_templates(case):
        for _ in range(2):
            with pytest.raises(TemplateError, match="undefined"):
                render("{{ case.missing }}", case=case)
    assert len(jinja_renders) == 2
