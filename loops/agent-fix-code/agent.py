"""A tiny coding agent, standard library only: the reference for `worker: {type: command}`.

    python3 agent.py TASK_FILE

It works in its current directory (loopkit's work directory for the run): it reads the task, sends it
with the source of every Python file here (tests included, so it can read them) to the model behind
$OPENAI_BASE_URL, and writes back each file the reply gives in full, as a file name on its own line
followed by a fenced code block. It prints what it changed: that is the iteration's answer.

It knows nothing of loopkit: any OpenAI-compatible endpoint and key in OPENAI_BASE_URL and
OPENAI_API_KEY will do. Under loopkit those are the run's metering endpoint and token.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

BLOCK = re.compile(r"^([\w./-]+\.py)[ \t]*\n```[a-z]*\n(.*?)^```", re.S | re.M)


def ask(prompt: str) -> str:
    """One chat completion through the OpenAI-compatible endpoint in the environment."""
    body = {"model": os.environ.get("LOOPKIT_MODEL", "gpt-4o-mini"), "messages": [
        {"role": "system", "content": "You fix Python code. Reply with each file you change in full: its name on "
                                      "one line, then its code in a ```python fenced block. Nothing else."},
        {"role": "user", "content": prompt}]}
    request = urllib.request.Request(os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.load(response)["choices"][0]["message"]["content"] or ""
    except urllib.error.HTTPError as exc:  # e.g. 429 once loopkit's budget is spent: say why, and give up
        sys.exit(f"agent: the model endpoint answered {exc.code}: {exc.read().decode(errors='replace')}")


def main() -> None:
    task = Path(sys.argv[1]).read_text(encoding="utf-8")
    here = Path.cwd()
    sources = "\n\n".join(f"{p.name}\n```python\n{p.read_text(encoding='utf-8')}```" for p in sorted(here.glob("*.py")))
    reply = ask(f"{task}\n\nThe files:\n\n{sources}")
    changed = []
    for name, code in BLOCK.findall(reply):
        target = (here / name).resolve()
        if here.resolve() not in target.parents:  # never outside the work directory
            continue
        target.write_text(code, encoding="utf-8")
        changed.append(name)
    if not changed:
        sys.exit(f"agent: the reply named no file to change:\n{reply}")
    print(f"changed {', '.join(changed)}")


if __name__ == "__main__":
    main()
