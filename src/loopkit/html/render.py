"""One page from a template: the Jinja2 environment (autoescaped), the filters, and the inline assets.

The page is self-contained: the stylesheet and the script are inlined from package files, and a
Content-Security-Policy admits only those two (by hash) and `data:` images, so a browser opening
it fetches nothing, and nothing that reached the page as data can run.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from functools import lru_cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ..formatting import usd
from ..timewindow import from_iso
from .charts import pattern_defs

EXIT_WORDS = {0: "ok", 1: "quality gate failed", 2: "bad usage or spec", 3: "the batch budget kept cases from running",
              4: "runs ended in errors", 130: "interrupted"}
STATUS_MARK = {"passed": "✓", "failed": "✗", "needs_review": "⚑", "error": "!", "interrupted": "■", "running": "…"}


def pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def minutes(value: float | None) -> str:
    """A person's minutes: 7 min, 2.5 min, - when none."""
    return "-" if value is None else f"{value:,.1f}".removesuffix(".0") + " min"


def duration(seconds: float | None) -> str:
    """340 ms, 1.25 s, 12.5 s, 3 min 5 s."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def local_time(iso: str | None) -> str:
    """A ledger timestamp (UTC) in the local time of the machine writing the page, to the second."""
    moment = from_iso(iso)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("loopkit.html", "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=usd, pct=pct, num=num, minutes=minutes, duration=duration, local_time=local_time, pretty=pretty,
                       mark=lambda s: STATUS_MARK.get(str(s), "·"),
                       exit_words=lambda code: EXIT_WORDS.get(code, "") if code is not None else "still running")
    return env


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    folder = files("loopkit.html") / "templates"
    return (folder / "report.css").read_text(encoding="utf-8"), (folder / "report.js").read_text(encoding="utf-8")


def render_page(template: str, *, title: str, kind: str, source: str, **context: Any) -> str:
    """The whole HTML document of one page."""
    from .. import __version__

    css, js = _assets()
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    return _environment().get_template(template).render(
        title=title, kind=kind, source=source, version=__version__, csp=csp, css=Markup(css), js=Markup(js),
        defs=pattern_defs(), generated=datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M %Z").strip(),
        **context)
