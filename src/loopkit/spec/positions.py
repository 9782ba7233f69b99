"""Where each key and value of a spec's YAML is written, so a problem can name its line and column."""

from __future__ import annotations

from typing import Any

import yaml

Position = tuple[int, int]
Path_ = tuple[Any, ...]
MERGE = "tag:yaml.org,2002:merge"  # `<<: *anchor`, which PyYAML cannot construct on its own


class Located:
    """The YAML document's nodes by key path, so every problem can name its line and column (1-based)."""

    def __init__(self, root: yaml.Node | None, loader: yaml.SafeLoader) -> None:
        self.values: dict[Path_, yaml.Node] = {}
        self.keys: dict[Path_, yaml.Node] = {}
        self.duplicates: list[tuple[Path_, yaml.Node, yaml.Node]] = []
        if root is not None:
            self._walk(root, (), loader)

    def _walk(self, node: yaml.Node, path: Path_, loader: yaml.SafeLoader) -> None:
        """Depth-first; the loader has refused recursive aliases and nesting deeper than Python's stack."""
        self.values[path] = node
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.tag == MERGE:
                    key: Any = "<<"
                elif isinstance(key_node, yaml.ScalarNode):
                    key = loader.construct_object(key_node, deep=True)
                else:
                    key = key_node.value
                try:
                    first = self.keys.get(path + (key,))
                except TypeError:  # an unhashable key; the YAML constructor reports it
                    continue
                if first is not None and key != "<<":
                    self.duplicates.append((path + (key,), key_node, first))
                self.keys[path + (key,)] = key_node
                self._walk(value_node, path + (key,), loader)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,), loader)

    @staticmethod
    def position(node: yaml.Node) -> Position:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def value_at(self, path: Path_) -> Position:
        """Where the value at `path` starts; the nearest enclosing value when `path` is not in the file."""
        while path not in self.values and path:
            path = path[:-1]
        node = self.values.get(path)
        return self.position(node) if node is not None else (1, 1)

    def key_at(self, path: Path_) -> Position:
        """Where the key of `path` is written; else where its value is."""
        node = self.keys.get(path)
        return self.position(node) if node is not None else self.value_at(path)

    def locate(self, loc: tuple[Any, ...]) -> Path_:
        """The deepest path in the file along a pydantic error location (which may hold union tags)."""
        path: Path_ = ()
        for part in loc:
            if path + (part,) in self.values:
                path = path + (part,)
        return path


def key_name(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


class Problems:
    """Problems found so far, each at a position; reported in file order."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._found: list[tuple[Position, str]] = []

    def add(self, pos: Position, path: Path_ | str, message: str) -> None:
        key = path if isinstance(path, str) else key_name(path)
        text = f"{self.file}:{pos[0]}:{pos[1]}: {key}: {message}"
        if all(text != seen for _, seen in self._found):
            self._found.append((pos, text))

    def __bool__(self) -> bool:
        return bool(self._found)

    def sorted(self) -> list[str]:
        return [text for _, text in sorted(self._found, key=lambda p: p[0])]
