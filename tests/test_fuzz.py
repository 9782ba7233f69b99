"""Bad input never crashes loopkit: mutated specs and inputs give a documented exit code and a
one-line error, never a traceback (SPEC.md §1 "A bad spec is refused ... never a traceback", §3).

The CLI runs in-process through `loopkit.cli.main()` (exactly what the console script calls), so a
crash shows up as an exception escaping `main()`. Only specs whose every model is the offline
scripted model are run; the others are only checked, so the fuzzer never reaches the network or
executes a command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

BASE: dict[str, Any] = {
    "version": 1,
    "name": "fuzz",
    "model": {"id": "loopkit/scripted", "price": {"input_per_mtok": 1, "output_per_mtok": 2},
              "replies": ["{{ case.a }}", "{{ case.a }}!"]},
    "params": {"max_tokens": 20, "temperature": 0},
    "task": {"system": "Be brief.", "prompt": "Echo {{ case.a }}.", "feedback": "RETRY: {{ feedback }}", "memory": "last"},
    "inputs": "cases.jsonl",
    "checkers": [
        {"name": "same", "type": "equals", "expected": "{{ case.a }}", "weight": 2},
        {"name": "has", "type": "contains", "expected": "{{ case.a }}"},
        {"name": "num", "type": "number", "expected": "{{ case.n }}", "tolerance": 0.5},
        {"name": "re", "type": "regex", "pattern": "^[a-z0-9!]+$", "required": True},
        {"name": "js", "type": "json", "schema": {"type": "integer"}, "audit": True},
    ],
    "reward": {"combine": "weighted_mean", "pass": 0.5},
    "stop": {"max_iterations": 3, "plateau": 2},
    "escalate": [{"when": {"iterations": 1, "reward_below": 0.9}, "human": "look"}],
    "budget": {"usd": 1, "tokens": 5000, "seconds": 30, "total_usd": 5},
}
CASES = [{"id": "one", "a": "x", "n": 1}, {"id": "two", "a": "7", "n": 7}, {"a": "zz", "n": "3"}]

# Never offered to the mutator: checker types that execute code or call a model.
UNSAFE = ("command", "python", "judge")

# Text the mutator writes into specs: any code point, control characters, lone surrogates (written
# with surrogatepass, so the file is not valid UTF-8) and YAML's forbidden \ufffe included.
SPEC_CHARS = st.one_of(st.characters(blacklist_categories=("Cc", "Cs")), st.characters())
spec_text = st.text(alphabet=SPEC_CHARS, max_size=30)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    spec_text, st.sampled_from(["", "{{", "{{ case.missing }}", "{% if %}", "-1", "1e309", "~", "null", "[]", "{}",
                                           "loopkit/scripted", "openai/test", "conversation", "min", "equals", "regex"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(SPEC_CHARS, max_size=10), inner, max_size=3)), max_leaves=6)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, prefix + (i,))
    return found


def _parent(doc: Any, path: tuple) -> tuple[Any, Any]:
    for step in path[:-1]:
        doc = doc[step]
    return doc, path[-1]


templates = st.lists(st.sampled_from(["{{ case.a }}", "{{ case.n * 2 }}", "{{ case.a | upper }}", "{{ iteration }}", "{{ feedback }}",
                                      "{{ case.missing }}", "{{ case.__class__.__mro__ }}", "{% for x in case %}{{ x }}{% endfor %}",
                                      "{{ case.n / 0 }}", "{{", "}}", "7", "x", " ", "!", "é", "\n", "{}", '{"a": 1}']),
                    min_size=1, max_size=4).map("".join)


def _tweak(draw: st.DrawFn, value: Any) -> Any:
    """A value of the same type (so the spec often stays valid and the run path gets explored)."""
    if isinstance(value, bool):
        return draw(st.booleans())
    if isinstance(value, int):
        return draw(st.integers(-2, 6))
    if isinstance(value, float):
        return draw(st.floats(-1, 3, allow_nan=False))
    if isinstance(value, str):
        return draw(st.one_of(templates, spec_text))
    return draw(values)


@st.composite
def mutated_spec(draw: st.DrawFn) -> str:
    """Spec text: the valid BASE with a few mutations (same-type tweaks, deleted, renamed or retyped
    keys), then maybe textual damage."""
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(doc)
        if not paths:
            break
        parent, key = _parent(doc, draw(st.sampled_from(paths)))
        action = draw(st.sampled_from(["tweak", "tweak", "tweak", "delete", "delete", "rename", "retype", "wrap"]))
        if action == "tweak":
            parent[key] = _tweak(draw, parent[key])
        elif action == "delete":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(SPEC_CHARS, min_size=1, max_size=12))] = parent.pop(key)
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"value": parent[key]}
        else:
            parent[key] = draw(values)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    damage = draw(st.sampled_from(["none"] * 6 + ["insert", "truncate", "unicode", "tabs", "duplicate"]))
    lines = text.splitlines(keepends=True)
    if damage == "insert":
        at = draw(st.integers(0, len(lines)))
        garbage = draw(st.sampled_from([": :\n", "- [\n", "{a: b\n", "&a *b\n", "!!python/object:os.system ls\n", "key: 'unterminated\n",
                                        "%YAML 9.9\n", "\t- tab\n", "? complex\n", "'\n", "--- \n...\n---\n"]))
        lines.insert(at, garbage if draw(st.booleans()) else draw(st.text(SPEC_CHARS, max_size=20)) + "\n")
    elif damage == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
        lines = [text]
    elif damage == "unicode":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(SPEC_CHARS, min_size=1, max_size=10)) + text[at:]
        lines = [text]
    elif damage == "tabs":
        lines = [line.replace("  ", "\t", 1) for line in lines]
    elif damage == "duplicate" and lines:
        lines.append(draw(st.sampled_from(lines)))
    return "".join(lines)


@st.composite
def mutated_cases(draw: st.DrawFn) -> bytes:
    rows = [json.dumps(c, ensure_ascii=False).encode() for c in CASES]
    action = draw(st.sampled_from(["none"] * 5 + ["retype-field", "drop-field", "junk-line", "bytes", "replace-row", "blank"]))
    if action in ("retype-field", "drop-field"):
        i = draw(st.integers(0, len(CASES) - 1))
        case = dict(CASES[i])
        field = draw(st.sampled_from(sorted(case)))
        if action == "drop-field":
            del case[field]
        else:
            case[field] = draw(values)
        rows[i] = json.dumps(case, ensure_ascii=False).encode()
    elif action == "junk-line":
        rows.insert(draw(st.integers(0, len(rows))), draw(st.text(max_size=20)).encode("utf-8", "surrogatepass"))
    elif action == "bytes":
        rows.insert(draw(st.integers(0, len(rows))), draw(st.binary(min_size=1, max_size=12)))
    elif action == "replace-row":
        rows[draw(st.integers(0, len(rows) - 1))] = json.dumps(draw(values), ensure_ascii=False).encode()
    elif action == "blank":
        rows = []
    return b"\n".join(rows) + b"\n"


def run_main(args: list[str], *, cwd: Path, ledger: Path) -> tuple[int, str, str]:
    """`loopkit ARGS` in-process, as the console script runs it; returns (exit code, stdout, stderr).
    Any exception other than SystemExit is a crash and fails the test."""
    from loopkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    code: int = 0
    with mock.patch.object(sys, "argv", ["loopkit", *args]), mock.patch.dict(os.environ, {"LOOPKIT_LEDGER": str(ledger)}), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        os.chdir(cwd)
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(old_cwd)
    return code, out.getvalue(), err.getvalue()


def _offline_only(spec_path: Path) -> bool:
    """True when the spec loads and calls only the scripted model and runs no code."""
    from loopkit.errors import LoopkitError
    from loopkit.spec import load_spec

    try:
        spec = load_spec(spec_path)
    except LoopkitError:
        return False
    if any(not ref.scripted for _, ref in spec.models()):
        return False
    if spec.stop.max_iterations > 10:  # replies that differ every iteration would loop that long
        return False
    return not any(getattr(c, "type", None) in UNSAFE for c in spec.checkers)


def assert_clean(code: int, out: str, err: str, allowed: set[int]) -> None:
    assert "Traceback" not in out + err, out + err
    assert code in allowed, (code, out, err)
    if code == 2:
        assert (err + out).strip(), "an exit 2 says why"


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec_text=mutated_spec(), cases=mutated_cases())
def test_mutated_specs_and_inputs_never_crash(spec_text: str, cases: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="loopkit-fuzz-") as tmp:
        folder = Path(tmp)
        spec = folder / "spec.yaml"
        spec.write_text(spec_text, encoding="utf-8", errors="surrogatepass")
        (folder / "cases.jsonl").write_bytes(cases)
        ledger = folder / "ledger.db"

        code, out, err = run_main(["check", "spec.yaml"], cwd=folder, ledger=ledger)
        assert_clean(code, out, err, {0, 2})
        event(f"check exit {code}")

        if any(word in spec_text for word in UNSAFE) or not _offline_only(spec):
            return
        code, out, err = run_main(["run", "spec.yaml", "--json", "--concurrency", "4"], cwd=folder, ledger=ledger)
        # 3 (batch budget) and 4 (a run error, e.g. a reply template that fails on a case) are documented too.
        assert_clean(code, out, err, {0, 1, 2, 3, 4})
        event(f"run exit {code}")
        if code != 2:
            doc = json.loads(out)  # --json: one document, nothing else
            assert doc["exit_code"] == code


def test_the_unmutated_spec_runs_and_passes_somewhere(tmp_path: Path) -> None:
    """The fuzzer's starting point is valid, so its mutations test the error paths, not a broken base."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False))
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
    code, out, err = run_main(["check", "spec.yaml"], cwd=tmp_path, ledger=tmp_path / "l.db")
    assert code == 0, err
    code, out, err = run_main(["run", "spec.yaml", "--json"], cwd=tmp_path, ledger=tmp_path / "l.db")
    assert code in (0, 1), err
    assert json.loads(out)["total"] == 3


