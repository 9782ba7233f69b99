"""Test a candidate `median` function: the `run:` of fix-code.yaml's command checker.

The candidate code arrives in $LOOPKIT_OUTPUT (else on stdin). It is written to a temporary
file, imported, and checked; every failure is printed (the loop feeds the output back to the
model). Exit 0 when every test passes, 1 otherwise. Standard library only.

Try it by hand:  python3 fix-code/test_median.py < some_candidate.py
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
import traceback


def candidate_source() -> str:
    text = os.environ.get("LOOPKIT_OUTPUT")
    if text is None:
        text = sys.stdin.read()
    fenced = re.search(r"```(?:python|py)?\s*\n(.*?)```", text, re.S)  # tolerate a markdown fence
    return fenced.group(1) if fenced else text


def load(source: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "candidate.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(source)
        spec = importlib.util.spec_from_file_location("candidate", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def run_tests(median) -> list[str]:
    failures = []

    def expect(args: list, want: float) -> None:
        shown = f"median({args!r})"
        try:
            got = median(list(args))
        except Exception as exc:  # noqa: BLE001 - report whatever the candidate raised
            failures.append(f"{shown} raised {type(exc).__name__}: {exc}; expected {want!r}")
            return
        if not isinstance(got, (int, float)) or abs(got - want) > 1e-9:
            failures.append(f"{shown} returned {got!r}; expected {want!r}")

    expect([3, 1, 2], 2)
    expect([5], 5)
    expect([4, 1, 3, 2], 2.5)
    expect([1, 2], 1.5)
    expect([-1, -4], -2.5)
    expect([1.5, 2.5, 10.0], 2.5)
    expect([7, 7, 7, 7], 7)

    xs = [3, 1, 2]
    try:
        median(xs)
        if xs != [3, 1, 2]:
            failures.append(f"median(xs) changed the caller's list: xs = [3, 1, 2] became {xs!r}")
    except Exception as exc:  # noqa: BLE001
        failures.append(f"median([3, 1, 2]) raised {type(exc).__name__}: {exc}")

    try:
        median((3, 1, 2))
    except Exception as exc:  # noqa: BLE001
        failures.append(f"median((3, 1, 2)) raised {type(exc).__name__}: {exc}; a tuple is a sequence too")

    try:
        got = median([])
        failures.append(f"median([]) returned {got!r}; expected ValueError")
    except ValueError:
        pass
    except Exception as exc:  # noqa: BLE001
        failures.append(f"median([]) raised {type(exc).__name__}: {exc}; expected ValueError")
    return failures


def main() -> int:
    try:
        module = load(candidate_source())
    except SyntaxError as exc:
        print(f"the code does not compile: {exc.msg} (line {exc.lineno})")
        return 1
    except Exception:  # noqa: BLE001
        print("importing the code failed:\n" + traceback.format_exc(limit=1))
        return 1
    median = getattr(module, "median", None)
    if not callable(median):
        print("the code does not define a function `median`")
        return 1
    failures = run_tests(median)
    for line in failures:
        print(f"FAIL {line}")
    if failures:
        print(f"{len(failures)} of 10 tests failed")
        return 1
    print("all 10 tests passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
