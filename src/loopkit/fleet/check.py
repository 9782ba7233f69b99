"""`loopkit check FLEET.yaml`: the fleet file, every loop's spec, and every loop's cases, without a model call."""

from __future__ import annotations

from pathlib import Path

from ..api import SpecCheck
from ..errors import LoopkitError, SpecError
from .load import load_fleet


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
    return SpecCheck(str(path), fleet.name, problems, [], cases, None, kind="fleet")
