"""The loop spec (SPEC.md §1): what a valid spec turns into, and how a bad one is refused.

A bad spec is refused before any call with `file:line:col: key: what was found, what was expected`,
and every problem is reported at once. The tests below pin the exact line and column, because that
is what a user's editor jumps to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopkit.errors import SpecError
from loopkit.spec import (
    CHECKER_TYPES,
    CommandChecker,
    EqualsChecker,
    JsonChecker,
    JudgeChecker,
    ModelRef,
    PythonChecker,
    load_spec,
    parse_spec,
)
from specs import alias_bomb

SCRIPTED = "model: {id: loopkit/scripted, replies: [x]}\n"


def problems(write_spec, text: str, **files: str) -> list[str]:
    """The problems `load_spec` reports for a spec file, each without the leading file path."""
    path = write_spec(text, **files)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    prefix = f"{path}:"
    assert all(p.startswith(prefix) for p in caught.value.problems), caught.value.problems
    return [p.removeprefix(prefix) for p in caught.value.problems]


def only_problem(write_spec, text: str, **files: str) -> str:
    found = problems(write_spec, text, **files)
    assert len(found) == 1, found
    return found[0]


# --- a valid spec ----------------------------------------------------------------------------

FULL = """\
version: 1
name: taxes
description: Federal tax for one W-2 household
model: gpt-4o-mini
params: {temperature: 0, max_tokens: 600}
task:
  system: You are a careful tax preparer. Answer in JSON.
  prompt: |
    Filing status {{ case.status }}, wages {{ case.wages }}.
  feedback: |
    RETRY: {{ feedback }} (reward {{ reward }}, iteration {{ iteration }})
  memory: last
inputs: cases.jsonl
checkers:
  - {name: is_json, type: json, schema: {type: object, required: [tax]}}
  - {name: tax, type: python, function: checks.py:tax_matches, weight: 3}
  - {name: exact, type: equals, expected: "{{ case.expected }}"}
  - {name: tests, type: command, run: "pytest -q", timeout: 60}
  - {name: review, type: judge, model: gpt-4o, rubric: "Is every figure justified?"}
  - {name: honesty, type: judge, rubric: "...", audit: true}
reward:
  combine: min
  pass: 0.9
stop:
  max_iterations: 5
  plateau: 2
escalate:
  - when: {iterations: 2}
    model: gpt-4o
  - when: {iterations: 4, reward_below: 0.5}
    human: "Two models failed; check the deduction logic."
budget:
  usd: 0.05
  tokens: 20000
  seconds: 120
  total_usd: 5
"""

CHECKS_PY = """\
def tax_matches(output, case):
    return True
