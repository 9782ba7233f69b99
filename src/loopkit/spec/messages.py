"""Problems in the spec's own words: pydantic errors turned into found/expected, with did-you-mean hints."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from .positions import Located, Path_, Problems
from .schema import CHECKER_TYPES, NOT_FROM_YAML, LoopSpec

_FIELD_ALIASES = {"pass_": "pass", "json_schema": "schema"}


def allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name not in NOT_FROM_YAML]


def _unwrap(ann: Any) -> list[Any]:
    """The alternatives of an annotation: `A | B`, `Annotated[A, ...]` and `Optional[A]` flattened."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return _unwrap(typing.get_args(ann)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(ann) for alt in _unwrap(arg)]
    return [ann]


def _model_for(ann: Any, node: Any) -> type[BaseModel] | None:
    """The pydantic model that reads `node` under annotation `ann` (a checker is chosen by its `type`)."""
    for alt in _unwrap(ann):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            tag = alt.model_fields.get("type")
            if tag is None or (isinstance(node, dict) and node.get("type") in typing.get_args(tag.annotation)):
                return alt
    return None


def _model_at(path: Path_, data: Any, root: type[BaseModel] = LoopSpec) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at `path`, for did-you-mean suggestions."""
    ann: Any = root
    node = data
    for part in path:
        if isinstance(part, int):
            lists = [a for a in _unwrap(ann) if typing.get_origin(a) is list]
            if not lists:
                return None
            ann = typing.get_args(lists[0])[0]
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        model = _model_for(ann, node)
        if model is None:
            return None
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        ann = field.annotation
        node = node.get(part) if isinstance(node, dict) else None
    return _model_for(ann, node)


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


_EXPECTED = {
    "dict_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _expected(e: dict[str, Any], path: Path_) -> str:
    kind = e["type"]
    if kind == "model_type":
        if e.get("ctx", {}).get("class_name") == "ModelRef":
            return "a litellm model name or a mapping with `id:`"
        return "a mapping"
    if kind == "string_pattern_mismatch" and path and path[-1] == "function":
        return "`file.py:function_name` (a Python file relative to the spec, a colon, a function name)"
    if kind == "literal_error":
        return f"{e['ctx']['expected']}"
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    return e["msg"].removeprefix("Input should be ")


def pydantic_problems(err: ValidationError, data: Any, where: Located, out: Problems, *,
                      root: type[BaseModel] = LoopSpec) -> None:
    mismatches: dict[Path_, tuple[Any, list[str]]] = {}
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path = where.locate(loc)
        kind = e["type"]
        if kind in ("extra_forbidden", "invalid_key"):
            bad = loc[-1]
            key_path = path if path and path[-1] == bad else path + (bad,)
            if kind == "invalid_key":
                out.add(where.key_at(key_path), key_path, f"found the key {bad!r}, expected a name (a string)")
                continue
            parent = _model_at(key_path[:-1], data, root)
            allowed = allowed_keys(parent) if parent else []
            expected = f" (expected one of: {', '.join(allowed)})" if allowed else ""
            out.add(where.key_at(key_path), key_path, f"unknown key{did_you_mean(str(bad), allowed)}{expected}")
        elif kind == "missing":
            name = _FIELD_ALIASES.get(loc[-1], loc[-1])
            out.add(where.value_at(path), path + (name,), "missing; this key is required")
        elif kind == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            found = ctx.get("tag")
            out.add(where.value_at(path + ("type",)), path + ("type",),
                    f"found {found!r}, expected one of: {', '.join(tags)}{did_you_mean(str(found), tags)}")
        elif kind == "union_tag_not_found":
            out.add(where.value_at(path), path + ("type",), f"missing; this key is required (one of: {', '.join(CHECKER_TYPES)})")
        elif kind == "value_error":
            out.add(where.value_at(path), path, e["msg"].removeprefix("Value error, "))
        else:
            found, expected = mismatches.setdefault(path, (e.get("input"), []))
            text = _expected(e, path)
            if text not in expected:
                expected.append(text)
    for path, (found, expected) in mismatches.items():
        shown = "" if isinstance(found, dict) else f"found {describe(found)}, "
        out.add(where.value_at(path), path, f"{shown}expected {' or '.join(expected)}")
