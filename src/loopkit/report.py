"""CI outputs of a batch: JUnit XML and the GitHub step summary (markdown).

JUnit: one <testcase> per case × repeat. A failed run is a <failure> carrying the last checker
feedback, an error run an <error> with the model/infrastructure message, a parked run a <failure>
saying it waits for review. Time is the testcase's `time`; cost, reward, iterations, stop reason and
the run ID are <properties>. Everything written is passed through `redact.scrub` first.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .errors import UsageError
from .formatting import usd
from .timewindow import seconds_between
from .ledger.queries import batch_cache_hits, batch_runs, last_feedback
from .redact import scrub

SUMMARY_ROWS = 50
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str:
    """Scrubbed text XML 1.0 can carry (control characters dropped)."""
    return _XML_INVALID.sub("", scrub(str(value) if value is not None else "") or "")


def _seconds(run: dict[str, Any]) -> float:
    return seconds_between(run.get("started_at"), run.get("ended_at")) or 0.0


def _case_name(run: dict[str, Any], repeated: bool) -> str:
    return str(run["case_id"]) + (f" #{(run.get('repeat') or 0) + 1}" if repeated else "")


def junit_tree(ledger: Any, batch_id: str, *, spec_name: str) -> ET.ElementTree:
    """The batch as a JUnit <testsuites> document with one <testsuite> (the spec)."""
    runs = batch_runs(ledger, batch_id, order="case")
    repeated = any(r.get("repeat") for r in runs)
    failures = sum(r["status"] in ("failed", "needs_review", "interrupted") for r in runs)
    errors = sum(r["status"] == "error" for r in runs)
    total_time = f"{sum(_seconds(r) for r in runs):.3f}"
    root = ET.Element("testsuites", name="loopkit", tests=str(len(runs)), failures=str(failures), errors=str(errors), time=total_time)
    suite = ET.SubElement(root, "testsuite", name=_text(spec_name), tests=str(len(runs)), failures=str(failures),
                          errors=str(errors), skipped="0", time=total_time)
    suite_props = ET.SubElement(suite, "properties")
    ET.SubElement(suite_props, "property", name="batch_id", value=batch_id)
    ET.SubElement(suite_props, "property", name="cost_usd", value=repr(float(sum(r.get("cost_usd") or 0 for r in runs))))
    for r in runs:
        seconds = _seconds(r)
        case = ET.SubElement(suite, "testcase", classname=_text(spec_name), name=_text(_case_name(r, repeated)), time=f"{seconds:.3f}")
        props = ET.SubElement(case, "properties")
        for key, value in (("cost_usd", repr(float(r.get("cost_usd") or 0.0))), ("seconds", f"{seconds:.3f}"),
                           ("reward", r.get("reward")), ("iterations", r.get("iterations")), ("status", r.get("status")),
                           ("stop_reason", r.get("stop_reason")), ("run_id", r.get("id")),
                           ("tokens", (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0))):
            ET.SubElement(props, "property", name=key, value=_text(value if value is not None else ""))
        feedback = _text(last_feedback(ledger, r["id"]))
        message = _text(r.get("message"))
        status = r["status"]
        if status == "error":
            ET.SubElement(case, "error", message=message or "model error", type="error").text = feedback or message
        elif status == "needs_review":
            text = f"waits for review: {message}" if message else "waits for review"
            ET.SubElement(case, "failure", message=text, type="needs_review").text = feedback or text
        elif status in ("failed", "interrupted"):
            reason = r.get("stop_reason") or status
            ET.SubElement(case, "failure", message=f"{status} ({reason})" + (f": {message}" if message else ""),
                          type=str(reason)).text = feedback or message
        if r.get("suspect"):
            ET.SubElement(case, "system-out").text = _text(r["suspect"])
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(ledger: Any, batch_id: str, path: Path, *, spec_name: str) -> None:
    """Write the batch's JUnit XML to `path` (parent folders created); a path that cannot be written is exit 2."""
    tree = junit_tree(ledger, batch_id, spec_name=spec_name)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write the JUnit report: {exc.strerror or exc}", location=str(path)) from None


def _cell(value: Any, limit: int = 80) -> str:
    """Markdown table cell: one line, pipes escaped, shortened, scrubbed."""
    text = " ".join((scrub(str(value)) or "").split()) if value is not None else ""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def step_summary_markdown(ledger: Any, batch_id: str, *, spec_name: str, regressions: list[str] | None = None) -> str:
    """Pass rate, cost and the cases that did not pass, as GitHub-flavoured markdown."""
    runs = batch_runs(ledger, batch_id, order="case")
    batch = ledger.batch(batch_id) or {}
    passed = sum(r["status"] == "passed" for r in runs)
    cost = float(sum(r.get("cost_usd") or 0 for r in runs))
    calls, hits = batch_cache_hits(ledger, batch_id)
    rate = f" ({passed / len(runs):.0%})" if runs else ""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [
        f"### loopkit · {_cell(spec_name)}",
        "",
        f"**{passed}/{len(runs)} passed**{rate} · cost {usd(cost)} · batch `{batch_id[:10]}`"
        + (f" · {batch.get('status')}" if batch.get("status") not in (None, "done") else ""),
        "",
        " · ".join(f"{n} {s}" for s, n in sorted(counts.items())) + (f" · {hits}/{calls} calls cached"
                                                                     if hits else ""),
        "",
    ]
    repeated = any(r.get("repeat") for r in runs)
    failing = [r for r in runs if r["status"] != "passed"]
    if failing:
        lines += ["| case | status | stop | reward | cost | why |", "|---|---|---|---|---|---|"]
        for r in failing[:SUMMARY_ROWS]:
            why = r.get("message") or last_feedback(ledger, r["id"])
            lines.append(f"| {_cell(_case_name(r, repeated), 40)} | {r['status']} | {r.get('stop_reason') or ''} | "
                         f"{r.get('reward') or 0:.2f} | {usd(r.get('cost_usd') or 0)} | {_cell(why)} |")
        if len(failing) > SUMMARY_ROWS:
            lines.append(f"\n… and {len(failing) - SUMMARY_ROWS} more: `loopkit show {batch_id[:10]}`")
    if regressions:
        lines += ["", f"**Regressions:** {', '.join(_cell(r, 40) for r in regressions)}"]
    return (scrub("\n".join(lines) + "\n") or "")


def append_step_summary(ledger: Any, batch_id: str, *, spec_name: str) -> bool:
    """Append the batch's markdown summary to $GITHUB_STEP_SUMMARY when it is set; False when it cannot be written."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    text = step_summary_markdown(ledger, batch_id, spec_name=spec_name)
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text if not _ends_without_newline(target) else "\n" + text)
    except OSError:
        return False  # a summary that cannot be written must not fail the job
    return True


def _ends_without_newline(target: str) -> bool:
    try:
        with open(target, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False
