"""`loopkit report` (src/loopkit/html/): what the page says, checked against the ledger (SQL over
`calls` and `runs` is the source of truth), that every case is on it, and that user text stays text.

The browser's view of the same pages is tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

import loopkit
from loopkit.ab import ABOptions
from loopkit.ab_report import ab_report
from loopkit.formatting import usd
from loopkit.html import build_report, charts
from report_data import HOSTILE, ab_specs, rows, run_loop, write_loop


class CaseTable(HTMLParser):
    """The case table of a batch page: per run (its tbody id) the summary row's cells (text, data-v) and its class."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, dict] = {}
        self._run: str | None = None
        self._cell: list | None = None
        self._in_summary = False

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if tag == "tbody" and (a.get("id") or "").startswith("run-"):
            self._run = a["id"][4:]
            self.runs[self._run] = {"cells": [], "class": a.get("class") or "", "status": a.get("data-status")}
        elif tag == "tr" and self._run:
            self._in_summary = a.get("class") == "summary"
        elif tag == "td" and self._run and self._in_summary:
            self._cell = [a.get("data-v"), ""]
            self.runs[self._run]["cells"].append(self._cell)

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._in_summary = False

    def handle_data(self, data):  # noqa: ANN001
        if self._cell is not None:
            self._cell[1] += data


def cases_on(html: str) -> dict[str, dict]:
    parser = CaseTable()
    parser.feed(html)
    return parser.runs


def card(html: str, label: str) -> tuple[str, str]:
    """(value, sub-line) of a headline card."""
    m = re.search(rf'<span class="k">{re.escape(label)}</span><span class="v">(.*?)</span>(?:<span class="s">(.*?)</span>)?', html)
    assert m, f"no card {label!r}"
    return unescape(m.group(1)), unescape(m.group(2) or "")


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[Path, str, str]:
    """(ledger, batch id, the page's HTML) of a 40-case batch of the report loop."""
    folder = tmp_path_factory.mktemp("batch")
    db = folder / "ledger.db"
    batch_id = run_loop(folder, 40, db)
    with loopkit.Ledger(db, readonly=True) as store:
        return db, batch_id, build_report(store, target=batch_id).html


# --- the batch page against the ledger -------------------------------------------------------------


def test_every_run_of_the_batch_is_a_row_with_its_status_and_cost_from_its_calls(batch):
    db, batch_id, html = batch
    truth = {r["id"]: r for r in rows(db, "SELECT r.id, r.status, r.reward, (SELECT TOTAL(cost_usd) FROM calls c WHERE c.run_id = r.id) "
                                        "AS cost FROM runs r WHERE batch_id=?", (batch_id,))}
    shown = cases_on(html)
    assert set(shown) == set(truth) and len(truth) == 40
    for run_id, row in shown.items():
        case, status, _stop, reward, _its, cost = row["cells"][:6]
        assert row["status"] == truth[run_id]["status"] and truth[run_id]["status"] in status[1]
        assert math.isclose(float(cost[0]), truth[run_id]["cost"], rel_tol=1e-6, abs_tol=1e-12)
        assert cost[1].strip() == usd(truth[run_id]["cost"])
        assert float(reward[0]) == pytest.approx(truth[run_id]["reward"])


def test_the_headline_is_the_sum_of_the_calls_and_the_count_of_passed_runs(batch):
    db, batch_id, html = batch
    spent = rows(db, "SELECT TOTAL(cost_usd) AS c, COUNT(*) AS n FROM calls WHERE batch_id=?", (batch_id,))[0]
    runs = rows(db, "SELECT COUNT(*) AS n, SUM(success) AS passed, SUM(status='error') AS errors, "
                    "SUM(suspect IS NOT NULL) AS suspect FROM runs WHERE batch_id=?", (batch_id,))[0]
    assert spent["c"] > 0 and 0 < runs["passed"] < runs["n"] and runs["suspect"] > 0
    cost, calls = card(html, "cost")
    assert cost == usd(spent["c"]) and calls.startswith(f"{spent['n']:,} calls")
    rate, sub = card(html, "pass rate")
    assert rate == f"{runs['passed'] / runs['n'] * 100:.0f}%" and sub == f"{runs['passed']} of {runs['n']} runs passed"
    assert card(html, "cost per success")[0] == usd(spent["c"] / runs["passed"])
    assert card(html, "errors")[0] == str(runs["errors"]) and card(html, "suspect")[0] == str(runs["suspect"])
    assert card(html, "exit code")[0] == "0"


