"""Cases (SPEC.md §1 `inputs:`, §2 Inputs): read from .jsonl/.csv/.yaml or an inline list, streamed.

A broken input is an error naming the file and the line, found before any call is paid for.
"""

from __future__ import annotations

import itertools
import json
import tracemalloc
import types
from pathlib import Path

import pytest

from loopkit.errors import InputError
from loopkit.inputs import Case, Inputs
from specs import alias_bomb


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def cases(source, base_dir: Path | None = None) -> list[Case]:
    return list(Inputs(source, base_dir=base_dir))


def broken(source, base_dir: Path | None = None) -> str:
    """The message of the InputError that reading every case raises."""
    with pytest.raises(InputError) as caught:
        Inputs(source, base_dir=base_dir).validate()
    return str(caught.value)


# --- jsonl -----------------------------------------------------------------------------------


def test_jsonl_gives_one_case_per_line_and_skips_blank_lines(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"id": "alice", "x": 1}\n\n   \n{"x": 2}\n{"id": 7, "x": 3}\n')
    assert cases(path) == [
        Case("alice", {"id": "alice", "x": 1}),
        Case("2", {"x": 2}),  # no `id`: its position among the cases, blank lines not counted
        Case("7", {"id": 7, "x": 3}),
    ]


def test_a_relative_path_is_read_from_the_spec_folder(tmp_path):
    write(tmp_path, "cases.jsonl", '{"x": 1}\n')
    assert cases("cases.jsonl", base_dir=tmp_path) == [Case("1", {"x": 1})]


def test_a_bad_json_line_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"x": 1}\n\n{"x": 2,}\n')
    assert broken(path) == f"{path}:3: bad JSON: Expecting property name enclosed in double quotes (column 9)"


def test_a_json_line_that_is_not_an_object_names_the_line(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"x": 1}\n[1, 2]\n')
    assert broken(path) == f"{path}:2: found list, expected an object (a mapping of fields)"


def test_non_utf8_bytes_name_the_line_they_are_on(tmp_path):
    lines = [json.dumps({"n": i}).encode() for i in range(5000)]
    lines[4321] = b'{"name": "Caf\xe9"}'  # Latin-1, deep into the file (past any read buffer)
    path = write(tmp_path, "cases.jsonl", b"\n".join(lines) + b"\n")
    assert broken(path) == (
        f"{path}:4322: not UTF-8 text (invalid continuation byte: byte 0xe9 at column 14); save the file as UTF-8")


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_case(tmp_path):
    path = write(tmp_path, "cases.jsonl", b'\xef\xbb\xbf{"x": 1}\n')
    assert cases(path) == [Case("1", {"x": 1})]


def test_the_ndjson_extension_is_jsonl(tmp_path):
    assert cases(write(tmp_path, "cases.ndjson", '{"x": 1}\n')) == [Case("1", {"x": 1})]


# --- csv -------------------------------------------------------------------------------------


def test_csv_gives_one_case_per_row_with_the_header_as_field_names(tmp_path):
    path = write(tmp_path, "cases.csv", 'id,status,wages\nw1,single,"50,000"\n,married,80000\n')
    assert cases(path) == [
        Case("w1", {"id": "w1", "status": "single", "wages": "50,000"}),
        Case("2", {"id": "", "status": "married", "wages": "80000"}),  # an empty id: the position
    ]


def test_a_csv_value_may_span_lines_and_later_errors_still_name_the_right_line(tmp_path):
    path = write(tmp_path, "cases.csv", 'a,b\n"one\ntwo",2\n3\n')
    with pytest.raises(InputError) as caught:
        Inputs(path).validate()
    assert caught.value.location == f"{path}:4"


def test_a_csv_row_with_a_missing_column_names_the_line(tmp_path):
    path = write(tmp_path, "cases.csv", "status,wages\nsingle,50000\nmarried\n")
    assert broken(path) == f"{path}:3: missing column(s) wages: found 1 values, expected 2 (the header's columns)"


