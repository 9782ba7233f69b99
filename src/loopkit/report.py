"""CI outputs of a batch: JUnit XML and the GitHub step summary (markdown)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .redact import scrub


def _last_feedback(ledger: Any, run_id: str) -> str:
    row = ledger.one("SELECT feedback FROM iterations WHERE run_id=? ORDER BY n DESC LIMIT 1", (run_id,))
    return (row or {}).get("feedback") or ""


def _seconds(run: dict[str, Any]) -> float:
    from datetime import datetime

    if not run.get("started_at") or not run.get("ended_at"):
        return 0.0
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return max(0.0, (datetime.strptime(run["ended_at"], fmt) - datetime.strptime(run["started_at"], fmt)).total_seconds())


def write_junit(ledger: Any, batch_id: str, path: Path, *, spec_name: str) -> None:
    """One testcase per case × repeat: failed → <failure>, error → <error>, parked → <failure> awaiting review."""
    runs = ledger.query("SELECT * FROM runs WHERE batch_id=? ORDER BY case_id, repeat", (batch_id,))
    suite = ET.Element("testsuite", name=spec_name, tests=str(len(runs)),
                       failures=str(sum(r["status"] in ("failed", "needs_review", "interrupted") for r in runs)),
                       errors=str(sum(r["status"] == "error" for r in runs)),
                       time=f"{sum(_seconds(r) for r in runs):.3f}")
    for r in runs:
        name = str(r["case_id"]) + (f" #{r['repeat'] + 1}" if r["repeat"] else "")
        case = ET.SubElement(suite, "testcase", classname=spec_name, name=name, time=f"{_seconds(r):.3f}")
        props = ET.SubElement(case, "properties")
        for key in ("cost_usd", "reward", "iterations", "stop_reason", "id"):
            ET.SubElement(props, "property", name=key, value=str(r.get(key)))
        feedback = scrub(_last_feedback(ledger, r["id"]) or r.get("message") or "") or ""
        if r["status"] == "error":
            ET.SubElement(case, "error", message=scrub(r.get("message") or "model error") or "").text = feedback
        elif r["status"] == "needs_review":
            ET.SubElement(case, "failure", message=f"waits for review: {r.get('message') or ''}").text = feedback
        elif r["status"] in ("failed", "interrupted"):
            ET.SubElement(case, "failure", message=f"{r['status']} ({r.get('stop_reason')})").text = feedback
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def step_summary_markdown(ledger: Any, batch_id: str, *, spec_name: str, regressions: list[str] | None = None) -> str:
    runs = ledger.query("SELECT case_id, status, stop_reason, reward, cost_usd FROM runs WHERE batch_id=? ORDER BY case_id", (batch_id,))
    passed = sum(r["status"] == "passed" for r in runs)
    cost = sum(r["cost_usd"] or 0 for r in runs)
    rate = f" ({passed / len(runs):.0%})" if runs else ""
    lines = [f"### loopkit · {spec_name}", "", f"**{passed}/{len(runs)} passed**{rate} · cost ${cost:.4f} · batch `{batch_id[:10]}`", ""]
    failing = [r for r in runs if r["status"] != "passed"]
    if failing:
        lines += ["| case | status | stop | reward |", "|---|---|---|---|"]
        lines += [f"| {r['case_id']} | {r['status']} | {r['stop_reason'] or ''} | {r['reward'] or 0:.2f} |" for r in failing[:50]]
    if regressions:
        lines += ["", f"**Regressions:** {', '.join(regressions)}"]
    return scrub("\n".join(lines) + "\n") or ""


def append_step_summary(ledger: Any, batch_id: str, *, spec_name: str) -> None:
    """Append the batch's markdown summary to $GITHUB_STEP_SUMMARY when it is set."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(step_summary_markdown(ledger, batch_id, spec_name=spec_name))