def test_cost_by_model_is_the_calls_grouped_by_model_and_role(batch):
    db, batch_id, html = batch
    section = html[html.index('id="costs"'):html.index('id="latency"')]
    truth = rows(db, "SELECT model, role, COUNT(*) AS n, TOTAL(cost_usd) AS c FROM calls WHERE batch_id=? GROUP BY 1, 2", (batch_id,))
    assert {r["model"] for r in truth} == {"cheap", "strong", "judge"}
    for r in truth:
        assert f'<tr><td>{r["model"]}</td><td>{r["role"]}</td><td class="n">{r["n"]}</td>' in section
        assert f'data-v="{r["c"]}">{usd(r["c"])}</td>' in section


def test_escalations_count_the_runs_that_went_up_the_ladder_and_to_a_person(batch):
    db, batch_id, html = batch
    section = html[html.index('id="escalations"'):html.index('id="costs"')]
    ladder = rows(db, "SELECT COUNT(DISTINCT e.run_id) AS n FROM events e JOIN runs r ON r.id = e.run_id WHERE r.batch_id=? "
                      "AND e.kind='escalation' AND json_extract(e.detail, '$.to') = 'strong'", (batch_id,))[0]["n"]
    person = rows(db, "SELECT COUNT(DISTINCT e.run_id) AS n FROM events e JOIN runs r ON r.id = e.run_id WHERE r.batch_id=? "
                      "AND e.kind='escalation' AND json_extract(e.detail, '$.human') IS NOT NULL", (batch_id,))[0]["n"]
    waiting = rows(db, "SELECT COUNT(*) AS n FROM runs WHERE batch_id=? AND status='needs_review'", (batch_id,))[0]["n"]
    assert ladder > 0 and person > 0
    assert re.search(rf'<td>model strong</td><td class="n">{ladder}</td>', section)
    assert re.search(rf'<td>a person</td><td class="n">{person}</td><td class="n">0</td><td class="n">{waiting}</td>', section)


def test_convergence_counts_runs_passed_by_each_iteration(batch):
    db, batch_id, html = batch
    section = html[html.index('id="converge"'):html.index('id="escalations"')]
    for k in (1, 2, 3):
        n = rows(db, "SELECT COUNT(DISTINCT i.run_id) AS n FROM iterations i JOIN runs r ON r.id = i.run_id WHERE r.batch_id=? "
                     "AND i.passed=1 AND i.n <= ?", (batch_id, k))[0]["n"]
        assert f'<tr><td class="n">{k}</td>' in section and f"% ({n})</td>" in section.split(f'<tr><td class="n">{k}</td>')[1].split("</tr>")[0]


def test_suspect_runs_are_listed_at_the_top_and_flagged_in_the_table(batch):
    db, batch_id, html = batch
    suspects = {r["id"] for r in rows(db, "SELECT id FROM runs WHERE batch_id=? AND suspect IS NOT NULL", (batch_id,))}
    alarm = html[html.index('class="alarm"'):html.index('id="headline"')]
    assert set(re.findall(r'href="#run-([0-9a-f]{32})"', alarm)) == suspects
    assert html.index('class="alarm"') < html.index('id="headline"')
    flagged = {run_id for run_id, row in cases_on(html).items() if "suspect" in row["class"]}
    assert flagged == suspects