"""


def test_the_example_spec_of_the_contract_loads_with_every_section(write_spec):
    spec = load_spec(write_spec(FULL, checks__py=CHECKS_PY, cases__jsonl='{"status": "single"}\n'))

    assert (spec.version, spec.name, spec.description) == (1, "taxes", "Federal tax for one W-2 household")
    assert spec.model == ModelRef(id="gpt-4o-mini")
    assert spec.params == {"temperature": 0, "max_tokens": 600}
    assert spec.task.prompt == "Filing status {{ case.status }}, wages {{ case.wages }}.\n"
    assert spec.task.memory == "last"
    assert spec.inputs == "cases.jsonl"
    assert [type(c) for c in spec.checkers] == [JsonChecker, PythonChecker, EqualsChecker, CommandChecker, JudgeChecker, JudgeChecker]
    is_json, tax, exact, tests, review, honesty = spec.checkers
    assert is_json.json_schema == {"type": "object", "required": ["tax"]}
    assert (tax.function, tax.weight) == ("checks.py:tax_matches", 3)
    assert exact.expected == "{{ case.expected }}"
    assert (tests.run, tests.timeout) == ("pytest -q", 60)
    assert review.model == ModelRef(id="gpt-4o") and honesty.model is None and honesty.audit
    assert (spec.reward.combine, spec.reward.pass_) == ("min", 0.9)
    assert (spec.stop.max_iterations, spec.stop.plateau) == (5, 2)
    assert spec.escalate[0].model == ModelRef(id="gpt-4o") and spec.escalate[0].human is None
    assert spec.escalate[1].when.reward_below == 0.5 and spec.escalate[1].human.startswith("Two models")
    assert (spec.budget.usd, spec.budget.tokens, spec.budget.seconds, spec.budget.total_usd) == (0.05, 20000, 120, 5)
    assert spec.base_dir == spec.path.parent


def test_defaults_fill_in_what_a_minimal_spec_leaves_out(write_spec):
    spec = load_spec(write_spec(SCRIPTED + "task: {prompt: go}\n", name="tiny-loop.yaml"))

    assert spec.name == "tiny-loop"  # the file's stem
    assert spec.task.feedback == "{{ feedback }}" and spec.task.memory == "conversation" and spec.task.system is None
    assert spec.inputs is None and spec.checkers == [] and spec.escalate == []
    assert (spec.reward.combine, spec.reward.pass_) == ("weighted_mean", 1.0)
    assert (spec.stop.max_iterations, spec.stop.plateau) == (3, None)
    assert not spec.budget.any


def test_a_spec_parsed_from_text_alone_is_named_spec():
    assert parse_spec(SCRIPTED + "task: {prompt: go}\n").name == "spec"


def test_a_model_is_a_litellm_string_or_a_mapping_with_connection_price_and_params(write_spec):
    as_string = load_spec(write_spec("model: openai/gpt-4o-mini\ntask: {prompt: go}\n"))
    assert as_string.model == ModelRef(id="openai/gpt-4o-mini")
    assert not as_string.model.scripted

    as_mapping = load_spec(write_spec("""\
        model:
          id: openai/my-local-model
          api_base: http://127.0.0.1:8000/v1
          api_key_env: MY_KEY
          price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
          params: {temperature: 0.2}
        task: {prompt: go}
        """))
    model = as_mapping.model
    assert (model.id, model.api_base, model.api_key_env) == ("openai/my-local-model", "http://127.0.0.1:8000/v1", "MY_KEY")
    assert (model.price.input_per_mtok, model.price.output_per_mtok) == (0.15, 0.60)
    assert model.label == "openai/my-local-model"


def test_the_scripted_model_needs_replies_and_only_it_takes_them(write_spec):
    spec = load_spec(write_spec("model: {id: loopkit/scripted, replies: ['{{ case.x }}', done]}\ntask: {prompt: go}\n"))
    assert spec.model.scripted and spec.model.replies == ["{{ case.x }}", "done"]

    assert only_problem(write_spec, "model: {id: loopkit/scripted}\ntask: {prompt: go}\n") == (
        "1:8: model: the loopkit/scripted model needs a non-empty `replies:` list (reply k answers iteration k)")
    assert only_problem(write_spec, "model: {id: gpt-4o-mini, replies: [x]}\ntask: {prompt: go}\n") == (
        "1:8: model: found `replies:` on gpt-4o-mini; replies are only for the loopkit/scripted model")


def test_params_for_a_model_are_the_spec_params_overridden_by_the_mapping_own(write_spec):
    spec = load_spec(write_spec("""\
        model: {id: loopkit/scripted, replies: [x], params: {temperature: 1, seed: 7}}
        params: {temperature: 0, max_tokens: 600}
        task: {prompt: go}
        """))
    assert spec.params_for(spec.model) == {"temperature": 1, "max_tokens": 600, "seed": 7}
    assert spec.params_for(ModelRef(id="gpt-4o")) == {"temperature": 0, "max_tokens": 600}


def test_the_hash_names_a_spec_version_and_changes_with_its_text():
    one = parse_spec(SCRIPTED + "task: {prompt: go}\n")
    same = parse_spec(SCRIPTED + "task: {prompt: go}\n")
    other = parse_spec(SCRIPTED + "task: {prompt: go now}\n")
    assert one.hash == same.hash != other.hash
    assert len(one.hash) == 16


def test_with_model_swaps_the_worker_and_keeps_the_rest():
    spec = parse_spec(SCRIPTED + "task: {prompt: go}\nstop: {max_iterations: 4}\n")
    swapped = spec.with_model("gpt-4o")
    assert swapped.model == ModelRef(id="gpt-4o") and swapped.stop.max_iterations == 4
    assert spec.model.scripted


def test_run_model_scripted_on_a_spec_with_a_real_model_is_one_line_and_exit_2(write_spec, cli):
    write_spec("model: openai/gpt-4o-mini\ntask: {prompt: go}\ninputs: [{id: a}]\n"
               "checkers: [{name: x, type: equals, expected: go}]\n")
    done = cli("run", "spec.yaml", "--model", "loopkit/scripted")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --model loopkit/scripted:") and "replies" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_models_lists_every_model_the_spec_may_call_with_where_it_is_named():
    spec = parse_spec("""\
