"""`loopkit report` pages in a real browser: headless Chromium opens each one from a file with the
network off (a dead proxy, and its net log checked for any request the page made), with nothing on
the console (a script error or a Content-Security-Policy violation would show there), its script
run, and a screenshot that is not blank. Skipped where no Chromium is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

import loopkit
from loopkit.ab import ABOptions
from loopkit.html import write_report
from report_data import ab_specs, rows, run_loop

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium here (Debian: `apt-get install chromium`; "
                                                         ".ci/run installs it where apt-get can)")


@dataclass
class Visit:
    dom: str  # the document after its script ran (--dump-dom), or "" for a screenshot or PDF
    console: list[str]  # every console message: the page itself logs nothing
    requests: list[str]  # every URL the page asked the network for
    file: bytes  # the screenshot or PDF


def visit(page: Path, work: Path, *, fragment: str = "", mode: str = "dump", size: tuple[int, int] = (1000, 1400)) -> Visit:
    """Open `page` in headless Chromium: dump its DOM, or take a screenshot (`shot`) or print it (`pdf`)."""
    work.mkdir(parents=True, exist_ok=True)
    net, out = work / "net.json", work / ("shot.png" if mode == "shot" else "page.pdf")
    action = {"dump": ["--dump-dom"], "shot": [f"--screenshot={out}"], "pdf": [f"--print-to-pdf={out}", "--no-pdf-header-footer"]}[mode]
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", f"--user-data-dir={work / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--log-net-log={net}", f"--window-size={size[0]},{size[1]}", *action, page.resolve().as_uri() + fragment],
        capture_output=True, text=True, timeout=120)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return Visit(proc.stdout if mode == "dump" else "", console, page_requests(net), out.read_bytes() if mode != "dump" else b"")


def page_requests(net: Path) -> list[str]:
    """URLs the page (not the browser's own housekeeping) requested: their isolation key is the file:// page."""
    text = net.read_text()
    try:
        events = json.loads(text)["events"]
    except json.JSONDecodeError:  # a log cut short at exit: close it
        events = json.loads(text.rstrip().rstrip(",") + "]}")["events"]
    return sorted({e["params"]["url"] for e in events if "url" in e.get("params", {})
                   and "file://" in str(e["params"].get("network_isolation_key", "")) and not e["params"]["url"].startswith(("file:", "data:"))})


def pixels(png: bytes) -> list[bytes]:
    """Every row of an 8-bit RGB(A) PNG, unfiltered (zlib and the five PNG filters; no dependency)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, width, height, bpp = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            data += body
    raw, stride, out, prev, i = zlib.decompress(data), width * bpp, [], bytearray(width * bpp), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return [bytes(r[k:k + 3]) for r in out for k in range(0, len(r), bpp)]


def tbodies(dom: str) -> list[dict[str, str]]:
    """The case table's tbodies in document order: id, status, hidden or not."""
    return [{"id": m.group(1), "attrs": m.group(0)} for m in re.finditer(r'<tbody id="run-([0-9a-f]{32})"[^>]*>', dom)]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, object]:
    """A batch, one of its runs, an A/B test and the spend, each written as a page."""
    root = tmp_path_factory.mktemp("site")
    db = root / "ledger.db"
    batch_id = run_loop(root / "loop", 40, db)
    a, b = ab_specs(root / "ab")
    with loopkit.Ledger(db) as store:
        ab_id = loopkit.run_ab(loopkit.load_spec(a), loopkit.load_spec(b), ledger=store, options=ABOptions(seed=3))["batch_id"]
        run_id = rows(db, "SELECT id FROM runs WHERE batch_id=? AND case_json LIKE '%script%' AND iterations > 1 LIMIT 1",
                      (batch_id,))[0]["id"]
        for name, target, since in (("batch", batch_id, None), ("run", run_id, None), ("ab", ab_id, None),
                                    ("cost", None, "2000-01-01T00:00:00.000000Z")):
            write_report(store, root / f"{name}.html", target=target, since=since)
    return {"root": root, "db": db, "batch_id": batch_id, "run_id": run_id}