def test_a_case_expands_to_its_iterations_checks_and_calls(batch):
    db, batch_id, html = batch
    run = rows(db, "SELECT id FROM runs WHERE batch_id=? AND iterations >= 3 LIMIT 1", (batch_id,))[0]["id"]
    body = html[html.index(f'<tbody id="run-{run}"'):]
    body = body[:body.index("</tbody>\n<tbody") if "</tbody>\n<tbody" in body else len(body)]
    iterations = rows(db, "SELECT n, model FROM iterations WHERE run_id=? ORDER BY n", (run,))
    for it in iterations:
        assert f"Iteration {it['n']} · {it['model']} · reward" in body
    calls = rows(db, "SELECT role, model, prompt_tokens, completion_tokens, cost_usd FROM calls WHERE run_id=?", (run,))
    for c in calls:
        assert f"<summary>{c['role']} · {c['model']} · {c['prompt_tokens']}+{c['completion_tokens']} tokens · {usd(c['cost_usd'])}" in body
    checks = rows(db, "SELECT checker FROM checks WHERE run_id=?", (run,))
    assert body.count('<tr><td>honest <em>(audit)</em></td>') == sum(c["checker"] == "honest" for c in checks)
    assert "escalation</strong>: from cheap to strong after iteration 2" in body


# --- escaping and self-containment ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ab_batch(tmp_path_factory) -> tuple[Path, str, str]:
    """(ledger, batch id, the page's HTML) of an A/B test the anytime-valid tests stop early."""
    folder = tmp_path_factory.mktemp("ab")
    a, b = ab_specs(folder)
    db = folder / "ledger.db"
    with loopkit.Ledger(db) as store:
        ab_id = loopkit.run_ab(loopkit.load_spec(a), loopkit.load_spec(b), ledger=store, options=ABOptions(seed=3))["batch_id"]
        return db, ab_id, build_report(store, target=ab_id).html


@pytest.fixture(scope="module")
def pages(batch, ab_batch) -> dict[str, str]:
    """The HTML of each kind of page, each showing the hostile text somewhere."""
    db, batch_id, html = batch
    run = rows(db, "SELECT id FROM runs WHERE batch_id=? AND case_json LIKE '%script%' LIMIT 1", (batch_id,))[0]["id"]
    with loopkit.Ledger(db, readonly=True) as store:
        run_html = build_report(store, target=run[:12]).html
        cost_html = build_report(store, since="2000-01-01T00:00:00.000000Z").html
    return {"batch": html, "run": run_html, "ab": ab_batch[2], "cost": cost_html}


class Elements(HTMLParser):
    """Every element the browser would build, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("kind", ["batch", "run", "ab"])
def test_user_text_with_markup_shows_as_text(pages, kind):
    html = pages[kind]
    parser = Elements()
    parser.feed(html)
    assert [tag for tag, _ in parser.found if tag in ("script", "img", "iframe", "object")] == ["script"]  # ours alone
    assert not [(tag, name) for tag, attrs in parser.found for name in attrs if name.startswith("on")]
    assert HOSTILE not in html
    assert str(escape(HOSTILE)) in html or str(escape(json.dumps(HOSTILE)[1:-1])) in html


@pytest.mark.parametrize("kind", ["batch", "run", "ab", "cost"])
def test_the_page_needs_no_network_and_admits_only_its_own_script_and_style(pages, kind):
    html = pages[kind]
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:|//|ftp:)""", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?\s*(?:https?:|//)", html, re.I)
    csp = unescape(re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1))
    assert "default-src 'none'" in csp

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert f"script-src {digest(script)};" in csp and f"style-src {digest(style)};" in csp


# --- the other pages -------------------------------------------------------------------------------