model: {id: loopkit/scripted, replies: [x]}
task: {prompt: go}
checkers:
  - {name: own, type: judge, rubric: r, model: gpt-4o}
  - {name: worker, type: judge, rubric: r}
escalate:
  - {when: {iterations: 1}, model: gpt-4o-mini}
""")
    assert [(where, m.id) for where, m in spec.models()] == [
        ("model", "loopkit/scripted"),
        ("escalate.0.model", "gpt-4o-mini"),
        ("checkers.0.model", "gpt-4o"),
        ("checkers.1.model", "loopkit/scripted"),  # a judge without a model uses the worker's
    ]


def test_a_bom_at_the_start_of_the_file_is_not_part_of_the_spec(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (SCRIPTED + "task: {prompt: go}\n").encode())
    assert load_spec(path).name == "bom"


# --- unknown keys and wrong types -------------------------------------------------------------


def test_an_unknown_top_level_key_is_located_at_the_key_with_a_did_you_mean(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\nchekers: []\n") == (
        "3:1: chekers: unknown key; did you mean `checkers`? (expected one of: version, name, description, "
        "model, params, task, inputs, checkers, reward, stop, escalate, human_rate, budget, tools, agent, worker)")


def test_an_unknown_key_inside_a_checker_lists_that_checker_type_keys(write_spec):
    found = problems(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: close, type: number, expected: "42", tolerence: 0.5}
  - name: exact
    type: equals
    expect: "42"
""")
    assert found == [
        "4:49: checkers.0.tolerence: unknown key; did you mean `tolerance`? "
        "(expected one of: name, weight, required, audit, type, expected, tolerance)",
        "5:5: checkers.1.expected: missing; this key is required",
        "7:5: checkers.1.expect: unknown key; did you mean `expected`? "
        "(expected one of: name, weight, required, audit, type, expected)",
    ]


def test_a_checker_with_a_bad_type_points_at_the_type_and_lists_the_types(write_spec):
    found = problems(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: a, type: equal, expected: x}
  - name: b
    type: llm
  - name: c
