"""The seed's claim, measured: a loop that reaches the strong model's accuracy at a fraction of its cost.

    .venv/bin/python bench/economics.py [--explore-cases 300] [--cases 1000] [--seed 7] [--modulus 25]

A local OpenAI-compatible server (tests/fake_llm.py, in this process) answers two models, priced as
gpt-4o-mini ($0.15/$0.60 per M tokens) and gpt-4o ($2.50/$10.00). The task: a product of two numbers,
answered with a short working and the number. Per case (seeded):

- gpt-4o-mini is right at once on ~70% of cases; on another ~25% a retry with feedback is right half
  the time; on the last ~5% it never is;
- gpt-4o is right at once on ~95% of cases, and on the rest a retry is right half the time;
- a wrong answer is off by 1–25; the checker knows the answer modulo 25 only, so it catches 96% of wrong
  answers (a wrong answer off by exactly 25 slips through, as real checkers let some through);
  `--modulus M` makes that 1 in M (which cases each model gets right stays the same).

Why the accuracy target is close at 96%: neither plan nor ab can see what the checker lets through. A
loop that starts on the cheap model shows the checker ~6 times as many wrong answers as strong-only does
(30% wrong at once, then its retries, vs 5%), so ~1 in 25 of them passes as right: ~2 points of
accuracy that the checker (and so plan's estimate and ab's verdict) counts as success.

Accuracy is measured against the truth (the run's answer equals the product), not against the checker.
Everything goes through the console script as a user would run it: explore both models on
`--explore-cases` cases, `loopkit plan --write`, then strong-only, cheap-with-retries and the planned loop
on `--cases` other cases (no cache), then `loopkit ab strong.yaml planned.yaml --margin 0.02`. Prints
accuracy, cost per case and cost per success of each, as ratios to strong-only, and ab's verdict.
Target: the planned loop within 2 points of strong-only's accuracy at <= 30% of its cost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm import FakeLLM, Reply  # noqa: E402

CHEAP, STRONG = "gpt-4o-mini", "gpt-4o"
MODELS = {  # prices as litellm's table has them for these models (USD per M tokens)
    CHEAP: {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    STRONG: {"input_per_mtok": 2.50, "output_per_mtok": 10.00},
}
MODULUS = 25  # the checker knows the answer modulo this: it lets 1 in MODULUS wrong answers through (--modulus)
TARGET_POINTS, TARGET_COST = 0.02, 0.30

CONTEXT = ("You are checking an invoice line for a wholesale order. The quantity and the unit price in cents are "
           "given; the buyer's accounting system needs the line total in cents, computed exactly, because a rounding "
           "difference of a single cent fails the reconciliation against the supplier's statement. ")


def _draw(*key: Any) -> float:
    """A uniform number in [0, 1) fixed by the key (the server's only randomness)."""
    digest = hashlib.sha256(json.dumps(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Server:
    """Answers as the module docstring says; the case and attempt are read from the request."""

    def __init__(self, seed: int, modulus: int = MODULUS) -> None:
        self.seed = seed
        self.modulus = modulus

    def right(self, model: str, case: str, attempt: int) -> bool:
        u = _draw(self.seed, "case", model, case)
        if model == CHEAP:
            if u < 0.70:
                return True
            return u < 0.95 and attempt >= 2 and _draw(self.seed, "retry", model, case, attempt) < 0.5
        return u < 0.95 or (attempt >= 2 and _draw(self.seed, "retry", model, case, attempt) < 0.5)

    def __call__(self, body: dict) -> Reply:
        messages = body["messages"]
        opening = next(m["content"] for m in messages if m["role"] == "user")
        case, a, b = re.search(r"Line (\S+): quantity (\d+) at (\d+) cents", opening).groups()
        attempt = 1 + sum(m["role"] == "assistant" for m in messages)
        model = body["model"].split("/")[-1]
        truth = int(a) * int(b)
        answer = truth if self.right(model, case, attempt) else truth + 1 + int(_draw(self.seed, "off", model, case, attempt) * self.modulus)
        return Reply(f"{a} × {b}: {a} × {int(b) // 10 * 10} plus {a} × {int(b) % 10}, checked twice. Line total: {answer}")


def checks_text(modulus: int) -> str:
    return f'''\
import re

from loopkit import CheckResult


def verify(output, case):
    """Knows the line total modulo {modulus} only: most wrong totals fail, one in {modulus} slips through."""
    found = re.findall(r"-?\\d+", output)
    if not found:
        return CheckResult(0.0, False, "give the line total as a number")
    if int(found[-1]) % {modulus} == (case["a"] * case["b"]) % {modulus}:
        return True
    return CheckResult(0.0, False, "the line total does not reconcile")
'''


def spec_text(base_url: str, model: str, *, escalate_to: str | None = None, iterations: int = 3) -> str:
    def ref(name: str) -> str:
        price = MODELS[name]
        return (f'{{id: "openai/{name}", name: "{name}", api_base: "{base_url}", api_key_env: FAKE_KEY, '
                f'price: {{input_per_mtok: {price["input_per_mtok"]}, output_per_mtok: {price["output_per_mtok"]}}}}}')

    text = f"""\
name: invoice
model: {ref(model)}
params: {{max_tokens: 120, temperature: 0}}
task:
  system: {json.dumps(CONTEXT)}
  prompt: "Line {{{{ case.id }}}}: quantity {{{{ case.a }}}} at {{{{ case.b }}}} cents each. Show your working, then the line total in cents."
  feedback: "The reconciliation failed: {{{{ feedback }}}}. Recompute the line total."
inputs: cases.jsonl
checkers:
  - {{name: total, type: python, function: "checks.py:verify"}}
stop: {{max_iterations: {iterations}}}
"""
    if escalate_to:  # names the other model, so `--explore` finds its mapping
        text += f"escalate:\n  - when: {{iterations: {iterations}}}\n    model: {ref(escalate_to)}\n"
    return text


def write_cases(path: Path, count: int, seed: int, prefix: str) -> None:
    with open(path, "w") as fh:
        for i in range(count):
            a = 20 + int(_draw(seed, "a", prefix, i) * 980)
            b = 100 + int(_draw(seed, "b", prefix, i) * 9900)
            fh.write(json.dumps({"id": f"{prefix}{i}", "a": a, "b": b}) + "\n")


def loopkit(folder: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("loopkit")
    env = {**os.environ, "LOOPKIT_LEDGER": str(folder / "ledger.db"), "FAKE_KEY": "sk-fake", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([str(exe), *args], cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"loopkit {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def measure(folder: Path, batch_id: str, variant: str | None = None) -> dict[str, Any]:
    """Accuracy against the truth, pass rate by the checker, and money, from the ledger (one variant of an A/B batch)."""
    scope, args = ("batch_id=?", (batch_id,)) if variant is None else ("batch_id=? AND variant=?", (batch_id, variant))
    with sqlite3.connect(folder / "ledger.db") as conn:
        runs = conn.execute(f"SELECT case_json, output, success FROM runs WHERE {scope}", args).fetchall()
        (cost,) = conn.execute(f"SELECT TOTAL(cost_usd) FROM calls WHERE run_id IN (SELECT id FROM runs WHERE {scope})", args).fetchone()
        (calls,) = conn.execute(f"SELECT COUNT(*) FROM calls WHERE run_id IN (SELECT id FROM runs WHERE {scope})", args).fetchone()
    right = 0
    for case_json, output, _ in runs:
        case = json.loads(case_json)
        found = re.findall(r"-?\d+", output or "")
        right += bool(found) and int(found[-1]) == case["a"] * case["b"]
    n = len(runs)
    return {"runs": n, "accuracy": right / n, "pass_rate": sum(s for *_, s in runs) / n, "cost_usd": cost,
            "usd_per_case": cost / n, "usd_per_success": cost / right if right else float("inf"), "calls": calls}


def run_arm(folder: Path, name: str, text: str) -> dict[str, Any]:
    path = folder / f"{name}.yaml"
    if text:
        path.write_text(text)
    done = json.loads(loopkit(folder, "run", path.name, "--no-cache", "--concurrency", "32", "--json").stdout)
    return measure(folder, done["batch_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--explore-cases", type=int, default=300)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--modulus", type=int, default=MODULUS,
                        help="the checker knows the answer modulo this, so it misses 1 in MODULUS wrong answers (default 25: 4%%)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (its ledger, specs and cases)")
    args = parser.parse_args()
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="loopkit-economics-"))
    with FakeLLM() as fake:
        fake.responder = Server(args.seed, args.modulus)
        (folder / "checks.py").write_text(checks_text(args.modulus))
        # 1. explore: each model alone on the exploration cases, then plan from what the ledger recorded
        write_cases(folder / "cases.jsonl", args.explore_cases, args.seed, "x")
        (folder / "strong.yaml").write_text(spec_text(fake.base_url, STRONG, escalate_to=CHEAP))
        loopkit(folder, "run", "strong.yaml", "--explore", f"{CHEAP},{STRONG}", "--concurrency", "32", "--json")
        plan = json.loads(loopkit(folder, "plan", "strong.yaml", "--write", "planned.yaml", "--json").stdout)
        # 2. the three loops on fresh cases; the current spec (strong.yaml) is strong-only: its escalation
        #    fires only after its last iteration, i.e. never
        write_cases(folder / "cases.jsonl", args.cases, args.seed, "t")
        arms = {"strong-only": run_arm(folder, "strong", ""),
                "cheap-with-retries": run_arm(folder, "cheap", spec_text(fake.base_url, CHEAP, iterations=3)),
                "planned": run_arm(folder, "planned", "")}
        ab = loopkit(folder, "ab", "strong.yaml", "planned.yaml", "--margin", "0.02", "--no-cache", "--concurrency", "32",
                     "--seed", str(args.seed), "--json")
        if ab.stdout.strip().startswith("{"):
            tested = json.loads(ab.stdout)
            verdict = {**tested["verdict"], "pairs": tested["pairs_run"],
                       "truth": {v: measure(folder, tested["batch_id"], v) for v in ("A", "B")}}
        else:
            verdict = {"text": ab.stderr.strip()}
        requests = fake.count
    report(args, plan, arms, verdict, requests, time.perf_counter() - started)
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"kept {folder}")


def report(args: argparse.Namespace, plan: dict[str, Any], arms: dict[str, dict[str, Any]], verdict: dict[str, Any],
           requests: int, seconds: float) -> None:
    base = arms["strong-only"]
    chosen = plan["chosen"]
    print(f"plan from {plan['runs']} explore runs ({args.explore_cases} cases × 2 models): {chosen['design']} "
          f"(predicted accuracy {chosen['accuracy']:.1%}, ${chosen['usd_per_case']:.6f} per case)")
    print(f"{args.cases} fresh cases per loop, seed {args.seed}, checker misses 1 in {args.modulus} wrong answers; {requests:,} requests to the local server in {seconds:.0f} s\n")
    print("| loop | accuracy | passed (checker) | $ / case | $ / success | accuracy − strong | cost ÷ strong | $/success ÷ strong |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in arms.items():
        print(f"| {name} | {m['accuracy']:.1%} | {m['pass_rate']:.1%} | ${m['usd_per_case']:.6f} | ${m['usd_per_success']:.6f} | "
              f"{(m['accuracy'] - base['accuracy']) * 100:+.1f} pts | {m['usd_per_case'] / base['usd_per_case']:.2f} | "
              f"{m['usd_per_success'] / base['usd_per_success']:.2f} |")
    planned = arms["planned"]
    ok = planned["accuracy"] >= base["accuracy"] - TARGET_POINTS and planned["usd_per_case"] <= TARGET_COST * base["usd_per_case"]
    print(f"\nab strong.yaml planned.yaml --margin 0.02 --seed {args.seed}: {verdict.get('kind', '-')}: {verdict.get('text')}")
    if "truth" in verdict:  # ab judges by the checker; the truth on the same pairs says whether the checker flattered B
        a, b = verdict["truth"]["A"], verdict["truth"]["B"]
        print(f"ab's {verdict['pairs']} pairs against the truth: strong-only {a['accuracy']:.1%} (checker {a['pass_rate']:.1%}), "
              f"planned {b['accuracy']:.1%} (checker {b['pass_rate']:.1%}); cost ÷ strong {b['usd_per_case'] / a['usd_per_case']:.2f}")
    print(f"target (planned within {TARGET_POINTS * 100:.0f} pts of strong-only at <= {TARGET_COST:.0%} of its cost): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
