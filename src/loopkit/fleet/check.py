"""`loopkit check FLEET.yaml`: the fleet file, every loop's spec, and every loop's cases, without a model call."""

from __future__ import annotations

from pathlib import Path

from ..api import SpecCheck
from ..errors import LoopkitError, SpecError
from .load import Fleet, load_fleet


def check_fleet(path: Path) -> SpecCheck:
    """Every problem of the fleet file and its loops (exit 2 in `check`); cases counted as a spec's are."""
    from ..batch import check_cases
    from ..inputs import Inputs

    try:
        fleet = load_fleet(path)
    except SpecError as exc:
        return SpecCheck(str(path), problems=exc.problems, kind="fleet")
    problems: list[str] = []
    cases = 0
    for plan in fleet.loops:
        spec = plan.spec
        inputs = Inputs(plan.inputs, base_dir=None) if plan.inputs else Inputs(spec.inputs, base_dir=spec.base_dir)
        try:
            cases += check_cases(spec, inputs)
        except LoopkitError as exc:
            problems.append(f"{path}: loop {plan.name}: {exc}")
    return SpecCheck(str(path), fleet.name, problems, unused_providers(fleet), cases, None, kind="fleet")


def unused_providers(fleet: Fleet) -> list[str]:
    """`providers:` entries no loop's model belongs to (a typo gives the default concurrency silently). Only
    `provider/model` names and the scripted model are judged here: `check` never loads litellm."""
    from .providers import SCRIPTED_PROVIDER

    used: set[str] = set()
    for plan in fleet.loops:
        for _, model in plan.spec.models():
            head, sep, _ = model.id.partition("/")
            if model.scripted:
                used.add(SCRIPTED_PROVIDER)
            elif not sep:
                return []  # a bare name (`gpt-4o`): only litellm knows its provider
            else:
                used.add(head)
    return [f"{fleet.path.name}: providers.{name}: no loop's model is from this provider (they are from: "
            f"{', '.join(sorted(used))})" for name in fleet.spec.providers if name not in used]