""")
    types = ", ".join(CHECKER_TYPES)
    assert found == [
        f"4:21: checkers.0.type: found 'equal', expected one of: {types}; did you mean `equals`?",
        f"6:11: checkers.1.type: found 'llm', expected one of: {types}",
        f"7:5: checkers.2.type: missing; this key is required (one of: {types})",
    ]


def test_a_missing_prompt_is_reported_at_the_task_mapping(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task:\n  system: be brief\n") == "3:3: task.prompt: missing; this key is required"


def test_missing_top_level_keys_are_reported_at_the_start(write_spec):
    assert problems(write_spec, "description: nothing else\n") == [
        "1:1: model: missing; this key is required",
        "1:1: task: missing; this key is required",
    ]


@pytest.mark.parametrize(
    ("yaml_text", "problem"),
    [
        ('stop:\n  max_iterations: "five"\n', "4:19: stop.max_iterations: found 'five', expected an integer"),
        ("stop: {max_iterations: 0}\n", "3:24: stop.max_iterations: found 0, expected greater than or equal to 1"),
        ("reward: {pass: 2}\n", "3:16: reward.pass: found 2, expected less than or equal to 1"),
        ("reward: {combine: max}\n", "3:19: reward.combine: found 'max', expected 'weighted_mean' or 'min'"),
        ("inputs: 5\n", "3:9: inputs: found 5, expected a string or a list"),
        ("params: [temperature]\n", "3:9: params: found ['temperature'], expected a mapping"),
        ("checkers: {name: a}\n", "3:11: checkers: expected a list"),
        ("checkers:\n  - just a name\n", "4:5: checkers.0: found 'just a name', expected a mapping"),
        ("escalate:\n  - {when: {reward_below: low}, human: help}\n",
         "4:27: escalate.0.when.reward_below: found 'low', expected a number"),
        ("checkers:\n  - {name: f, type: python, function: checks.tax}\n",
         "4:39: checkers.0.function: found 'checks.tax', expected `file.py:function_name` "
         "(a Python file relative to the spec, a colon, a function name)"),
        ("version: 2\n", "3:10: version: found 2, expected 1"),
    ],
)
def test_a_value_of_the_wrong_type_names_what_was_found_and_what_was_expected(write_spec, yaml_text, problem):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\n" + yaml_text) == problem


def test_a_model_of_the_wrong_type_says_what_a_model_can_be(write_spec):
    assert only_problem(write_spec, "model: 5\ntask: {prompt: go}\n") == (
        "1:8: model: found 5, expected a litellm model name or a mapping with `id:`")


def test_a_task_written_as_a_string_is_refused(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task: go\n") == "2:7: task: found 'go', expected a mapping"


def test_internal_fields_cannot_be_set_from_yaml(write_spec):
    found = only_problem(write_spec, SCRIPTED + "task: {prompt: go}\nsource: hacked\n")
    assert found.startswith("3:1: source: unknown key")


def test_python_field_names_are_not_spec_keys(write_spec):
    assert problems(write_spec, SCRIPTED + "task: {prompt: go}\nreward: {pass_: 0.5}\n"
                    "checkers: [{name: j, type: json, json_schema: {}}]\n") == [
        "3:10: reward.pass_: unknown key; did you mean `pass`? (expected one of: combine, pass)",
        "4:34: checkers.0.json_schema: unknown key; did you mean `schema`? (expected one of: name, weight, required, "
        "audit, type, schema)",
    ]


def test_a_duplicate_key_is_refused_because_yaml_would_silently_drop_the_first(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\nstop: {max_iterations: 2}\nstop: {plateau: 1}\n") == (
        "4:1: stop: duplicate key (first at line 3); YAML silently keeps only the last, so remove one")


# --- escalation ----------------------------------------------------------------------------------


def test_an_escalation_takes_exactly_one_action(write_spec):
    found = problems(write_spec, SCRIPTED + """\
task: {prompt: go}
escalate:
  - when: {iterations: 2}
    model: gpt-4o
    human: check it
  - when: {iterations: 3}
""")
    assert found == [
        "4:5: escalate.0: found both `model:` and `human:`, expected one of them (an escalation takes one action)",
        "7:5: escalate.1: found none of `model:`, `human:`, `cheapest:`, expected one of them (the escalation's action)",
    ]


def test_an_escalation_needs_a_condition(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\nescalate:\n  - {when: {}, human: help}\n") == (
        "4:12: escalate.0.when: found no condition, expected at least one of: iterations, reward_below, failed, plateau")


def test_when_failed_must_name_a_checker_of_the_spec(write_spec):
    assert only_problem(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers: [{name: tax, type: contains, expected: x}]
escalate:
  - when: {failed: taxes}
    human: help
""") == "5:20: escalate.0.when.failed: found 'taxes', expected the name of a checker (tax); did you mean `tax`?"