@settings(max_examples=25, deadline=None, database=None)
@given(argv=st.lists(st.one_of(st.sampled_from(["run", "check", "runs", "show", "review", "resume", "cost", "diff", "ab", "--json",
                                                "--limit", "--since", "--until", "--by", "--status", "--repeat", "--concurrency",
                                                "--fail-under", "--max-usd", "--tag", "--replay", "--ledger", "--inputs", "--help",
                                                "-1", "0", "nan", "inf", "abc", "x=y", "=", "spec.yaml", "cases.jsonl", "yesterday",
                                                "2h", "2099-01-01", "99999999999999999999", "model", "day"]),
                               st.text(max_size=8)), max_size=6))
def test_random_command_lines_never_crash(argv: list[str]) -> None:
    if argv[:1] == ["review"] and any(a in argv for a in ("--approve", "--reject", "--feedback")):
        return
    with tempfile.TemporaryDirectory(prefix="loopkit-fuzz-") as tmp:
        folder = Path(tmp)
        (folder / "spec.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False))
        (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
        code, out, err = run_main(argv, cwd=folder, ledger=folder / "ledger.db")
        assert_clean(code, out, err, {0, 1, 2, 3, 4})


@pytest.mark.parametrize("char", ["\x1f", "\x00", "\x7f", "\ufffe"])
def test_a_control_character_in_a_spec_is_a_located_error(tmp_path: Path, char: str) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("prompt: Echo", f"prompt: Ec{char}ho", 1)
    (tmp_path / "spec.yaml").write_text(text)
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
    code, out, err = run_main(["check", "spec.yaml"], cwd=tmp_path, ledger=tmp_path / "l.db")
    assert code == 2 and "Traceback" not in err
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "prompt: Ec" in ln)
    assert f"spec.yaml:{line}:" in err, err


@pytest.mark.parametrize("value", ["{value: 20}", '"abc"', "[1]", "-5", "0", "1.5", "true"])
@pytest.mark.parametrize("where", ["params", "model-params"])
def test_a_max_tokens_that_is_not_a_positive_integer_is_a_spec_error(tmp_path: Path, value: str, where: str) -> None:
    params = f"{{max_tokens: {value}}}"
    text = ('model: {id: loopkit/scripted, replies: ["{{ case.a }}"]' + (f", params: {params}" if where == "model-params" else "")
            + "}\n" + (f"params: {params}\n" if where == "params" else "")
            + 'task: {prompt: "Echo {{ case.a }}."}\ninputs: [{a: x}]\nchecks: []\n').replace("checks: []\n", "")
    (tmp_path / "spec.yaml").write_text(text)
    for args in (["check", "spec.yaml"], ["run", "spec.yaml", "--json"]):
        code, out, err = run_main(args, cwd=tmp_path, ledger=tmp_path / "l.db")
        assert code == 2, (args, code, out, err)
        assert "max_tokens" in err and "spec.yaml:" in err


# --- checkers: every output ends in a verdict or a checker error, never a crash or a hang ---------

# Pieces of patterns that backtrack catastrophically in a naive engine: nested and overlapping quantifiers.
_ATOMS = ["a", "aa", "a?", "a*", "a+", r"\w", ".", "[ab]", r"\s?", "(?:a|aa)"]
_QUANTIFIERS = ["+", "*", "{2,}", "+?", "{1,30}"]


@st.composite
def backtracking_pattern(draw: st.DrawFn) -> str:
    inner = "|".join(draw(st.lists(st.sampled_from(_ATOMS), min_size=1, max_size=3)))
    group = f"({inner}){draw(st.sampled_from(_QUANTIFIERS))}"
    if draw(st.booleans()):
        group = f"({group}){draw(st.sampled_from(_QUANTIFIERS))}"
    return draw(st.sampled_from(["^", ""])) + group + draw(st.sampled_from(["$", "b", "", r"\d"]))


# Outputs that have broken things: lone surrogates (a model's JSON may carry "\ud800"), text that
# looks like rich markup, NULs, and long runs of one letter for the patterns above.
_FRAGMENTS = ["\ud800", "\udfff", "\ud83d", "[bold red]", "[/]", "[/bold]", "[link=file:///etc/passwd]x[/link]", "\\[", "]",
              "\0", "42", "{", '{"score": 1}', "```json\n", "\n```", "é", "😀", " ", "a" * 40, "!"]
outputs = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=5)), max_size=6).map("".join)


