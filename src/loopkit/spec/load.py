"""The entry points: spec text or a spec file in, a validated `LoopSpec` or a `SpecError` out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import SpecError
from .lint import semantic_problems
from .messages import allowed_keys, describe, pydantic_problems
from .positions import Located, Problems
from .safe_yaml import LimitedLoader, YamlLimitError, reader_problem
from .schema import NOT_FROM_YAML, LoopSpec

def _position_of_offset(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _compose(text: str, file: str) -> tuple[Any, Located]:
    try:
        loader = LimitedLoader(text)  # the reader already rejects control characters here
    except yaml.reader.ReaderError as exc:
        line, col = _position_of_offset(text, exc.position)
        raise SpecError([f"{file}:{line}:{col}: (yaml): not valid YAML: {reader_problem(exc)}"]) from None
    try:
        node = loader.get_single_node()
        where = Located(node, loader)  # first: constructing flattens merge keys (<<) into the mappings in place
        return (loader.construct_document(node) if node is not None else None), where
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = "" if isinstance(exc, YamlLimitError) else "not valid YAML: "
        raise SpecError([f"{file}:{pos[0]}:{pos[1]}: (yaml): {what}{getattr(exc, 'problem', None) or exc}"]) from None
    finally:
        loader.dispose()


def parse_spec(text: str, *, path: Path | None = None, display: str | None = None) -> LoopSpec:
    """Validate spec text; raise SpecError listing every problem with file:line:col."""
    file = display or (str(path) if path else "<spec>")
    data, where = _compose(text, file)
    if data is None:
        raise SpecError([f"{file}:1:1: (top level): the spec is empty; expected a mapping of spec keys (model, task, checkers, ...)"])
    if not isinstance(data, dict):
        raise SpecError([f"{file}:1:1: (top level): found {describe(data)}, expected a mapping of spec keys (model, task, checkers, ...)"])
    out = Problems(file)
    for key_path, node, first in where.duplicates:
        out.add(Located.position(node), key_path, f"duplicate key (first at line {first.start_mark.line + 1}); "
                "YAML silently keeps only the last, so remove one")
    for reserved in NOT_FROM_YAML:
        if reserved in data:
            data = {k: v for k, v in data.items() if k != reserved}
            allowed = allowed_keys(LoopSpec)
            out.add(where.key_at((reserved,)), (reserved,), f"unknown key (expected one of: {', '.join(allowed)})")
    data.setdefault("name", path.stem if path else "spec")
    spec: LoopSpec | None = None
    try:
        # YAML keys only (`pass`, not the Python name `pass_`), as `loopkit schema` says
        spec = LoopSpec.model_validate({**data, "path": path, "source": text}, by_name=False)
    except ValidationError as err:
        pydantic_problems(err, data, where, out)
    base_dir = path.parent if path else Path.cwd()
    semantic_problems(data, base_dir, where, text, out)
    if out or spec is None:
        raise SpecError(out.sorted())
    return spec


def load_spec(path: str | Path) -> LoopSpec:
    """Read and validate a spec file (the format: docs/spec.md)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError([f"{p}: no such spec file"]) from None
    except IsADirectoryError:
        raise SpecError([f"{p}: is a directory, expected a spec file"]) from None
    except OSError as exc:
        raise SpecError([f"{p}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        data, start = exc.object, exc.start
        line = data.count(b"\n", 0, start) + 1
        col = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise SpecError([f"{p}:{line}:{col}: (file): not UTF-8 text ({exc.reason}: byte {data[start]:#04x}); "
                         "save the spec as UTF-8"]) from None
    return parse_spec(text, path=p.resolve(), display=str(p))