def test_checker_names_must_be_unique(write_spec):
    assert only_problem(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: tax, type: contains, expected: x}
  - {name: tax, type: contains, expected: y}
""") == "5:12: checkers.1.name: duplicate checker name 'tax'"


# --- templates ---------------------------------------------------------------------------------


def test_a_jinja_syntax_error_in_a_block_prompt_points_at_its_line_inside_the_block(write_spec):
    assert only_problem(write_spec, SCRIPTED + """\
task:
  prompt: |
    Filing status {{ case.status }}.
    Wages {{ case.wages }}, {% endif %}
    Answer in JSON.
""") == "5:5: task.prompt: bad template: Encountered unknown tag 'endif'."


def test_a_jinja_syntax_error_in_a_one_line_template_points_at_the_value(write_spec):
    assert only_problem(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: exact, type: equals, expected: "{{ case.x }"}
""") == "4:43: checkers.0.expected: bad template: unexpected '}'"


def test_a_misspelt_template_variable_is_refused_at_load_not_at_run(write_spec):
    found = problems(write_spec, """\
model: {id: loopkit/scripted, replies: ["{{ outptu }}"]}
task:
  prompt: |
    Double {{ case.x }}
    and add {{ cas.y }}.
  feedback: "{{ feedbak }}"
""")
    assert found == [
        "1:41: model.replies.0: bad template: `outptu` is not defined here (available: case, feedback, iteration, output); "
        "did you mean `output`?",
        "5:5: task.prompt: bad template: `cas` is not defined here (available: case); did you mean `case`?",
        "6:13: task.feedback: bad template: `feedbak` is not defined here (available: case, feedback, iteration, reward); "
        "did you mean `feedback`?",
    ]


def test_variables_a_template_sets_itself_are_not_unknown(write_spec):
    load_spec(write_spec(SCRIPTED + """\
task:
  prompt: |
    {%- set ns = namespace(total=0) -%}
    {%- for k, v in case.items() -%}
      {%- if v -%}{%- set shown = k ~ '=' ~ v -%}{{ shown }}{%- endif -%}
      {%- set ns.total = ns.total + 1 -%}
    {%- endfor -%}
    {{ ns.total }} fields, {{ range(3) | list }}
"""))


# --- files next to the spec ---------------------------------------------------------------------


def test_a_python_checker_whose_file_does_not_exist_names_the_path_it_tried(write_spec, tmp_path):
    assert only_problem(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: tax, type: python, function: "checks.py:tax"}
""") == f"4:41: checkers.0.function: found 'checks.py:tax', but {tmp_path / 'checks.py'} does not exist"


def test_a_python_checker_whose_function_is_not_in_the_file_is_refused_without_running_it(write_spec):
    found = only_problem(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: tax, type: python, function: "checks.py:tax_matchs"}
""", checks__py="raise SystemExit('reading the file must not run it')\ndef tax_matches(output, case):\n    return True\n")
    assert found == "4:41: checkers.0.function: found 'checks.py:tax_matchs', but checks.py defines no `tax_matchs`; did you mean `tax_matches`?"


def test_a_python_checker_file_with_a_syntax_error_is_refused(write_spec, tmp_path):
    found = only_problem(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: tax, type: python, function: "checks.py:tax"}
""", checks__py="def tax(output, case)\n    return True\n")
    assert found.startswith(f"4:41: checkers.0.function: {tmp_path / 'checks.py'}:1: the checker file has a syntax error")


def test_a_function_imported_or_assigned_in_the_checker_file_counts_as_defined(write_spec):
    load_spec(write_spec(SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: a, type: python, function: "checks.py:imported"}
  - {name: b, type: python, function: "checks.py:assigned"}
  - {name: c, type: python, function: "checks.py:guarded"}
""", checks__py="from os.path import exists as imported\nassigned = lambda output, case: True\n"
                "try:\n    def guarded(output, case):\n        return True\nexcept Exception:\n    pass\n"))


