"""Read a fleet file into a `Fleet`, or raise SpecError with every problem at file:line:col.

The same YAML reader, positions and wording as a loop spec (spec/); each loop's spec is loaded and
checked too, and its caps must be enforceable under the fleet's budget (max_tokens and a price for
every model), since a fleet always runs under a money cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from ..errors import SpecError
from ..spec import LoopSpec, load_spec
from ..spec.load import _compose
from ..spec.messages import describe, pydantic_problems
from ..spec.positions import Problems
from .model import FleetSpec, deadline_at, priority_of

SHARE_SLACK = 1e-9


@dataclass
class LoopPlan:
    """One loop of a fleet, resolved: its spec loaded, its inputs' path, its place in the order."""

    name: str
    spec: LoopSpec
    inputs: str | None  # absolute path, or None for the spec's own
    priority: int
    share: float | None
    deadline: datetime | None
    index: int


@dataclass
class Fleet:
    spec: FleetSpec
    path: Path
    source: str
    loops: list[LoopPlan]

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem

    def loop(self, name: str) -> LoopPlan:
        for plan in self.loops:
            if plan.name == name:
                return plan
        from ..errors import UsageError

        raise UsageError(f"fleet {self.name} has no loop {name!r} (its loops: {', '.join(p.name for p in self.loops)})")


def looks_like_fleet(path: str | Path) -> bool:
    """Whether a YAML file is a fleet file (a top-level `loops:` key) rather than a loop spec; cheap, no schema."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith("loops:") for line in text.splitlines())


def parse_fleet(text: str, *, path: Path, display: str | None = None) -> Fleet:
    file = display or str(path)
    data, where = _compose(text, file)
    if not isinstance(data, dict):
        raise SpecError([f"{file}:1:1: (top level): found {describe(data)}, expected a mapping with budget, loops, ..."])
    out = Problems(file)
    for key_path, node, first in where.duplicates:
        out.add(where.position(node), key_path, f"duplicate key (first at line {first.start_mark.line + 1}); "
                "YAML silently keeps only the last, so remove one")
    try:
        spec = FleetSpec.model_validate(data)
    except ValidationError as err:
        pydantic_problems(err, data, where, out, root=FleetSpec)
        raise SpecError(out.sorted()) from None
    base = path.parent
    cap = spec.budget.total_usd if spec.budget.total_usd is not None else spec.budget.usd_per_day
    loops: list[LoopPlan] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(spec.loops):
        spec_path = (base / item.spec).resolve()
        try:
            loop_spec = load_spec(spec_path)
        except SpecError as exc:
            out.add(where.value_at(("loops", i, "spec")), ("loops", i, "spec"),
                    f"the spec {item.spec} has {len(exc.problems)} problem(s): {'; '.join(exc.problems)}")
            continue
        from ..budget import budget_problems

        for problem in budget_problems(loop_spec, extra_cap=cap):
            out.add(where.value_at(("loops", i, "spec")), ("loops", i, "spec"), f"{item.spec}: {problem.replace('--max-usd', 'the fleet budget')}")
        inputs = None
        if item.inputs is not None:
            inputs = str((base / item.inputs).resolve())
            if not Path(inputs).is_file():
                out.add(where.value_at(("loops", i, "inputs")), ("loops", i, "inputs"), f"no such inputs file: {item.inputs}")
        elif not loop_spec.inputs:
            out.add(where.value_at(("loops", i)), ("loops", i, "inputs"), f"missing; {item.spec} names no inputs of its own")
        name = item.name or loop_spec.name
        if name in seen:
            key = ("loops", i, "name") if item.name else ("loops", i, "spec")
            out.add(where.value_at(key), key, f"a second loop named {name!r} (the first is loops.{seen[name]}); give one a `name:`")
        seen.setdefault(name, i)
        loops.append(LoopPlan(name, loop_spec, inputs, priority_of(item, i), item.share, deadline_at(item.deadline), i))
    shares = sum(item.share or 0.0 for item in spec.loops)
    if shares > 1 + SHARE_SLACK:
        out.add(where.key_at(("loops",)), ("loops",), f"the shares add up to {shares:g}, expected at most 1 (each is a fraction of the money)")
    if out:
        raise SpecError(out.sorted())
    return Fleet(spec, path, text, loops)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file and every loop spec it names."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SpecError([f"{p}: no such fleet file"]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"{p}: not UTF-8 text ({exc.reason}); save the fleet file as UTF-8"]) from None
    except OSError as exc:
        raise SpecError([f"{p}: cannot read: {exc.strerror}"]) from None
    return parse_fleet(text, path=p.resolve(), display=str(p))
