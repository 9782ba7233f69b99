"""The batch page (src/loopkit/html/batch_page.py) beyond model calls: a person's time and the tools the
model called, checked against the ledger (`human_time`, `events` and `tool_calls` are the source of truth).

The rest of the page (headline, convergence, escalations, cost, every case) is tests/test_html_report.py.
"""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from markupsafe import escape

import loopkit
from loopkit.batch import BatchOptions
from loopkit.formatting import usd
from loopkit.html import build_report
from loopkit.html.render import minutes
from loopkit.human import DEFAULT_REVIEW_MINUTES
from loopkit.review import decide
from report_data import rows, run_loop, write_loop

SINCE = "2000-01-01T00:00:00.000000Z"


def card(html: str, label: str) -> tuple[str, str]:
    """(value, sub-line) of a headline card."""
    m = re.search(rf'<span class="k">{re.escape(label)}</span><span class="v">(.*?)</span>(?:<span class="s">(.*?)</span>)?', html)
    assert m, f"no card {label!r}"
    return unescape(m.group(1)), unescape(m.group(2) or "")


def person_cell(html: str, run_id: str) -> tuple[float, str]:
    """(data-v, text) of a case's `person` cell: the column after cost in its summary row."""
    row = html[html.index(f'<tbody id="run-{run_id}"'):]
    row = row[:row.index("</tr>")]
    cells = re.findall(r'<td class="n" data-v="([^"]*)">(.*?)</td>', row)
    value, text = cells[-2]  # reward, cost, person, time: the person is the one before time
    return float(value), unescape(text)


# --- a person's time ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory) -> tuple[Path, str, dict[str, float], str, str]:
    """A 12-case batch where a person reviewed two parked runs (7 and 2.5 minutes) and the rest still wait:
    (ledger, batch id, minutes per reviewed run, the batch page, the cost page)."""
    folder = tmp_path_factory.mktemp("reviewed")
    db = folder / "ledger.db"
    batch_id = run_loop(folder, 12, db)
    parked = [r["id"] for r in rows(db, "SELECT id FROM runs WHERE batch_id=? AND status='needs_review' ORDER BY case_id",
                                    (batch_id,))]
    assert len(parked) >= 3  # two reviewed, at least one still waiting
    spent = {parked[0]: 7.0, parked[1]: 2.5}
    with loopkit.Ledger(db) as store:
        decide(store, parked[0], "approve", reviewer="ann", minutes=spent[parked[0]])
        decide(store, parked[1], "reject", reviewer="<b>bo</b>", minutes=spent[parked[1]])
        return db, batch_id, spent, build_report(store, target=batch_id).html, build_report(store, since=SINCE).html


def test_the_headline_shows_the_minutes_reviews_took_and_the_runs_still_waiting(reviewed):
    db, batch_id, _, html, _ = reviewed
    done = rows(db, "SELECT COUNT(*) AS n, TOTAL(minutes) AS m FROM human_time WHERE batch_id=?", (batch_id,))[0]
    waiting = rows(db, "SELECT COUNT(*) AS n FROM runs WHERE batch_id=? AND status='needs_review'", (batch_id,))[0]["n"]
    assert done == {"n": 2, "m": 9.5} and waiting > 0
    value, sub = card(html, "human minutes")
    assert value == "9.5 min" == minutes(done["m"])
    assert sub == f"2 review(s); {waiting} waiting, ~{minutes(waiting * DEFAULT_REVIEW_MINUTES)} expected"


def test_each_case_shows_its_persons_minutes_recorded_or_expected(reviewed):
    db, batch_id, spent, html, _ = reviewed
    for run in rows(db, "SELECT id, status FROM runs WHERE batch_id=?", (batch_id,)):
        value, text = person_cell(html, run["id"])
        if run["id"] in spent:
            assert (value, text) == (spent[run["id"]], minutes(spent[run["id"]]))
        elif run["status"] == "needs_review":
            assert (value, text) == (DEFAULT_REVIEW_MINUTES, f"~{minutes(DEFAULT_REVIEW_MINUTES)} waiting")
        else:
            assert (value, text) == (0.0, "-")


def test_the_escalation_to_a_person_counts_their_minutes(reviewed):
    db, batch_id, spent, html, _ = reviewed
    waiting = rows(db, "SELECT COUNT(*) AS n FROM runs WHERE batch_id=? AND status='needs_review'", (batch_id,))[0]["n"]
    section = html[html.index('id="escalations"'):html.index('id="costs"')]
    row = section[section.index("<td>a person</td>"):]
    row = row[:row.index("</tr>")]
    assert row.endswith(f'<td class="n">{minutes(sum(spent.values()) + waiting * DEFAULT_REVIEW_MINUTES)}</td>')


def test_a_reviewed_run_says_who_decided_and_how_long_it_took(reviewed):
    _, _, spent, html, _ = reviewed
    rejected = list(spent)[1]
    body = html[html.index(f'<tbody id="run-{rejected}"'):]
    body = body[:body.index("</tbody>")]
    assert "<dt>a person</dt><dd>2.5 min in 1 review(s)</dd>" in body
    assert "reject by &lt;b&gt;bo&lt;/b&gt; (2.5 min)" in body  # the reviewer's name is text


