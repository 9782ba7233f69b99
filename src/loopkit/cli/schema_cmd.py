"""`loopkit schema`: the JSON Schema of a loop spec, for editors and other tools that write specs."""

from __future__ import annotations

from .app import JsonOpt, app, print_json


@app.command()
def schema(as_json: JsonOpt = False) -> None:  # noqa: ARG001 - the output is JSON either way
    """Print the JSON Schema of a loop spec (the same JSON with or without --json).

    Point an editor's YAML language server at it for completion and checking as you type;
    `loopkit check` also verifies what a schema cannot (files, templates, budgets).
    """
    from ..spec import json_schema

    print_json(json_schema())