def _verdict(checker: Any, output: str, ctx: Any) -> Any:
    """run_checker's verdict, or its CheckerError: both are outcomes; any other exception is a crash."""
    import asyncio

    from loopkit.checkers import CheckerError, CheckResult, run_checker

    try:
        result = asyncio.run(run_checker(checker, output, ctx))
    except CheckerError as exc:
        assert exc.checker == checker.name and exc.reason
        return exc
    assert isinstance(result, CheckResult) and 0.0 <= result.score <= 1.0
    return result


def _context(folder: Path) -> Any:
    from loopkit.checkers import CheckContext

    async def judge(checker: Any, messages: list[dict[str, str]]) -> str:
        json.dumps(messages, ensure_ascii=False).encode()  # what a request body needs: valid UTF-8
        return '{"score": 0.5, "reason": "[bold]half[/]"}'

    return CheckContext(case={"a": "[/]", "n": 1}, base_dir=folder, pass_threshold=1.0, prompt="Echo [b]x[/b]", judge=judge)


@settings(max_examples=40, deadline=None, database=None)
@given(pattern=backtracking_pattern(), letters=st.integers(10, 60), tail=st.sampled_from(["", "b", "!", "\ud800"]))
def test_a_backtracking_regex_ends_in_a_verdict_or_a_checker_error(pattern: str, letters: int, tail: str) -> None:
    from loopkit.spec import RegexChecker

    with mock.patch("loopkit.checkers.text.REGEX_TIMEOUT", 0.05), tempfile.TemporaryDirectory() as tmp:
        outcome = _verdict(RegexChecker(name="re", type="regex", pattern=pattern), "a" * letters + tail, _context(Path(tmp)))
    event(type(outcome).__name__)