def test_an_inputs_file_that_does_not_exist_is_refused(write_spec, tmp_path):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\ninputs: cases.jsonl\n") == (
        f"3:9: inputs: found 'cases.jsonl', but {tmp_path / 'cases.jsonl'} does not exist")


def test_an_inputs_file_of_an_unknown_format_is_refused(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\ninputs: cases.txt\n", cases__txt="a\n") == (
        "3:9: inputs: found 'cases.txt', expected a .jsonl, .ndjson, .csv, .yaml, .yml file or an inline list of cases")


def test_inline_inputs_are_a_list_of_mappings(write_spec):
    spec = load_spec(write_spec(SCRIPTED + "task: {prompt: go}\ninputs: [{x: 1}, {x: 2}]\n"))
    assert spec.inputs == [{"x": 1}, {"x": 2}]


def test_a_bad_regex_and_a_bad_json_schema_are_refused_at_load(write_spec):
    assert problems(write_spec, SCRIPTED + """\
task: {prompt: go}
checkers:
  - {name: r, type: regex, pattern: "(unclosed"}
  - {name: j, type: json, schema: {type: objekt}}
""") == [
        "4:37: checkers.0.pattern: found '(unclosed', expected a regular expression: missing ), unterminated subpattern at position 0",
        "5:35: checkers.1.schema: not a valid JSON Schema (at `type`): 'objekt' is not valid under any of the given schemas",
    ]


# --- budgets --------------------------------------------------------------------------------------


def test_a_budget_needs_max_tokens_for_every_model_and_the_error_names_the_model(write_spec):
    found = problems(write_spec, """\
model: gpt-4o-mini
task: {prompt: go}
escalate:
  - when: {iterations: 2}
    model: {id: gpt-4o, params: {max_tokens: 100}}
checkers:
  - {name: review, type: judge, rubric: "fair?", model: gpt-4o}
budget: {usd: 0.05}
""")
    assert found == [
        "1:8: model: a budget is set, so gpt-4o-mini needs `max_tokens` in `params:` "
        "(the worst case of a call is its prompt plus max_tokens)",
        "7:57: checkers.0.model: a budget is set, so gpt-4o needs `max_tokens` in `params:` "
        "(the worst case of a call is its prompt plus max_tokens)",
    ]


def test_a_budget_with_a_model_of_unknown_price_is_an_error_not_a_silent_zero(write_spec):
    spec = """\
model: openai/my-local-model
params: {max_tokens: 100}
task: {prompt: go}
budget: {usd: 0.05}
"""
    assert only_problem(write_spec, spec) == (
        "1:8: model: a budget is set but the price of openai/my-local-model is unknown; "
        "add `price: {input_per_mtok: ..., output_per_mtok: ...}` to its mapping")
    priced = spec.replace("openai/my-local-model", "{id: openai/my-local-model, price: {input_per_mtok: 1, output_per_mtok: 2}}")
    assert load_spec(write_spec(priced)).budget.usd == 0.05


def test_a_budget_with_a_model_litellm_knows_needs_no_price(write_spec):
    spec = load_spec(write_spec("""\
model: gpt-4o-mini
params: {max_tokens: 100}
task: {prompt: go}
checkers: [{name: j, type: judge, rubric: "fair?"}]
budget: {usd: 0.05, total_usd: 1}
"""))
    assert spec.budget.needs_prices


def test_a_token_budget_needs_max_tokens_but_no_price(write_spec):
    ok = "model: openai/my-local-model\nparams: {max_tokens: 10}\ntask: {prompt: go}\nbudget: {tokens: 1000}\n"
    assert load_spec(write_spec(ok)).budget.tokens == 1000
    assert only_problem(write_spec, ok.replace("params: {max_tokens: 10}\n", "")).startswith(
        "1:8: model: a budget is set, so openai/my-local-model needs `max_tokens`")