def test_the_ab_page_has_the_verdict_each_variant_and_every_discordant_case(ab_batch):
    db, batch_id, html = ab_batch
    with loopkit.Ledger(db, readonly=True) as store:
        report = ab_report(store, batch_id)
    assert str(escape(report["verdict"]["text"])) in html and report["verdict"]["winner_variant"] == "B"
    tested = rows(db, "SELECT case_id FROM runs WHERE batch_id=? GROUP BY case_id HAVING MIN(success) != MAX(success)", (batch_id,))
    shown = set(re.findall(r"<h3>case (c\d+) · [AB] passed more often", html))
    assert shown == {r["case_id"] for r in tested} and len(shown) > 5
    for variant in ("A", "B"):
        cost = rows(db, "SELECT TOTAL(c.cost_usd) AS c FROM calls c JOIN runs r ON r.id = c.run_id WHERE r.batch_id=? AND r.variant=?",
                    (batch_id, variant))[0]["c"]
        assert usd(cost) in html.split("<td>total cost</td>")[1].split("</tr>")[0]
    e_chart = html[html.index("<title>Success: e-value after each case</title>"):]
    points = e_chart[e_chart.index('<polyline class="line" points="'):].split('"')[3].split()
    assert len(points) == report["cases_run"]
    threshold = next(t for t in report["tests"] if t["name"] == "success_sequential")
    e_chart = e_chart[:e_chart.index("</svg>")]
    assert f"threshold 1/(α/2) = {threshold['threshold']:g}" in e_chart
    assert threshold["decided_after"]  # the test stopped early, and where is marked on its path
    assert f"{threshold['winner']} wins on success after {threshold['decided_after']} cases" in e_chart
    forest = html[html.index("<title>Difference B − A per metric, with its interval</title>"):]
    forest = forest[:forest.index("</svg>")]
    drawn = [d for d in report["deltas"].values() if d and d["estimate"] is not None and d["ci_low"] is not None]
    assert forest.count('<line class="whisker"') == 3 * len(drawn) > 0  # an interval and its two ends per metric


def test_the_run_page_has_every_message_of_every_call(pages, batch):
    db, _, _ = batch
    html = pages["run"]
    run_id = re.search(r'run <span class="mono">([0-9a-f]{32})</span>', html).group(1)
    calls = rows(db, "SELECT messages FROM calls WHERE run_id=?", (run_id,))
    assert html.count("<li><details><summary>") == len(calls) > 2
    for c in calls:
        for m in json.loads(c["messages"]):
            assert str(escape(m["content"])) in html


def test_the_cost_page_sums_the_calls_of_its_window(pages, batch):
    db, batch_id, _ = batch
    html = pages["cost"]
    total = rows(db, "SELECT TOTAL(cost_usd) AS c, COUNT(*) AS n FROM calls WHERE created_at >= '2000-01-01'")[0]
    assert card(html, "spend") == (usd(total["c"]), f"{total['n']:,} calls")
    top = html[html.index('id="top"'):]
    assert f'<td class="mono">{batch_id[:10]}</td><td>report_loop</td><td>run</td>' in top
    assert "<title>Spend per day by model</title>" in html or "<title>Spend per hour by model</title>" in html
    with loopkit.Ledger(db, readonly=True) as store:
        empty = build_report(store, since="2000-01-01T00:00:00.000000Z", until="2000-01-02T00:00:00.000000Z").html
    assert card(empty, "spend")[0] == usd(0.0) and "No calls in this window." in empty


def test_a_thousand_case_batch_is_one_page_of_a_few_megabytes(tmp_path):
    batch_id = run_loop(tmp_path, 1000, tmp_path / "ledger.db")
    with loopkit.Ledger(tmp_path / "ledger.db", readonly=True) as store:
        html = build_report(store, target=batch_id).html
    assert len(cases_on(html)) == 1000
    assert len(html.encode()) < 5_000_000


# --- the command ------------------------------------------------------------------------------------


def test_report_with_no_id_writes_the_latest_batch(cli, tmp_path):
    spec = write_loop(tmp_path / "loop", 6)
    assert cli("run", str(spec), "--json").returncode == 0
    second = json.loads(cli("run", str(spec), "--no-cache", "--json").stdout)["batch_id"]
    proc = cli("report", "--json")
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)
    assert written["kind"] == "batch" and written["id"] == second and written["path"] == "report.html"
    page = (tmp_path / "report.html").read_text()
    assert f"Batch {second[:10]}" in page and written["bytes"] == len(page.encode())


