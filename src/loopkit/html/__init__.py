"""`loopkit report`: one self-contained HTML page for a batch, an A/B test, a run, or a time window's cost.

    from loopkit.html import write_report
    write_report(ledger, "report.html")                  # the latest batch
    write_report(ledger, "ab.html", target="1bad98ef")   # a batch, A/B test or run, by ID prefix
    write_report(ledger, "cost.html", since="2026-11-01T00:00:00.000000Z")

The page needs no network and no server: CSS, SVG charts and a little script are inline, and every
piece of user text is escaped. Each kind of page has a module that reads the ledger (through
`ledger.report_queries`) and a template under `templates/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..ledger import Ledger
from ..ledger.report_queries import latest_batch_id
from .render import render_page

__all__ = ["Report", "build_report", "write_report"]


@dataclass(frozen=True)
class Report:
    kind: str  # batch | ab | run | cost
    id: str | None  # the batch or run; None for a cost page
    title: str
    html: str


def _target(ledger: Ledger, target: str | None) -> tuple[str, str]:
    """(run | batch, full id): a prefix, or the latest batch; a `resume` row stands for the batch it resumed."""
    if target is None:
        found = latest_batch_id(ledger)
        if found is None:
            raise UsageError("no batch in the ledger yet: run `loopkit run SPEC` first, or pass --ledger PATH")
        kind, full = "batch", found
    else:
        kind, full = ledger.resolve(target)
    if kind == "batch" and (ledger.batch(full) or {}).get("kind") == "resume":
        full = json.loads((ledger.batch(full) or {}).get("tags") or "{}").get("resumes") or full
    return kind, full


def build_report(ledger: Ledger, *, target: str | None = None, since: str | None = None, until: str | None = None) -> Report:
    """The page for a run or batch (`target`, default the latest batch), or for the calls in [since, until)
    (ledger ISO times) when either is given."""
    source = str(ledger.path)
    if since is not None or until is not None:
        if target is not None:
            raise UsageError("give a batch or run ID, or --since/--until for the cost of a time window, not both")
        from .cost_page import cost_page

        page = cost_page(ledger, since=since, until=until)
        return Report("cost", None, "Spend", render_page("cost.html", title="Spend", kind="cost", source=source, page=page))
    kind, full = _target(ledger, target)
    if kind == "run":
        from .run_page import run_page

        page = run_page(ledger, full)
        title = f"Run {full[:10]} · {page['run']['spec_name']} · case {page['run']['case_id']}"
        return Report("run", full, title, render_page("run.html", title=title, kind="run", source=source, page=page))
    if (ledger.batch(full) or {}).get("kind") == "ab":
        from .ab_page import ab_page

        page = ab_page(ledger, full)
        title = f"A/B {full[:10]} · {page['names']['A']} vs {page['names']['B']}"
        return Report("ab", full, title, render_page("ab.html", title=title, kind="A/B test", source=source, page=page))
    from .batch_page import batch_page

    page = batch_page(ledger, full)
    title = f"Batch {full[:10]} · {page['spec_name']}"
    return Report("batch", full, title, render_page("batch.html", title=title, kind="batch", source=source, page=page))


def write_report(ledger: Ledger, path: str | Path, *, target: str | None = None, since: str | None = None,
                 until: str | None = None) -> Report:
    """Build the page and write it to `path` (its folder is created)."""
    report = build_report(ledger, target=target, since=since, until=until)
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.html, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return report