# --- keys -------------------------------------------------------------------------------------------

USE_ENV = ("; a spec is shared and committed, so keep keys out of it: put the key in an environment variable "
           "and name the variable with `api_key_env: VAR` in the model mapping")


def test_a_literal_api_key_in_params_is_refused_at_its_value_without_printing_it(write_spec):
    found = problems(write_spec, """\
        model:
          id: openai/gpt-4o-mini
          params: {api_key: hunter2-local, extra_headers: {Authorization: "Bearer sk-proj-abcdefghijklmnop1234"}}
        params: {temperature: 0, api_key: sk-abcdefghijklmnopqrstuv}
        task: {prompt: go}
        escalate:
          - when: {iterations: 1}
            model: {id: gpt-4o, api_base: "https://example.test/v1?key=AIzaSyA1234567890abcdefghijklmnopqrstu"}
        """)
    assert found == [
        f"3:21: model.params.api_key: found a literal key in `api_key`{USE_ENV}",
        f"3:67: model.params.extra_headers.Authorization: found what looks like an API key{USE_ENV}",
        f"4:35: params.api_key: found a literal key in `api_key`{USE_ENV}",
        f"8:35: escalate.0.model.api_base: found what looks like an API key{USE_ENV}",
    ]
    assert not any(secret in "".join(found) for secret in ("hunter2", "sk-", "AIza"))


def test_a_key_written_on_the_model_mapping_itself_is_refused_too(write_spec):
    assert problems(write_spec, "model: {id: gpt-4o, api_key: sk-abcdefghijklmnopqrstuv}\ntask: {prompt: go}\n") == [
        "1:21: model.api_key: unknown key; did you mean `api_key_env`? (expected one of: id, api_base, api_key_env, "
        "price, params, replies, name)",
        f"1:30: model.api_key: found a literal key in `api_key`{USE_ENV}",
    ]


def test_the_name_of_a_key_variable_and_token_limits_are_not_keys(write_spec):
    spec = load_spec(write_spec("""\
        model: {id: openai/m, api_base: "http://127.0.0.1:8000/v1", api_key_env: MY_API_KEY, params: {max_tokens: 9}}
        params: {max_completion_tokens: 10, top_k: 3, user: sk-short}
        task: {prompt: go}
        """))
    assert spec.model.api_key_env == "MY_API_KEY" and spec.params["user"] == "sk-short"


# --- text that is not a spec --------------------------------------------------------------------


def test_text_that_is_not_yaml_is_refused_with_the_position_of_the_yaml_error(write_spec):
    assert only_problem(write_spec, "model: [gpt-4o\ntask: {prompt: go}\n") == (
        "2:5: (yaml): not valid YAML: expected ',' or ']', but got ':'")


def test_a_yaml_list_is_not_a_spec(write_spec):
    assert only_problem(write_spec, "- model: gpt-4o\n- task: go\n") == (
        "1:1: (top level): found [{'model': 'gpt-4o'}, {'task': 'go'}], expected a mapping of spec keys "
        "(model, task, checkers, ...)")


def test_an_empty_file_is_not_a_spec(write_spec):
    assert only_problem(write_spec, "# nothing yet\n") == (
        "1:1: (top level): the spec is empty; expected a mapping of spec keys (model, task, checkers, ...)")


def test_a_spec_file_that_is_not_utf8_names_the_line_and_column_of_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes((SCRIPTED + "task: {prompt: 'Caf").encode() + b"\xe9'}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == [
        f"{path}:2:20: (file): not UTF-8 text (invalid continuation byte: byte 0xe9); save the spec as UTF-8"]


