"""Cases for a batch: streamed from .jsonl/.csv/.yaml files or an inline list.

Files are checked in full before a batch starts (a broken line is an error naming file and line,
before any call is paid for) and then streamed, so memory does not grow with the number of cases.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError


@dataclass(frozen=True)
class Case:
    """One input row. `id` is the row's `id` field, else its 1-based position."""

    id: str
    data: dict[str, Any]


def _case(data: Any, index: int, where: str) -> Case:
    if not isinstance(data, dict):
        raise InputError(f"found {type(data).__name__}, expected an object (a mapping of fields)", location=where)
    return Case(id=str(data.get("id", index)), data=data)


def _open_text(path: Path):
    try:
        return path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise InputError("no such inputs file", location=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(path)) from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with _open_text(path) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                yield lineno, line
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", location=f"{path}:{lineno + 1}") from None


def _jsonl(path: Path) -> Iterator[Case]:
    index = 0
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"bad JSON: {exc.msg} (column {exc.colno})", location=f"{path}:{lineno}") from None
        index += 1
        yield _case(data, index, f"{path}:{lineno}")


def _csv(path: Path) -> Iterator[Case]:
    with _open_text(path) as fh:
        try:
            reader = csv.DictReader(fh, strict=True)
            index = 0
            for row in reader:
                lineno = reader.line_num
                if None in row:
                    raise InputError(f"more values than the {len(reader.fieldnames or [])} columns in the header", location=f"{path}:{lineno}")
                missing = [k for k, v in row.items() if v is None]
                if missing:
                    raise InputError(f"missing column(s): {', '.join(missing)}", location=f"{path}:{lineno}")
                index += 1
                yield _case(dict(row), index, f"{path}:{lineno}")
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", location=str(path)) from None
        except csv.Error as exc:
            raise InputError(f"bad CSV: {exc}", location=f"{path}:{reader.line_num}") from None


def _yaml(path: Path) -> Iterator[Case]:
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputError("no such inputs file", location=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", location=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"bad YAML: {getattr(exc, 'problem', exc)}", location=where) from None
    if not isinstance(data, list):
        raise InputError("expected a YAML list of cases", location=str(path))
    for i, item in enumerate(data, start=1):
        yield _case(item, i, f"{path} (item {i})")


_READERS = {".jsonl": _jsonl, ".ndjson": _jsonl, ".csv": _csv, ".yaml": _yaml, ".yml": _yaml}


class Inputs:
    """A re-iterable source of cases; iterate it as often as needed (once to validate, once to run)."""

    def __init__(self, source: str | Path | list[dict[str, Any]] | None, *, base_dir: Path | None = None) -> None:
        self._inline: list[dict[str, Any]] | None = None
        self._path: Path | None = None
        if source is None:
            self._inline = [{}]
        elif isinstance(source, list):
            self._inline = source
        else:
            path = Path(source)
            self._path = path if path.is_absolute() or base_dir is None else base_dir / path
            if self._path.suffix.lower() not in _READERS:
                raise InputError(f"unknown inputs format {self._path.suffix!r}: use .jsonl, .csv or .yaml", location=str(source))

    @property
    def label(self) -> str:
        return str(self._path) if self._path else "inline"

    def __iter__(self) -> Iterator[Case]:
        if self._inline is not None:
            return (_case(item, i, f"inputs (item {i})") for i, item in enumerate(self._inline, start=1))
        assert self._path is not None
        return _READERS[self._path.suffix.lower()](self._path)

    def validate(self) -> int:
        """Read every case once, raising InputError at the first broken one; returns the count."""
        return sum(1 for _ in self)
