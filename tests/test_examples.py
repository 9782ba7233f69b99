"""The shipped examples run offline on the scripted model and do what their READMEs say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted([ROOT / "examples" / "taxes" / "taxes.yaml", *(ROOT / "loops").glob("*.yaml")])


def test_every_shipped_spec_passes_check(cli):
    done = cli("check", *map(str, SPECS), "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["specs"]) == len(SPECS) >= 4


def test_the_taxes_demo_passes_fixes_climbs_the_ladder_and_parks_the_unusual_cases(cli):
    done = cli("run", str(ROOT / "examples" / "taxes" / "taxes.yaml"), "--json")
    assert done.returncode == 0, done.stderr
    runs = {r["case_id"]: r for r in json.loads(done.stdout)["runs"]}
    assert {c: (r["status"], r["iterations"]) for c, r in runs.items()} == {
        "alvarez": ("passed", 2), "chen": ("passed", 2),          # fixed after the checker's feedback
        "okafor": ("passed", 3), "nguyen": ("passed", 3),         # passed only on the stronger model
        "brooks": ("needs_review", 1), "whitfield": ("needs_review", 1),  # parked for a person
    }
    okafor = json.loads(cli("show", runs["okafor"]["id"], "--json").stdout)
    assert [i["model"] for i in okafor["iterations"]] == ["scripted-cheap", "scripted-cheap", "scripted-strong"]
    assert {c["role"] for c in okafor["calls"]} == {"worker", "judge"}


@pytest.mark.parametrize("spec", [p for p in SPECS if p.parent.name == "loops"], ids=lambda p: p.stem)
def test_each_ready_made_loop_runs_offline_and_passes(cli, spec):
    done = cli("run", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] == report["total"] > 0


def test_the_readme_spec_runs_offline_as_the_readme_says(cli, tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## A loop spec"):]
    spec = tmp_path / "double.yaml"
    spec.write_text(section[section.index("```yaml\n") + 8:section.index("\n```", section.index("```yaml\n"))] + "\n")
    done = cli("run", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    runs = {r["case_id"]: r for r in json.loads(done.stdout)["runs"]}
    assert {c: (r["status"], r["iterations"]) for c, r in runs.items()} == {"a": ("passed", 2), "b": ("passed", 3)}
    b = json.loads(cli("show", runs["b"]["id"], "--json").stdout)
    assert [i["model"] for i in b["iterations"]] == ["cheap", "cheap", "strong"]  # the escalation, as described
    assert {c["role"] for c in b["calls"]} == {"worker", "judge"}
