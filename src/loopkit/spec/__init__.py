"""Turn a YAML loop spec into a validated `LoopSpec`, or a list of problems located by file:line:col.

Nothing else in loopkit parses spec YAML. Every error names where it is, the key, what was found
and what was expected, so `loopkit check` can report all problems at once. The modules: `schema`
(the models and their JSON Schema), `safe_yaml` (a YAML loader with depth and alias limits, also used
for inputs), `positions` (where YAML nodes are), `messages` (problem wording), `lint` (what the models
cannot see) and `load` (the entry points).
"""

from .lint import FEEDBACK_VARIABLES, INPUT_SUFFIXES, PROMPT_VARIABLES, REPLY_VARIABLES
from .load import load_spec, parse_spec
from .schema import (
    CHECKER_TYPES,
    SCRIPTED,
    Budget,
    Checker,
    CommandChecker,
    ContainsChecker,
    EqualsChecker,
    Escalation,
    JsonChecker,
    JudgeChecker,
    LoopSpec,
    ModelRef,
    ModelSpec,
    NumberChecker,
    Params,
    Price,
    PythonChecker,
    RegexChecker,
    Reward,
    Stop,
    Task,
    When,
    json_schema,
)

__all__ = [
    "CHECKER_TYPES",
    "FEEDBACK_VARIABLES",
    "INPUT_SUFFIXES",
    "PROMPT_VARIABLES",
    "REPLY_VARIABLES",
    "SCRIPTED",
    "Budget",
    "Checker",
    "CommandChecker",
    "ContainsChecker",
    "EqualsChecker",
    "Escalation",
    "JsonChecker",
    "JudgeChecker",
    "LoopSpec",
    "ModelRef",
    "ModelSpec",
    "NumberChecker",
    "Params",
    "Price",
    "PythonChecker",
    "RegexChecker",
    "Reward",
    "Stop",
    "Task",
    "When",
    "json_schema",
    "load_spec",
    "parse_spec",
]
