"""`loopkit schema`: the JSON Schema of a spec, generated from the models, agrees with what loopkit loads."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from loopkit.errors import SpecError
from loopkit.spec import json_schema, load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
# Every spec shipped in the repository: the YAML mappings with a `task:` (cases files are lists,
# examples/ci holds a GitHub workflow).
SHIPPED = sorted(
    p for p in [*ROOT.glob("examples/**/*.y*ml"), *ROOT.glob("loops/**/*.y*ml")]
    if isinstance(data := yaml.safe_load(p.read_text(encoding="utf-8")), dict) and "task" in data
)
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def errors(data: object) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_loads_and_validates_against_the_schema(path):
    load_spec(path)  # it is a spec loopkit accepts
    assert errors(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def test_the_complete_example_of_the_format_reference_validates():
    text = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    example = text[text.index("```yaml\n", text.index("## A complete example")) + 8:]
    data = yaml.safe_load(example[:example.index("\n```")])
    assert errors(data) == [] and {"checkers", "escalate", "budget", "reward", "stop"} <= set(data)


def test_the_shipped_specs_were_found():
    assert len(SHIPPED) >= 7 and ROOT / "examples" / "taxes" / "taxes.yaml" in SHIPPED


def test_the_schema_uses_the_yaml_keys_and_leaves_out_internal_fields():
    schema = json_schema()
    assert "path" not in schema["properties"] and "source" not in schema["properties"]
    assert set(schema["$defs"]["Reward"]["properties"]) == {"combine", "pass"}
    assert "schema" in schema["$defs"]["JsonChecker"]["properties"]
    assert schema["required"] == ["model", "task"]


MINIMAL = {"model": "gpt-4o-mini", "task": {"prompt": "go"}}


@pytest.mark.parametrize(("spec", "where"), [
    ({**MINIMAL, "chekers": []}, ""),  # an unknown top-level key
    ({**MINIMAL, "path": "/etc"}, ""),  # internal fields are not spec keys
    ({**MINIMAL, "reward": {"pass_": 0.5}}, "reward"),  # the Python name, not the YAML key
    ({**MINIMAL, "checkers": [{"name": "j", "type": "json", "json_schema": {}}]}, "checkers.0"),
    ({**MINIMAL, "checkers": [{"name": "n", "type": "number", "expected": 1, "tolerence": 0.1}]}, "checkers.0"),
    ({**MINIMAL, "checkers": [{"name": "x", "type": "fuzzy", "expected": 1}]}, "checkers.0"),
    ({**MINIMAL, "stop": {"max_iterations": "five"}}, "stop.max_iterations"),
    ({**MINIMAL, "reward": {"pass": 2}}, "reward.pass"),
    ({**MINIMAL, "model": 4}, "model"),
    ({**MINIMAL, "model": {"id": "gpt-4o", "api_key": "x"}}, "model"),
    ({"model": "gpt-4o-mini"}, ""),  # no task
])
def test_a_spec_with_an_unknown_key_or_a_wrong_type_does_not_validate(spec, where):
    found = errors(spec)
    assert found and all(e.startswith(f"{where}:") for e in found), found
    with pytest.raises(SpecError):  # loopkit refuses it too: the schema is no looser about keys and types
        parse_spec(yaml.safe_dump(spec))


def test_a_model_may_be_a_string_or_a_mapping_everywhere_a_model_is_named():
    mapping = {"id": "openai/m", "api_base": "http://127.0.0.1:9/v1", "price": {"input_per_mtok": 1, "output_per_mtok": 2}}
    spec = {**MINIMAL, "model": mapping, "escalate": [{"when": {"iterations": 2}, "model": "gpt-4o"}],
            "checkers": [{"name": "r", "type": "judge", "rubric": "ok?", "model": mapping}]}
    assert errors(spec) == []


def test_the_command_prints_the_schema_with_or_without_json(cli):
    plain, as_json = cli("schema"), cli("schema", "--json")
    assert plain.returncode == as_json.returncode == 0
    assert json.loads(plain.stdout) == json.loads(as_json.stdout) == json_schema()
    assert plain.stderr == ""
