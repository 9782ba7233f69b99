"""A YAML loader with limits, for specs and inputs files alike.

PyYAML composes nodes recursively (10,000 nested brackets end in a RecursionError) and shares an
anchored node wherever it is aliased, so 400 bytes of nested aliases (a "billion laughs") expand to
millions of values once anything walks the result. Both are refused while composing, at the line
and column where the limit is crossed, before the document is built.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_DEPTH = 64  # nested mappings and lists; a spec uses about 5
MAX_ALIAS_NODES = 100_000  # values that aliases add when the document is expanded


class YamlLimitError(ComposerError):
    """The document is nested too deep or its aliases expand too far; not a syntax error."""


def reader_problem(exc: yaml.reader.ReaderError) -> str:
    """What PyYAML's reader refused in text already decoded: a control character (a code point or a str)."""
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    return f"the control character U+{code:04X} is not allowed"


class LimitedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses deep nesting, recursive aliases and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(collection node) -> values in it once aliases are expanded
        self._alias_nodes = 0

    def _size(self, node: yaml.Node) -> int | None:
        """Values in `node` with its aliases expanded; None while it is still being composed."""
        return self._sizes.get(id(node)) if isinstance(node, yaml.CollectionNode) else 1

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
            size = self._size(self.anchors[event.anchor])
            if size is None:
                raise YamlLimitError(None, None, f"the alias *{event.anchor} is inside its own anchor "
                                     "(a recursive structure); loopkit reads only trees", event.start_mark)
            self._alias_nodes += size
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise YamlLimitError(None, None, f"aliases expand to more than {MAX_ALIAS_NODES:,} values "
                                     "(an alias bomb?); write the values out or use fewer aliases", event.start_mark)
            return super().compose_node(parent, index)
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nested:
            if self._depth >= MAX_DEPTH:
                raise YamlLimitError(None, None, f"nested deeper than {MAX_DEPTH} levels of mappings and lists",
                                     event.start_mark)
            self._depth += 1
        node = super().compose_node(parent, index)
        if nested:
            self._depth -= 1
            items = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            self._sizes[id(node)] = 1 + sum(self._size(item) or 0 for item in items)
        return node