_EVERY_CHECKER = [
    {"name": "eq", "type": "equals", "expected": "{{ case.a }}"},
    {"name": "has", "type": "contains", "expected": "[bold red]"},
    {"name": "re", "type": "regex", "pattern": r"^\[?\w+"},
    {"name": "num", "type": "number", "expected": "{{ case.n }}", "tolerance": 1},
    {"name": "js", "type": "json", "schema": {"type": "object", "required": ["score"]}},
    {"name": "py", "type": "python", "function": "checks.py:check", "timeout": 10},
    {"name": "cmd", "type": "command", "run": 'test "$(cat)" = "$LOOPKIT_OUTPUT" || true', "timeout": 10},
    {"name": "judge", "type": "judge", "rubric": "[red]strict[/red]"},
]
_CHECKS_PY = "def check(output, case):\n    return output.encode('utf-8', 'surrogatepass').count(b'a') / 10\n"


@settings(max_examples=25, deadline=None, database=None)
@given(output=outputs)
def test_surrogates_and_markup_in_an_output_reach_every_checker_type_without_a_crash(output: str) -> None:
    from pydantic import TypeAdapter

    from loopkit.spec import Checker

    adapter = TypeAdapter(Checker)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "checks.py").write_text(_CHECKS_PY)
        ctx = _context(folder)
        for raw in _EVERY_CHECKER:
            outcome = _verdict(adapter.validate_python(raw), output, ctx)
            event(f"{raw['type']}: {type(outcome).__name__}")


def test_a_scripted_run_with_markup_and_escapes_in_its_answers_is_recorded_and_shown(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(BASE))
    doc["model"]["replies"] = ["[bold red]{{ case.a }}[/] \\ud800", "[/]{{ case.a }}"]
    doc["checkers"][0]["expected"] = "[link=x]{{ case.a }}[/link]"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES))
    ledger = tmp_path / "l.db"
    code, out, err = run_main(["run", "spec.yaml", "--json"], cwd=tmp_path, ledger=ledger)
    assert_clean(code, out, err, {0, 1, 4})
    for run in json.loads(out)["runs"]:
        assert_clean(*run_main(["show", run["id"]], cwd=tmp_path, ledger=ledger), {0})
        assert_clean(*run_main(["show", run["id"], "--calls"], cwd=tmp_path, ledger=ledger), {0})