def test_a_missing_spec_file_is_a_spec_error_not_a_traceback(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_an_alias_bomb_is_refused_at_the_alias_that_passes_the_limit(write_spec):
    # 342 bytes that expand to 9**9 values: walking them took 51 s and a gigabyte before the limit
    problem = only_problem(write_spec, SCRIPTED + "task: {prompt: go}\nparams:\n" + alias_bomb(9, indent="  "))
    assert problem == ("9:10: (yaml): aliases expand to more than 100,000 values (an alias bomb?); "
                       "write the values out or use fewer aliases")


def test_aliases_that_expand_within_the_limit_are_read_as_written(write_spec):
    spec = load_spec(write_spec(SCRIPTED + "task: {prompt: go}\nparams:\n" + alias_bomb(5, indent="  ")))
    assert len(spec.params["e"]) == 9 and spec.params["e"][8][8][8][8] == ["lol"] * 9  # 9**5 values, under the limit


def test_a_merge_key_may_be_overridden_without_a_duplicate_key_error(write_spec):
    shared = load_spec(write_spec(SCRIPTED + "task: {prompt: go}\ncheckers:\n"
                                  "  - &first {name: one, type: contains, weight: 2, expected: a}\n"
                                  "  - {<<: *first, name: two, expected: b}\n"))
    assert [(c.name, c.weight) for c in shared.checkers] == [("one", 2), ("two", 2)]


@pytest.mark.parametrize(("depth", "ok"), [(64, True), (65, False), (10_000, False)])
def test_nesting_deeper_than_64_levels_is_refused_where_it_passes_the_limit(write_spec, depth, ok):
    # the top-level mapping is level 1 and `params:` level 2; 10,000 levels used to end in a RecursionError
    text = SCRIPTED + "task: {prompt: go}\nparams: {x: " + "[" * (depth - 2) + "]" * (depth - 2) + "}\n"
    if ok:
        value, levels = load_spec(write_spec(text)).params["x"], 3  # `x:` is level 3
        while value:
            value, levels = value[0], levels + 1
        assert levels == depth
    else:
        assert only_problem(write_spec, text) == "3:75: (yaml): nested deeper than 64 levels of mappings and lists"


def test_an_alias_inside_its_own_anchor_is_refused(write_spec):
    assert only_problem(write_spec, SCRIPTED + "task: {prompt: go}\nparams: {x: &loop [1, *loop]}\n") == (
        "3:23: (yaml): the alias *loop is inside its own anchor (a recursive structure); loopkit reads only trees")


# --- all at once -----------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_file_order(write_spec, tmp_path):
    found = problems(write_spec, """\
model: gpt-4o-mini
chekers: []
task:
  prompt: "{{ case.x }"
checkers:
  - {name: a, type: python, function: "missing.py:f"}
  - {name: a, type: equals}
stop: {max_iterations: five}
escalate:
  - {when: {failed: nope}, human: help}
inputs: gone.jsonl
budget: {usd: 1}
""")
    assert [p.split(": ")[0] for p in found] == [
        "1:8",  # model: no max_tokens for the budget
        "2:1",  # chekers
        "4:11",  # task.prompt template
        "6:39",  # missing.py
        "7:5",  # checkers.1.expected missing
        "7:12",  # duplicate name
        "8:24",  # max_iterations
        "10:21",  # when.failed
        "11:9",  # inputs
    ]
    assert found[-1] == f"11:9: inputs: found 'gone.jsonl', but {tmp_path / 'gone.jsonl'} does not exist"


def test_the_spec_error_message_is_one_problem_per_line(write_spec):
    path = write_spec("model: 5\ntask: go\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).splitlines() == caught.value.problems
    assert len(caught.value.problems) == 2
    assert caught.value.exit_code == 2


def test_parse_spec_names_the_display_path_in_problems():
    with pytest.raises(SpecError) as caught:
        parse_spec("model: 5\ntask: {prompt: go}\n", path=Path("/abs/loop.yaml"), display="loops/loop.yaml")
    assert caught.value.problems[0].startswith("loops/loop.yaml:1:8: model:")