def test_the_cost_page_counts_the_minutes_reviewed_in_its_window(reviewed):
    db, batch_id, spent, _, cost = reviewed
    total = rows(db, "SELECT COUNT(*) AS n, TOTAL(minutes) AS m FROM human_time WHERE created_at >= ?", (SINCE,))[0]
    assert card(cost, "human minutes") == (minutes(total["m"]), f"{total['n']} review(s)")
    top = cost[cost.index('id="top"'):]
    row = top[top.index(f'<td class="mono">{batch_id[:10]}</td>'):]
    assert row[:row.index("</tr>")].endswith(f'<td class="n">{minutes(sum(spent.values()))}</td>')


def test_a_priced_persons_time_shows_its_cost_beside_the_minutes(tmp_path):
    spec = write_loop(tmp_path / "loop", 12)
    spec.write_text(spec.read_text() + "human_rate: {usd_per_hour: 60}\n")
    db = tmp_path / "ledger.db"
    with loopkit.Ledger(db) as store:
        batch_id = loopkit.run_batch(loopkit.load_spec(spec), ledger=store, options=BatchOptions()).batch_id
        parked = [r["id"] for r in rows(db, "SELECT id FROM runs WHERE batch_id=? AND status='needs_review'", (batch_id,))]
        decide(store, parked[0], "approve", reviewer="ann", minutes=3)
        html = build_report(store, target=batch_id).html
    paid = rows(db, "SELECT TOTAL(usd) AS usd FROM human_time WHERE batch_id=?", (batch_id,))[0]["usd"]
    assert paid == 3.0  # 3 minutes at $60 an hour
    assert card(html, "human minutes")[1].startswith(f"1 review(s), {usd(paid)}; {len(parked) - 1} waiting")
    expected = (len(parked) - 1) * DEFAULT_REVIEW_MINUTES  # the runs still waiting, at the same rate
    section = html[html.index('id="escalations"'):html.index('id="costs"')]
    assert f'<td class="n">{minutes(3 + expected)} ({usd(paid + expected)})</td></tr>' in section


# --- tool calls -----------------------------------------------------------------------------------

TOOLS_PY = '''
def echo(text: str) -> str:
    """Say the text back.

    Args:
        text: what to say
    """
    return "echo: " + text


def broken() -> str:
    """Always fails."""
    raise ValueError("<i>no rate table</i>")
'''


def echo_then_answer(body: dict) -> object:
    """Ask for both tools on the first step (arguments carrying markup); answer 42 once they replied."""
    from fake_llm import Reply

    if body["messages"][-1]["role"] == "tool":
        return Reply(content="42")
    prompt = body["messages"][-1]["content"]
    return Reply(tool_calls=[{"name": "echo", "arguments": {"text": f"<b>{prompt}</b>"}}, {"name": "broken", "arguments": {}}])


def test_each_iteration_lists_its_tool_calls_with_arguments_results_and_errors(fake_llm, cli, tmp_path):
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "x": i}) + "\n" for i in range(3)))
    (tmp_path / "spec.yaml").write_text(f"""\
version: 1
name: tooling
model: {{id: openai/test-model, api_base: "{fake_llm.base_url}", api_key_env: TEST_KEY, price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 50}}
task: {{prompt: "case {{{{ case.x }}}}: what is 17 + 25?"}}
inputs: cases.jsonl
tools: [{{name: echo, type: python, function: tools.py:echo}}, {{name: broken, type: python, function: tools.py:broken}}]
checkers: [{{name: answer, type: equals, expected: "42"}}]
""")
    fake_llm.responder = echo_then_answer
    done = cli("run", "spec.yaml", "--report", "tools.html", "--json", env={"TEST_KEY": "test-key-not-secret"})
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "tools.html").read_text()
    tools = rows(tmp_path / "ledger.db", "SELECT run_id, iteration, step, tool, arguments, result, error FROM tool_calls")
    assert len(tools) == 6 and html.count("<h4>Tool calls</h4>") == 3 and html.count("· 2 tool calls</h4>") == 3
    for t in tools:
        body = html[html.index(f'<tbody id="run-{t["run_id"]}"'):]
        body = body[:body.index("</tbody>")]
        row = f'<tr><td class="n">{t["step"]}</td><td>{t["tool"]}</td><td><code>{escape(t["arguments"])}</code></td>'
        assert row in body
        if t["error"]:
            assert f'<span class="fail">error: {escape(t["error"])}</span>' in body and "&lt;i&gt;no rate table" in body
        else:
            assert str(escape(t["result"])) in body and "&lt;b&gt;case" in body
    assert "<b>case" not in html and "<i>no rate" not in html
    with loopkit.Ledger(tmp_path / "ledger.db", readonly=True) as store:  # the run's own page: the request in the conversation
        run_page = build_report(store, target=tools[0]["run_id"]).html
    asked = [t for t in tools if t["run_id"] == tools[0]["run_id"]]
    for t in asked:
        assert f"asks for a tool: <code>{t['tool']}({escape(t['arguments'])})</code>" in run_page