@pytest.mark.parametrize("name", ["batch", "run", "ab", "cost"])
def test_each_page_opens_offline_with_a_quiet_console_and_its_script_run(site, name):
    root = site["root"]
    seen = visit(root / f"{name}.html", root / f"visit-{name}")
    assert seen.console == [] and seen.requests == []
    assert re.search(r'<html lang="en" class="" data-ready="1">|<html lang="en" data-ready="1" class="">', seen.dom), seen.dom[:300]
    # The case data and outputs carry a script that would retitle the page: it stayed text.
    assert re.search(r"<title>[^<]*· loopkit</title>", seen.dom) and "pwned" not in seen.dom.split("</title>")[0]


def test_the_screenshot_shows_a_page_not_a_blank_and_a_narrow_window_cuts_nothing_off(site):
    root = site["root"]
    width = 400  # a phone, or a window beside an editor
    seen = visit(root / "batch.html", root / "shot", mode="shot", size=(width, 1400))
    assert seen.console == [] and seen.requests == []
    colours = pixels(seen.file)
    white = colours.count(b"\xff\xff\xff")
    assert len(set(colours)) > 50  # text, charts, pattern fills: a rendered page
    assert 0.02 < 1 - white / len(colours) < 0.9
    # Nothing runs past the right edge (wide tables scroll inside the page's margin): the last pixels of
    # every line are background, but for the header's rule that spans the window.
    lines = [colours[y * width:(y + 1) * width] for y in range(len(colours) // width)]
    cut = [y for y, line in enumerate(lines) if any(p != b"\xff\xff\xff" for p in line[-6:])]
    assert len(cut) <= 3, cut


def test_the_page_prints_to_pdf(site):
    root = site["root"]
    seen = visit(root / "batch.html", root / "print", mode="pdf")
    assert seen.console == [] and seen.file.startswith(b"%PDF") and seen.file.count(b"/Type /Page") >= 1


def test_the_case_table_filters_and_sorts_from_the_link_and_opens_a_linked_case(site):
    root, db, batch_id = site["root"], site["db"], site["batch_id"]
    failed = {r["id"]: r["cost"] for r in rows(db, "SELECT r.id, (SELECT TOTAL(cost_usd) FROM calls c WHERE c.run_id = r.id) AS cost "
                                                   "FROM runs r WHERE batch_id=? AND status='failed'", (batch_id,))}
    assert 1 < len(failed) < 40
    seen = visit(root / "batch.html", root / "filter", fragment="#status=failed&sort=cost:desc")
    assert seen.console == []
    shown = [t["id"] for t in tbodies(seen.dom) if " hidden" not in t["attrs"]]
    assert set(shown) == set(failed) and len(tbodies(seen.dom)) == 40
    assert [failed[i] for i in shown] == sorted(failed.values(), reverse=True)
    assert re.search(r'<th [^>]*data-key="cost"[^>]*aria-sort="descending"|<th [^>]*aria-sort="descending"[^>]*data-key="cost"', seen.dom)

    run_id = site["run_id"]
    seen = visit(root / "batch.html", root / "open", fragment=f"#run-{run_id}")
    body = seen.dom[seen.dom.index(f'<tbody id="run-{run_id}"'):]
    assert seen.console == [] and 'aria-expanded="true"' in body.split("</tr>")[0]
    assert re.match(r'\s*<tr class="detail" id="d\d+">', body.split("</tr>", 1)[1])  # no `hidden`: open


def test_a_thousand_case_report_opens_whole(tmp_path):
    batch_id = run_loop(tmp_path / "loop", 1000, tmp_path / "ledger.db")
    with loopkit.Ledger(tmp_path / "ledger.db", readonly=True) as store:
        write_report(store, tmp_path / "big.html", target=batch_id)
    assert (tmp_path / "big.html").stat().st_size < 5_000_000
    seen = visit(tmp_path / "big.html", tmp_path / "visit")
    assert seen.console == [] and seen.requests == [] and 'data-ready="1"' in seen.dom[:300]
    assert len(tbodies(seen.dom)) == 1000