def test_a_csv_row_with_an_extra_column_names_the_line(tmp_path):
    path = write(tmp_path, "cases.csv", "status,wages\nsingle,50000,oops\n")
    assert broken(path) == f"{path}:2: extra column(s): found 3 values, expected 2 (the header's columns)"


def test_non_utf8_bytes_in_a_csv_name_the_line(tmp_path):
    path = write(tmp_path, "cases.csv", b"name,city\nann,Paris\nbob,Z\xfcrich\n")
    assert broken(path).startswith(f"{path}:3: not UTF-8 text")


def test_a_csv_with_a_bom_keeps_its_first_column_name(tmp_path):
    path = write(tmp_path, "cases.csv", b"\xef\xbb\xbfid,x\nr1,1\n")
    assert cases(path) == [Case("r1", {"id": "r1", "x": "1"})]


def test_broken_csv_quoting_names_the_line(tmp_path):
    path = write(tmp_path, "cases.csv", 'a,b\n1,"x"y\n')
    assert broken(path).startswith(f"{path}:2: bad CSV:")


# --- yaml and inline --------------------------------------------------------------------------


def test_a_yaml_file_is_a_list_of_cases(tmp_path):
    path = write(tmp_path, "cases.yaml", "- {id: a, x: 1}\n- x: 2\n  y: [1, 2]\n")
    assert cases(path) == [Case("a", {"id": "a", "x": 1}), Case("2", {"x": 2, "y": [1, 2]})]


def test_a_yaml_item_that_is_not_a_mapping_names_its_line(tmp_path):
    path = write(tmp_path, "cases.yml", "- {x: 1}\n- just text\n")
    assert broken(path) == f"{path}:2: found str, expected an object (a mapping of fields)"


def test_a_yaml_file_that_is_not_a_list_is_refused(tmp_path):
    path = write(tmp_path, "cases.yaml", "x: 1\n")
    assert broken(path) == f"{path}: found dict, expected a YAML list of cases"


def test_bad_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "cases.yaml", "- {x: 1}\n- {x: [2}\n")
    assert broken(path).startswith(f"{path}:2: bad YAML:")


def test_an_inline_list_is_cases_in_order():
    assert cases([{"x": 1}, {"id": "b", "x": 2}]) == [Case("1", {"x": 1}), Case("b", {"id": "b", "x": 2})]


def test_an_inline_item_that_is_not_a_mapping_is_refused():
    assert broken([{"x": 1}, "two"]) == "inputs (item 2): found str, expected an object (a mapping of fields)"


def test_no_inputs_is_one_empty_case():
    assert cases(None) == [Case("1", {})]
    assert Inputs(None).label == "inline"


# --- errors before reading ----------------------------------------------------------------------


def test_an_unknown_extension_is_refused_when_the_inputs_are_named():
    with pytest.raises(InputError, match=r"unknown inputs format '\.txt': use \.jsonl, \.csv or \.yaml"):
        Inputs("cases.txt")