def test_run_and_ab_write_their_report_and_keep_stdout_for_json(cli, tmp_path):
    spec = write_loop(tmp_path / "loop", 5)
    proc = cli("run", str(spec), "--report", "out/run.html", "--json")
    batch_id = json.loads(proc.stdout)["batch_id"]  # stdout is still one JSON document
    assert f"report: out/run.html" in proc.stderr
    assert f"Batch {batch_id[:10]}" in (tmp_path / "out" / "run.html").read_text()
    a, b = ab_specs(tmp_path / "ab")
    proc = cli("ab", str(a), str(b), "--seed", "3", "--report", "ab.html", "--json")
    ab_id = json.loads(proc.stdout)["batch_id"]
    assert f"A/B {ab_id[:10]} · variant_a vs variant_b" in (tmp_path / "ab.html").read_text()


def test_report_usage_errors_are_one_line_with_exit_2(cli, tmp_path):
    proc = cli("report")
    assert proc.returncode == 2 and "no ledger here yet" in proc.stderr
    spec = write_loop(tmp_path / "loop", 2)
    batch_id = json.loads(cli("run", str(spec), "--json").stdout)["batch_id"]
    proc = cli("report", batch_id[:8], "--since", "1d")
    assert proc.returncode == 2 and "not both" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("report", "--since", "last tuesday")
    assert proc.returncode == 2 and "bad time" in proc.stderr
    assert not (tmp_path / "report.html").exists()


def test_a_resume_row_reports_the_batch_it_resumed(tmp_path):
    batch_id = run_loop(tmp_path, 3, tmp_path / "ledger.db")
    with loopkit.Ledger(tmp_path / "ledger.db") as store:
        resumed = store.start_batch("resume", "x", argv=[], tags={"resumes": batch_id}, options={})
        store.finish_batch(resumed, "done", cost_usd=0.0)
        report = build_report(store)  # the latest row is the resume: its batch is what the reader wants
        assert report.id == batch_id and build_report(store, target=resumed[:10]).id == batch_id


# --- charts -------------------------------------------------------------------------------------------


def test_chart_labels_are_escaped_and_series_differ_without_colour():
    svg = charts.hbars("spend <b>", [("<script>x</script>", 1.0), ("b", 0.5)], fmt=str)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg
    assert 'fill="url(#lk-fill0)"' in svg and 'fill="url(#lk-fill1)"' in svg  # patterns, not only hues
    lines = charts.line_chart("t", [charts.Series("a", [(1, 0.1), (2, 0.2)]), charts.Series("b", [(1, 0.3), (2, 0.4)])],
                              x_label="x", y_label="y")
    assert lines.count("stroke-dasharray") >= 2 and "<rect" in lines  # a dash and a square marker for the second series


def test_bins_cover_every_value_once():
    values = [0.0, 0.1, 0.5, 0.99, 1.0, 1.0]
    groups = charts.bins(values, 4)
    assert sum(n for _, _, n in groups) == len(values) and groups[0][0] == 0.0 and groups[-1][1] == 1.0
    assert charts.bins([2.0, 2.0], 4) == [(2.0, 2.0, 2)] and charts.bins([], 4) == []


def test_report_never_imports_litellm(tmp_path):
    """`report` is a query command: it reads the ledger and must start without litellm's import."""
    import subprocess
    import sys

    batch_id = run_loop(tmp_path, 2, tmp_path / "ledger.db")
    code = ("import sys\nfrom loopkit.cli import main\n"
            f"sys.argv = ['loopkit', '--ledger', {str(tmp_path / 'ledger.db')!r}, 'report', {batch_id[:8]!r}, '-o', {str(tmp_path / 'r.html')!r}]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            "assert 'litellm' not in sys.modules and 'loopkit.models' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.html").exists()
