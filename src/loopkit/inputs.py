"""Cases for a batch: streamed from .jsonl/.csv/.yaml files or an inline list.

Files are checked in full before a batch starts (a broken line is an error naming file and line,
before any call is paid for) and then streamed, so memory does not grow with the number of cases.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .bloom import Bloom
from .errors import InputError
from .spec.safe_yaml import MAX_DEPTH, LimitedLoader, YamlLimitError, reader_problem

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Case:
    """One input row. `id` is the row's `id` field, else its 1-based position."""

    id: str
    data: dict[str, Any]


# Each reader yields (line number, or item number for an inline list; the row's data).
Rows = Iterator[tuple[int, Any]]
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _data_problem(data: dict[str, Any]) -> str | None:
    """Why a case's data cannot be used: nested too deep, or text that is not characters.

    A lone UTF-16 surrogate (JSON's "\\ud800") is no character: it cannot be encoded to go to a
    model, into the ledger or onto a terminal, so it is refused here rather than mid-run.
    """
    def field(path: tuple[Any, ...]) -> str:
        return ".".join(map(str, path)) or "(the case)"

    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and not value.isascii() and (bad := _SURROGATE.search(value)):
            code = ord(bad.group())
            return (f"the field `{field(path)}` holds a lone UTF-16 surrogate U+{code:04X} (written \\u{code:04x}), "
                    "which is not a character; write the text it stands for")
        if isinstance(value, (dict, list)):
            if len(path) >= MAX_DEPTH:
                return f"the field `{field(path)}` is nested deeper than {MAX_DEPTH} levels of objects and lists"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                    return f"a field name in `{field(path)}` holds a lone UTF-16 surrogate, which is not a character"
                stack.append((item, path + (key,)))
    return None


def _case(data: Any, index: int, where: str) -> Case:
    if not isinstance(data, dict):
        raise InputError(f"found {_kind(data)}, expected an object (a mapping of fields)", location=where)
    problem = _data_problem(data)
    if problem:
        raise InputError(problem, location=where)
    given = data.get("id")
    return Case(id=str(index if given is None or given == "" else given), data=data)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each line, decoded one line at a time so a bad byte names its line."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputError("no such inputs file", location=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", location=str(path)) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 text ({exc.reason}: byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                                 "save the file as UTF-8", location=f"{path}:{lineno}") from None


def _jsonl(path: Path) -> Rows:
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"bad JSON: {exc.msg} (column {exc.colno})", location=f"{path}:{lineno}") from None
        except RecursionError:
            raise InputError(f"nested deeper than {MAX_DEPTH} levels of objects and lists",
                             location=f"{path}:{lineno}") from None
        yield lineno, data


def _csv(path: Path) -> Rows:
    lines = (text for _, text in _lines(path))
    reader = csv.DictReader(lines, strict=True)
    try:
        for row in reader:
            lineno = reader.line_num
            if None in row:
                raise InputError(f"extra column(s): found {len(reader.fieldnames or []) + len(row[None])} values, "
                                 f"expected {len(reader.fieldnames or [])} (the header's columns)", location=f"{path}:{lineno}")
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise InputError(f"missing column(s) {', '.join(missing)}: found {len(row) - len(missing)} values, "
                                 f"expected {len(row)} (the header's columns)", location=f"{path}:{lineno}")
            yield lineno, dict(row)
    except csv.Error as exc:
        raise InputError(f"bad CSV: {exc}", location=f"{path}:{reader.reader.line_num}") from None


def _yaml(path: Path) -> Rows:
    # YAML cannot be streamed item by item; a YAML inputs file is read whole (use .jsonl for big sets).
    text = "".join(line for _, line in _lines(path))
    try:
        loader = LimitedLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InputError(f"bad YAML: {reader_problem(exc)}", location=f"{path}:{line}") from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        what = "" if isinstance(exc, YamlLimitError) else "bad YAML: "
        raise InputError(f"{what}{getattr(exc, 'problem', None) or exc}", location=where) from None
    finally:
        loader.dispose()
    if not isinstance(data, list):
        raise InputError(f"found {_kind(data)}, expected a YAML list of cases", location=str(path))
    for item, item_node in zip(data, node.value):
        yield item_node.start_mark.line + 1, item


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
                raise InputError(f"unknown inputs format {self._path.suffix or '(no extension)'!r}: "
                                 "use .jsonl, .csv or .yaml", location=str(source))

    @property
    def label(self) -> str:
        return str(self._path) if self._path else "inline"

    def __iter__(self) -> Iterator[Case]:
        """Cases in order. Ids are not checked here: `checked()` does, in the pass before a batch starts."""
        return (case for _, case in self._located())

    def _where(self, at: int) -> str:
        return f"inputs (item {at})" if self._inline is not None else f"{self._path}:{at}"

    def _located(self) -> Iterator[tuple[int, Case]]:
        if self._inline is not None:
            rows: Rows = enumerate(self._inline, start=1)
        else:
            assert self._path is not None
            rows = _READERS[self._path.suffix.lower()](self._path)
        for index, (at, data) in enumerate(rows, start=1):
            yield at, _case(data, index, self._where(at))

    def checked(self) -> Iterator[Case]:
        """Cases in order, then InputError if two share an id (the ledger, resume and diffs find a case by its
        id). Ids are remembered in a fixed-size filter, so memory stays flat however many cases there are; its
        rare false alarms are settled by reading the cases again."""
        seen = _SeenIds()
        for _, case in self._located():
            seen.add(case.id)
            yield case
        if seen.suspects:
            self._raise_duplicate(seen.suspects)

    def _raise_duplicate(self, suspects: set[str]) -> None:
        first_at: dict[str, int] = {}
        for at, case in self._located():
            if case.id not in suspects:
                continue
            if case.id in first_at:
                unit = "item" if self._inline is not None else "line"
                unnamed = "" if case.data.get("id") not in (None, "") else "; a case without `id` takes its position as its id"
                raise InputError(f"duplicate case id {case.id!r} (first at {unit} {first_at[case.id]}){unnamed}",
                                 location=self._where(at))
            first_at[case.id] = at

    def validate(self) -> int:
        """Read every case once, raising InputError at the first broken one (or duplicate id); returns the count."""
        return sum(1 for _ in self.checked())


class _SeenIds:
    """Which ids a pass has seen, in 2 MiB whatever their number (bloom.py). An id whose bits were all set
    already is a suspect: a duplicate, or a false alarm (at 100,000 ids, one pass in about seven has one).
    A dict of every id grew the peak memory of a 100,000-case run by 13 MiB."""

    def __init__(self) -> None:
        self.seen = Bloom()
        self.suspects: set[str] = set()

    def add(self, case_id: str) -> None:
        if not self.seen.add(case_id):
            self.suspects.add(case_id)