def test_a_missing_file_is_an_input_error(tmp_path):
    assert broken(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such inputs file"


def test_input_errors_exit_with_code_2():
    assert InputError("x").exit_code == 2


# --- validate and streaming ---------------------------------------------------------------------


def test_validate_reads_every_case_and_counts_them(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"x": 1}\n\n{"x": 2}\n{"x": 3}\n')
    inputs = Inputs(path)
    assert inputs.validate() == 3
    assert inputs.validate() == 3  # re-iterable: validate once, then run
    assert [c.id for c in inputs] == ["1", "2", "3"]
    assert inputs.label == str(path)


def test_validate_stops_at_the_first_broken_case(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"x": 1}\nnot json\n{"x": 3}\n')
    with pytest.raises(InputError) as caught:
        Inputs(path).validate()
    assert caught.value.location == f"{path}:2"


@pytest.mark.parametrize("name", ["cases.jsonl", "cases.csv"])
def test_cases_are_streamed_not_loaded_into_a_list(tmp_path, name):
    rows = 100_000
    if name.endswith(".jsonl"):
        content = "".join(f'{{"id": "c{i}", "text": "{"x" * 40}"}}\n' for i in range(rows))
    else:
        content = "id,text\n" + "".join(f"c{i},{'x' * 40}\n" for i in range(rows))
    path = write(tmp_path, name, content)  # ~6 MB; as Python objects, many times that
    inputs = Inputs(path)
    cases_ = iter(inputs)
    assert isinstance(cases_, types.GeneratorType)

    tracemalloc.start()
    try:
        first = [case.id for case in itertools.islice(cases_, 1000)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a reader that loaded the file first would have allocated megabytes before the first case
    assert peak < 1_000_000, f"peak {peak:,} bytes for the first 1,000 of {rows:,} cases"
    assert first[0] == "c0" and first[-1] == "c999"
    assert 1000 + sum(1 for _ in cases_) == rows


# --- what a case may hold: nesting, aliases, text, ids --------------------------------------------


@pytest.mark.parametrize(("name", "content", "where"), [
    ("cases.jsonl", '{"id": "ok"}\n{"id": "deep", "x": DEEP}\n', ":2: "),  # the line of the case
    ("cases.yaml", "- id: ok\n- id: deep\n  x: DEEP\n", ":3:"),  # the line where the 65th level opens
])
def test_nesting_10000_deep_is_an_input_error_not_a_recursion_error(tmp_path, name, content, where):
    path = write(tmp_path, name, content.replace("DEEP", "[" * 10_000 + "]" * 10_000))
    message = broken(path)
    assert message.startswith(f"{path}{where}") and message.endswith("nested deeper than 64 levels of mappings and lists"
                                                                     if name.endswith(".yaml") else
                                                                     "nested deeper than 64 levels of objects and lists")


def test_a_case_nested_64_levels_is_read_and_65_is_refused(tmp_path):
    ok = write(tmp_path, "ok.jsonl", '{"x": ' + "[" * 63 + "]" * 63 + "}\n")  # the case is level 1
    assert len(cases(ok)) == 1
    deep = write(tmp_path, "deep.jsonl", '{"x": ' + "[" * 64 + "]" * 64 + "}\n")
    assert broken(deep) == f"{deep}:1: the field `x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0." \
                           "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0` is nested deeper than 64 levels of " \
                           "objects and lists"


def test_an_alias_bomb_in_a_yaml_inputs_file_is_refused_before_any_case(tmp_path):
    # shared, the 9**9 values cost nothing to read; they would when each case went to a template and the ledger
    path = write(tmp_path, "cases.yaml", "- id: laughs\n" + alias_bomb(9, indent="  "))
    assert broken(path) == (f"{path}:7: aliases expand to more than 100,000 values (an alias bomb?); "
                            "write the values out or use fewer aliases")


def test_a_control_character_in_a_yaml_inputs_file_names_its_line(tmp_path):
    path = write(tmp_path, "cases.yaml", "- {x: 1}\n- {x: \x01}\n")
    assert broken(path) == f"{path}:2: bad YAML: the control character U+0001 is not allowed"


def test_a_lone_surrogate_in_a_json_line_is_refused_with_its_line_and_field(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"id": "a", "q": "fine"}\n\n{"id": "b", "q": {"text": ["ok", "x\\ud800y"]}}\n')
    assert broken(path) == (f"{path}:3: the field `q.text.1` holds a lone UTF-16 surrogate U+D800 (written \\ud800), "
                            "which is not a character; write the text it stands for")


def test_a_surrogate_pair_is_one_character_and_is_read(tmp_path):
    path = write(tmp_path, "cases.jsonl", '{"q": "\\ud83d\\ude00"}\n')
    assert cases(path) == [Case("1", {"q": "\U0001F600"})]


@pytest.mark.parametrize(("name", "content", "line"), [
    ("cases.yaml", '- {x: 1}\n- {x: "\\udfff"}\n', 2),
    ("cases.jsonl", '{"\\udfff": 1}\n', 1),
])
def test_a_lone_surrogate_in_a_yaml_value_or_a_field_name_is_refused(tmp_path, name, content, line):
    path = write(tmp_path, name, content)
    assert broken(path).startswith(f"{path}:{line}: ") and "lone UTF-16 surrogate" in broken(path)


def test_an_inline_case_with_a_lone_surrogate_is_refused():
    assert broken([{"q": "\ud800"}]).startswith("inputs (item 1): the field `q` holds a lone UTF-16 surrogate U+D800")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("cases.jsonl", '{"id": "a"}\n{"id": "b"}\n\n{"id": "x"}\n{"id": "y"}\n\n{"id": "a"}\n', ":7: duplicate case id 'a' (first at line 1)"),
    ("cases.csv", "id,x\nb,1\na,2\nb,3\n", ":4: duplicate case id 'b' (first at line 2)"),
    ("cases.yaml", "- {id: a}\n- id: b\n- id: a\n", ":3: duplicate case id 'a' (first at line 1)"),
    ("cases.jsonl", '{"id": 1}\n{"id": "1"}\n', ":2: duplicate case id '1' (first at line 1)"),  # ids are text
    ("cases.jsonl", '{"id": "2"}\n{"x": 1}\n', ":2: duplicate case id '2' (first at line 1); "
                                              "a case without `id` takes its position as its id"),
])
def test_a_duplicate_case_id_names_both_lines(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    assert broken(path) == f"{path}{message}"


def test_a_duplicate_id_in_inline_inputs_names_both_items():
    assert broken([{"id": "a"}, {"id": "b"}, {"id": "a"}]) == "inputs (item 3): duplicate case id 'a' (first at item 1)"


def test_the_id_filters_false_alarms_are_settled_by_a_second_read(tmp_path, monkeypatch):
    """Ids are remembered in a fixed-size filter; shrunk to 16 bits, nearly every id is a suspect, yet only a
    real duplicate is an error, at its own line."""
    from loopkit import bloom

    monkeypatch.setattr(bloom, "BITS", 16)
    unique = write(tmp_path, "unique.jsonl", "".join(f'{{"id": "c{i}"}}\n' for i in range(200)))
    assert Inputs(unique).validate() == 200
    twice = write(tmp_path, "twice.jsonl", "".join(f'{{"id": "c{i}"}}\n' for i in range(200)) + '{"id": "c7"}\n')
    assert broken(twice) == f"{twice}:201: duplicate case id 'c7' (first at line 8)"


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(("content", "message"), [
    ('{"id": "a", "q": "x"}\n{"id": "b", "q": "y"}\n{"id": "a", "q": "z"}\n', "cases.jsonl:3: duplicate case id 'a' (first at line 1)"),
    ('{"id": "a", "q": "x"}\n{"id": "b", "q": "\\ud800"}\n', "cases.jsonl:2: the field `q` holds a lone UTF-16 surrogate"),
])
def test_check_and_run_refuse_broken_cases_with_exit_2_before_any_run(cli, write_spec, command, content, message):
    spec = write_spec("""
        model: {id: loopkit/scripted, replies: ["{{ case.q }}"]}
        task: {prompt: "{{ case.q }}"}
        inputs: cases.jsonl
        """, cases__jsonl=content)
    done = cli(command, str(spec))
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{spec.parent}/{message}" in errors[0] and "Traceback" not in done.stderr
    listed = cli("runs", "--json")  # no ledger at all, or one without runs
    assert "no ledger here yet" in listed.stderr if listed.returncode else json.loads(listed.stdout) == []
