"""`loopkit plan --write NEW.yaml`: the chosen design as a spec that differs from the current one only in
`model`, `escalate` and `stop` — the rest of the file (comments included) is copied as written, and so are
the escalations that fire on a condition rather than after a number of iterations (they come first).

Models keep the mapping the current spec gives them (api_base, price, replies…), found by the name the
ledger knows them by; a model the spec does not name is written as its litellm string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import UsageError
from .spec.safe_yaml import LimitedLoader

if TYPE_CHECKING:
    from .plan_model import Design
    from .spec import LoopSpec, ModelRef

__all__ = ["design_text", "write_design"]

REPLACED = ("model", "escalate", "stop")


def _model_value(ref: ModelRef | None, label: str) -> Any:
    if ref is None:
        return label
    mapping = ref.model_dump(mode="json", exclude_none=True, exclude_defaults=True, by_alias=True)
    return mapping["id"] if set(mapping) == {"id"} else mapping


def _flow(value: Any) -> str:
    """A value as one line of YAML (JSON is YAML): templates and all, quoted safely."""
    return json.dumps(value, ensure_ascii=False)


def _kept(spec: LoopSpec, text: str, node: yaml.Node | None) -> list[str]:
    """The escalations a plan leaves alone (no `when.iterations`: they fire on what a case does), as written in
    the spec (comments inside them included), each as the lines of one `  - ` list item."""
    if not isinstance(node, yaml.SequenceNode):
        return []
    found = []
    for esc, item in zip(spec.escalate, node.value):
        if esc.when.iterations is not None:
            continue
        column = item.start_mark.column
        first, *more = text[item.start_mark.index:item.end_mark.index].rstrip().splitlines()
        while more and (not more[-1].strip() or more[-1].strip().startswith("#")):  # the next item's comments
            more.pop()
        found += [f"  - {first}\n", *(f"    {line[column:] if line[:column].isspace() else line.lstrip()}\n" for line in more)]
    return found


def _blocks(spec: LoopSpec, design: Design, kept: list[str]) -> dict[str, str]:
    """The new top-level `model`, `escalate` and `stop` entries, as YAML text."""
    refs = {m.label: m for _, m in reversed(spec.models())}
    (first, count), *rest = design.stages
    blocks = {"model": f"model: {_flow(_model_value(refs.get(first), first))}\n"}
    lines, done = list(kept), count
    for m, n in rest:
        lines += [f"  - when: {{iterations: {done}}}\n", f"    model: {_flow(_model_value(refs.get(m), m))}\n"]
        done += n
    if design.human:
        old = next((e for e in spec.escalate if e.human is not None), None)
        human: dict[str, Any] = {"note": old.human_note if old and old.human_note else "The loop could not pass this case; please review it."}
        minutes = old.human_minutes if old else None
        if minutes is not None:
            human["minutes"] = minutes
        lines += [f"  - when: {{iterations: {done}}}\n", f"    human: {_flow(human)}\n"]
    blocks["escalate"] = "escalate:\n" + "".join(lines) if lines else "escalate: []\n"
    stop = spec.stop.model_dump(mode="json", exclude_none=True, by_alias=True)
    stop["max_iterations"] = design.iterations
    blocks["stop"] = f"stop: {_flow(stop)}\n"
    return blocks


def design_text(spec: LoopSpec, design: Design) -> str:
    """The spec's text with its `model`, `escalate` and `stop` entries replaced by the design's (missing ones appended)."""
    text = spec.source
    lines = text.splitlines(keepends=True)
    loader = LimitedLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise UsageError("plan --write needs a spec written as a block mapping (one top-level key per line)")
    spans: dict[str, tuple[int, int]] = {}
    escalations = None
    for key, value in root.value:
        if key.value in REPLACED:
            end = value.end_mark.line + (1 if value.end_mark.column > 0 else 0)
            spans[key.value] = (key.start_mark.line, max(end, key.start_mark.line + 1))
        if key.value == "escalate":
            escalations = value
    blocks = _blocks(spec, design, _kept(spec, text, escalations))
    if design.stages[0][0] == spec.model.label:  # the same first model: its mapping stays as written (comments, anchors)
        spans.pop("model", None)
        blocks.pop("model")
    for name, (start, end) in sorted(spans.items(), key=lambda kv: -kv[1][0]):  # from the bottom, so earlier lines stay put
        lines[start:end] = [blocks[name]]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines += [blocks[name] for name in REPLACED if name not in spans and name in blocks]
    return "".join(lines)


def write_design(spec: LoopSpec, design: Design, path: Path) -> str:
    """Write the design as a spec at `path`; it must load, and do the same task, or nothing is written."""
    from .errors import SpecError
    from .history import fingerprint
    from .spec import parse_spec

    text = design_text(spec, design)
    try:
        parse_spec(text, path=path.resolve())
    except SpecError as exc:
        raise UsageError(f"the planned spec would not load at {path} ({exc.problems[0]}); write it next to the current spec, "
                         "whose relative paths it keeps") from None
    if fingerprint(text) != fingerprint(spec.source):  # pragma: no cover - a bug in design_text, not the user's doing
        raise UsageError("the planned spec changed more than model, escalate and stop; not written")
    path.write_text(text, encoding="utf-8")
    return text
