"""A person's time has a price (SPEC.md §6): `human_rate`, `human: {note, minutes}`, `review --minutes`, human
time as its own rows beside model spend in `cost`, `show` and the run summary, and `cheapest:` escalations.
Offline, on the scripted model."""

from __future__ import annotations

import json
import sqlite3

import pytest

from loopkit.spec import parse_spec

PARKED = """\
name: review-me
model: {id: loopkit/scripted, replies: ["guess"], price: {input_per_mtok: 1, output_per_mtok: 2}}
params: {max_tokens: 20}
task: {prompt: "Filing status of {{ case.name }}?"}
inputs: [{id: kim, name: Kim}, {id: lee, name: Lee}]
checkers: [{name: status, type: equals, expected: married}]
human_rate: {usd_per_hour: 90}
escalate:
  - when: {failed: status}
    human: {note: "Confirm the filing status.", minutes: 5}
"""


def rows(tmp_path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture
def parked(cli, write_spec, tmp_path):
    """Two runs parked for a person; returns {case_id: run_id}."""
    done = cli("run", str(write_spec(PARKED)), "--json")
    runs = json.loads(done.stdout)["runs"]
    assert [r["status"] for r in runs] == ["needs_review", "needs_review"]
    return {r["case_id"]: r["id"] for r in runs}


# --- the spec -----------------------------------------------------------------------------------


def test_a_human_step_is_a_note_or_a_note_with_minutes():
    spec = parse_spec(PARKED + '  - when: {iterations: 2}\n    human: "plain words"\n')
    detailed, plain = spec.escalate
    assert (detailed.human_note, detailed.human_minutes) == ("Confirm the filing status.", 5.0)
    assert (plain.human_note, plain.human_minutes) == ("plain words", None)
    assert spec.human_rate is not None and spec.human_rate.usd_per_hour == 90


@pytest.mark.parametrize("entry, problem", [
    ("cheapest: [gpt-4o]", "`cheapest:` needs at least two options"),
    ("cheapest: [human, gpt-4o, human]", "`cheapest:` lists `human` more than once"),
    ("cheapest: [gpt-4o, gpt-4o-mini]\n    human: look", "found `human:` beside a `cheapest:` list without `human`"),
    ("model: gpt-4o\n    cheapest: [gpt-4o, human]", "found both `model:` and `cheapest:`"),
])
def test_a_cheapest_entry_is_refused_when_it_cannot_choose(entry, problem):
    text = "model: gpt-4o-mini\ntask: {prompt: hi}\nescalate:\n  - when: {iterations: 1}\n    " + entry + "\n"
    with pytest.raises(Exception) as found:
        parse_spec(text)
    assert problem in str(found.value)


# --- review minutes: their own rows, never calls --------------------------------------------------


def test_a_hand_off_records_the_minutes_it_expects_and_the_rate_in_its_event(parked, cli):
    detail = json.loads(cli("show", parked["kim"], "--json").stdout)
    (escalation,) = [e["detail"] for e in detail["events"] if e["kind"] == "escalation"]
    assert escalation == {"rule": 0, "iteration": 1, "human": "Confirm the filing status.", "minutes": 5.0, "usd_per_hour": 90.0}
    assert detail["message"] == "Confirm the filing status."


def test_review_minutes_are_a_human_row_and_never_a_call(parked, cli, tmp_path):
    calls_before = rows(tmp_path, "SELECT COUNT(*), TOTAL(cost_usd) FROM calls")
    run_cost = rows(tmp_path, "SELECT cost_usd FROM runs WHERE id=?", parked["kim"])
    done = cli("review", parked["kim"], "--approve", "--minutes", "3", "--reviewer", "sam", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"run_id": parked["kim"], "status": "passed", "stop_reason": "approved", "reviewer": "sam",
                                       "minutes": 3.0, "usd": pytest.approx(4.5)}
    assert rows(tmp_path, "SELECT kind, minutes, usd_per_hour, usd, estimated, decision, reviewer FROM human_time") == [
        ("human", 3.0, 90.0, pytest.approx(4.5), 0, "approve", "sam")]
    assert rows(tmp_path, "SELECT COUNT(*), TOTAL(cost_usd) FROM calls") == calls_before  # a person is not a model call
    assert rows(tmp_path, "SELECT cost_usd FROM runs WHERE id=?", parked["kim"]) == run_cost
    (review,) = [json.loads(d) for (d,) in rows(tmp_path, "SELECT detail FROM events WHERE kind='review'")]
    assert review["minutes"] == 3.0 and review["usd"] == pytest.approx(4.5)


def test_a_review_without_minutes_records_what_the_hand_off_expected_as_an_estimate(parked, cli, tmp_path):
    assert cli("review", parked["lee"], "--reject").returncode == 0
    assert rows(tmp_path, "SELECT minutes, usd, estimated FROM human_time") == [(5.0, pytest.approx(7.5), 1)]


def test_review_minutes_need_a_run_and_a_number_of_zero_or_more(parked, cli):
    assert cli("review", "--minutes", "3").returncode == 2
    assert cli("review", parked["kim"], "--approve", "--minutes", "-1").returncode == 2


# --- cost: model spend and a person's time side by side ---------------------------------------------


def test_cost_shows_model_spend_and_human_time_side_by_side(parked, cli, tmp_path):
    cli("review", parked["kim"], "--approve", "--minutes", "3")
    cli("review", parked["lee"], "--reject")  # the hand-off's 5 minutes
    (model_usd,) = rows(tmp_path, "SELECT TOTAL(cost_usd) FROM calls")[0]
    report = json.loads(cli("cost", "--json").stdout)
    total = report["total"]
    assert total["cost_usd"] == pytest.approx(model_usd)  # never mixed into model spend
    assert (total["human_reviews"], total["human_minutes"], total["human_usd"]) == (2, 8.0, pytest.approx(12.0))

    by_model = {g["key"]: g for g in json.loads(cli("cost", "--by", "model", "--json").stdout)["groups"]}
    assert by_model["human"]["human_minutes"] == 8.0 and by_model["human"]["cost_usd"] == 0 and by_model["human"]["calls"] == 0
    assert by_model["loopkit/scripted"]["human_minutes"] == 0 and by_model["loopkit/scripted"]["cost_usd"] == pytest.approx(model_usd)
    (spec_group,) = json.loads(cli("cost", "--by", "spec", "--json").stdout)["groups"]
    assert spec_group["key"] == "review-me" and spec_group["cost_usd"] == pytest.approx(model_usd)
    assert spec_group["human_minutes"] == 8.0

    repriced = json.loads(cli("cost", "--human-usd-per-hour", "60", "--json").stdout)["total"]
    assert repriced["human_usd"] == pytest.approx(8.0) and repriced["cost_usd"] == pytest.approx(model_usd)
    text = cli("cost", "--by", "spec").stdout
    assert "human 8 min in 2 review(s), $12.0000" in text and "human min" in text and "human $" in text


def test_cost_prints_no_human_line_when_no_person_was_involved(cli, write_spec):
    cli("run", str(write_spec(PARKED.replace("escalate:", "unused:\n  - x").split("unused:")[0])))
    report = cli("cost")
    assert report.returncode == 0 and "human" not in report.stdout


# --- show and the run summary ------------------------------------------------------------------------


def test_the_run_summary_and_show_tell_a_runs_human_minutes(cli, write_spec, parked):
    summary = cli("run", str(write_spec(PARKED)), "--no-cache").stdout
    assert "2 run(s) wait for a person (≈10 min, $15.0000 expected; `loopkit review`)" in summary
    assert "waits for a person: ≈5 min expected" in cli("show", parked["kim"]).stdout
    cli("review", parked["kim"], "--approve", "--minutes", "3")
    shown = cli("show", parked["kim"])
    assert "a person's time 3 min ($4.5000) in 1 review(s)" in shown.stdout
    assert json.loads(cli("show", parked["kim"], "--json").stdout)["human"] == {
        "reviews": 1, "minutes": 3.0, "usd": pytest.approx(4.5), "unpriced_minutes": 0.0, "waiting_minutes": None}


def test_run_human_usd_per_hour_prices_the_hand_off_instead_of_the_specs_rate(cli, write_spec, tmp_path):
    cli("run", str(write_spec(PARKED)), "--human-usd-per-hour", "120")
    rates = {json.loads(d)["usd_per_hour"] for (d,) in rows(tmp_path, "SELECT detail FROM events WHERE kind='escalation'")}
    assert rates == {120.0}


def test_human_usd_by_run_counts_reviews_and_the_expected_time_of_runs_still_waiting(parked, cli, tmp_path):
    from loopkit.human import human_minutes_by_run, human_usd_by_run
    from loopkit.ledger import Ledger

    cli("review", parked["kim"], "--approve", "--minutes", "3")
    (batch_id,) = rows(tmp_path, "SELECT DISTINCT batch_id FROM runs")[0]
    with Ledger(tmp_path / "ledger.db", readonly=True) as ledger:
        assert human_usd_by_run(ledger, batch_id) == {parked["kim"]: pytest.approx(4.5), parked["lee"]: pytest.approx(7.5)}
        assert human_usd_by_run(ledger, batch_id, usd_per_hour=60) == {parked["kim"]: pytest.approx(3.0),
                                                                      parked["lee"]: pytest.approx(5.0)}
        assert human_usd_by_run(ledger, batch_id, pending=False) == {parked["kim"]: pytest.approx(4.5)}
        assert human_minutes_by_run(ledger, batch_id) == {parked["kim"]: 3.0, parked["lee"]: 5.0}


# --- cheapest: the option with the lowest expected cost per success -----------------------------------

CHEAPEST = """\
name: choose
model: {id: loopkit/scripted, name: weak, replies: ["guess"], price: {input_per_mtok: 1, output_per_mtok: 1}}
params: {max_tokens: 20}
task: {prompt: "Filing status of {{ case.name }}?"}
inputs: [{id: c1, name: A}, {id: c2, name: B}, {id: c3, name: C}, {id: c4, name: D}, {id: c5, name: E}, {id: c6, name: F}]
checkers: [{name: status, type: equals, expected: married}]
stop: {max_iterations: 3}
human_rate: {usd_per_hour: 90}
escalate:
  - when: {iterations: 1}
    %s
"""
STRONG = '{id: loopkit/scripted, name: strong, replies: ["%s"], price: {input_per_mtok: 2.5, output_per_mtok: 10}}'


def escalations(tmp_path) -> list[dict]:
    return [json.loads(d) for (d,) in rows(tmp_path, "SELECT detail FROM events WHERE kind='escalation' ORDER BY id")]


def test_cheapest_without_history_uses_the_stated_prior_and_records_its_numbers(cli, write_spec, tmp_path):
    from loopkit.cheapest import PRIOR_HUMAN_PASS, PRIOR_PASS, PRIOR_TOKENS

    entry = f"cheapest: [{STRONG % 'married'}, human]\n    human: {{note: look, minutes: 5}}"
    done = cli("run", str(write_spec(CHEAPEST % entry)), "--json")
    assert done.returncode == 0, done.stderr
    first = escalations(tmp_path)[0]
    assert first["to"] == "strong" and first["cheapest"]["chosen"] == "strong"
    strong, person = first["cheapest"]["options"]
    step = PRIOR_TOKENS[0] * 2.5e-6 + PRIOR_TOKENS[1] * 10e-6  # the prior's tokens at strong's price
    # two iterations left: the second is paid only when the first (passing half the time) failed
    assert strong["usd"] == pytest.approx(step * (1 + (1 - PRIOR_PASS)))
    assert strong["pass_chance"] == pytest.approx(1 - (1 - PRIOR_PASS) ** 2) and strong["source"].startswith("prior")
    assert person == {"option": "human", "pass_chance": PRIOR_HUMAN_PASS, "usd": pytest.approx(7.5),
                      "usd_per_success": pytest.approx(7.5 / PRIOR_HUMAN_PASS), "runs": 0,
                      "source": "prior: 90% of reviews succeed", "minutes": 5.0}
    assert all(r["status"] == "passed" for r in json.loads(done.stdout)["runs"])


def test_cheapest_hands_to_a_person_when_history_shows_the_model_failing_after_escalation(cli, write_spec, tmp_path):
    # history: the same task, escalating to `strong`, which never fixes what `weak` got wrong
    cli("run", str(write_spec(CHEAPEST % f"model: {STRONG % 'single'}", name="history.yaml")))
    entry = f"cheapest: [{STRONG % 'single'}, human]\n    human: {{note: look, minutes: 5}}"
    done = cli("run", str(write_spec(CHEAPEST % entry)), "--json")
    assert {r["status"] for r in json.loads(done.stdout)["runs"]} == {"needs_review"}
    chosen = escalations(tmp_path)[-1]
    assert chosen["human"] == "look" and chosen["cheapest"]["chosen"] == "human"
    strong = chosen["cheapest"]["options"][0]
    assert strong["pass_chance"] == 0 and strong["usd_per_success"] is None  # it cannot succeed: no finite cost per success
    assert strong["source"] == "history: 6 segment(s), after an escalation" and strong["runs"] == 6


def test_the_engine_chooses_from_the_estimates_it_is_given_without_a_ledger(recorder):
    import asyncio

    from loopkit.cheapest import Estimates, OptionEstimate
    from loopkit.engine import run_case
    from loopkit.inputs import Case
    from loopkit.models import ModelPool

    entry = f"cheapest: [{STRONG % 'married'}, human]\n    human: {{note: look, minutes: 5}}"
    spec = parse_spec(CHEAPEST % entry)
    told = Estimates({"strong": OptionEstimate("strong", [0.01], [50.0], 40, "history: test"),
                      "human": OptionEstimate("human", [0.9], [7.5], 10, "history: test", 5.0)})
    result = asyncio.run(run_case(spec.model_copy(update={"estimates": told}), Case("c1", {"name": "A"}),
                                  clients=ModelPool().client, recorder=recorder))
    assert result.status == "needs_review"
    (event,) = [e.detail for e in recorder.events if e.kind == "escalation"]
    assert event["cheapest"]["chosen"] == "human" and event["cheapest"]["options"][0]["source"] == "history: test"


def test_cheapest_with_a_person_needs_a_price_for_their_time(cli, write_spec):
    entry = f"cheapest: [{STRONG % 'married'}, human]"
    done = cli("run", str(write_spec((CHEAPEST % entry).replace("human_rate: {usd_per_hour: 90}\n", ""))))
    assert done.returncode == 2 and "escalate.0.cheapest lists `human`, whose time has no price" in done.stderr
    assert cli("run", str(write_spec((CHEAPEST % entry).replace("human_rate: {usd_per_hour: 90}\n", ""))),
               "--human-usd-per-hour", "90").returncode == 0


def test_cost_by_day_and_by_batch_puts_a_persons_time_in_the_same_group_as_the_model_spend(parked, cli, tmp_path):
    cli("review", parked["kim"], "--approve", "--minutes", "3")
    (batch_id,) = rows(tmp_path, "SELECT DISTINCT batch_id FROM runs")[0]
    (by_batch,) = [g for g in json.loads(cli("cost", "--by", "batch", "--json").stdout)["groups"] if g["human_minutes"]]
    assert by_batch["key"] == batch_id and by_batch["calls"] > 0 and by_batch["human_usd"] == pytest.approx(4.5)
    (day,) = rows(tmp_path, "SELECT date(created_at, 'localtime') FROM human_time")[0]
    (by_day,) = [g for g in json.loads(cli("cost", "--by", "day", "--json").stdout)["groups"] if g["human_minutes"]]
    assert by_day["key"] == day and by_day["human_minutes"] == 3.0 and by_day["human_usd"] == pytest.approx(4.5)
