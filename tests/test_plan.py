"""`loopkit run --explore` and `loopkit plan` (SPEC.md §6): each model alone on every case, then the
cost/accuracy frontier of loop designs from the ledger, the current design marked, and `--write`.
Offline, on scripted models whose answers depend only on the case and iteration, so what a plan
predicts can be compared with what the engine then does."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from loopkit.spec import load_spec, parse_spec

CHEAP = ('{id: loopkit/scripted, name: cheap, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}, '
         "replies: [\"{{ case.answer if case.easy else 'wrong1' }}\", \"{{ case.answer if case.fixable else 'wrong2' }}\", %s]}")
SPEC = """\
name: quiz
model: {id: loopkit/scripted, name: strong, price: {input_per_mtok: 2.5, output_per_mtok: 10}, replies: ["{{ case.answer }}"]}
params: {max_tokens: 50}
task:
  prompt: "What is {{ case.q }}? Answer with the number only."
  feedback: "RETRY: {{ feedback }}"
inputs: cases.jsonl
checkers:
  - {name: answer, type: equals, expected: "{{ case.answer }}"}
stop: {max_iterations: 3}
escalate:
  - when: {iterations: 3}
    model: %s
"""
# ten cases: the cheap model is right on 7 at once, on 2 more after feedback, never on the last
CASES = "".join(json.dumps({"id": f"c{i}", "q": f"{i} + {i}", "answer": str(2 * i), "easy": i < 7, "fixable": i < 9}) + "\n"
                for i in range(10))


@pytest.fixture
def quiz(write_spec):
    return write_spec(SPEC % (CHEAP % "\"{{ 'wrong3' }}\""), cases__jsonl=CASES)


def rows(tmp_path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        return conn.execute(sql, args).fetchall()


def plan_json(cli, spec, *args) -> dict:
    done = cli("plan", str(spec), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- explore --------------------------------------------------------------------------------------


def test_explore_runs_every_case_on_each_model_alone(cli, quiz, tmp_path):
    done = cli("run", str(quiz), "--explore", "cheap,strong", "--repeat", "2", "--json")
    assert done.returncode == 0, done.stderr
    explored = json.loads(done.stdout)["explore"]
    assert [(e["model"], e["runs"], e["passed"]) for e in explored] == [("cheap", 20, 18), ("strong", 20, 20)]
    for e in explored:  # each batch ran one model only, with the spec's mapping, and never escalated
        assert rows(tmp_path, "SELECT DISTINCT i.model FROM iterations i JOIN runs r ON r.id = i.run_id WHERE r.batch_id=?",
                    e["batch_id"]) == [(e["model"],)]
    assert rows(tmp_path, "SELECT COUNT(*) FROM events WHERE kind='escalation'") == [(0,)]
    assert rows(tmp_path, "SELECT COUNT(DISTINCT spec_hash) FROM runs") == [(1,)]  # the spec's own runs, for plan


def test_explore_prints_each_models_pass_rate_and_the_next_step(cli, quiz):
    text = cli("run", str(quiz), "--explore", "cheap,strong").stdout
    assert "9/10" in text and "10/10" in text
    assert "next: `loopkit plan spec.yaml`" in text  # the path as typed from here, not the absolute one


def test_explore_refuses_model_alongside_it(cli, quiz):
    done = cli("run", str(quiz), "--explore", "cheap,strong", "--model", "cheap")
    assert done.returncode == 2 and "--explore names the models itself" in done.stderr


# --- plan -----------------------------------------------------------------------------------------


def test_plan_estimates_each_models_attempts_as_the_ledger_recorded_them(cli, quiz, tmp_path):
    cli("run", str(quiz), "--explore", "cheap,strong")
    report = plan_json(cli, quiz)
    attempts = {(a["model"], a["attempt"]): a for a in report["attempts"]}
    for (model, k), a in attempts.items():
        made, passed = rows(tmp_path, "SELECT COUNT(*), TOTAL(passed) FROM iterations WHERE model=? AND n=?", model, k)[0]
        assert (a["made"], a["pass_chance"]) == (made, passed / made)
        assert a["pass_interval"][0] <= a["pass_chance"] <= a["pass_interval"][1]
        (mean_cost,) = rows(tmp_path, "SELECT AVG(cost_usd) FROM iterations WHERE model=? AND n=?", model, k)[0]
        assert a["step_usd"] == pytest.approx(mean_cost)
        assert a["small_sample"]  # ten cases: said so
    assert (attempts[("cheap", 1)]["pass_chance"], attempts[("cheap", 2)]["pass_chance"]) == (0.7, pytest.approx(2 / 3))
    assert (report["runs"], report["cases"], report["batches"]) == (20, 10, 2)


def test_the_frontier_holds_no_design_another_beats_on_cost_and_accuracy(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    front = plan_json(cli, quiz)["frontier"]
    assert len(front) >= 3
    for cheaper, dearer in zip(front, front[1:]):
        assert cheaper["usd_per_case"] <= dearer["usd_per_case"] and cheaper["accuracy"] < dearer["accuracy"]


def test_plan_marks_the_current_design_and_chooses_the_cheapest_within_the_margin(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    report = plan_json(cli, quiz)
    current, chosen = report["current"], report["chosen"]
    assert current["design"] == "strong ×3" and current["accuracy"] == 1.0
    assert chosen["design"] == "cheap ×2 → strong ×1" and chosen["accuracy"] == 1.0
    within = [f for f in report["frontier"] if f["accuracy"] >= current["accuracy"] - 0.02]
    assert chosen["usd_per_case"] == min(f["usd_per_case"] for f in within) < current["usd_per_case"]
    assert [f["chosen"] for f in report["frontier"]].count(True) == 1
    assert any("flatter" in note and "loopkit ab" in note for note in report["notes"])  # in-sample figures: said so
    text = cli("plan", str(quiz)).stdout
    assert "cheap ×2 → strong ×1" in text and "current" in text and "chosen" in text and "cheaper)" in text


def test_plan_write_changes_only_model_escalate_and_stop_and_the_engine_does_what_it_predicted(cli, quiz, tmp_path):
    cli("run", str(quiz), "--explore", "cheap,strong")
    new = tmp_path / "planned.yaml"
    report = plan_json(cli, quiz, "--write", str(new))
    assert report["written"] == str(new)
    before, after = yaml.safe_load(quiz.read_text()), yaml.safe_load(new.read_text())
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {"model", "escalate"} <= changed <= {"model", "escalate", "stop"}  # stop too, when the iterations differ
    planned = load_spec(new)
    assert planned.model.label == "cheap" and planned.model.replies == load_spec(quiz).escalate[0].model.replies
    assert [(e.when.iterations, e.model.label) for e in planned.escalate] == [(2, "strong")] and planned.stop.max_iterations == 3

    done = json.loads(cli("run", str(new), "--no-cache", "--json").stdout)
    assert done["pass_rate"] == report["chosen"]["accuracy"]
    assert done["cost_usd"] / 10 == pytest.approx(report["chosen"]["usd_per_case"], rel=0.1)


def test_a_stall_ends_the_run_in_a_plan_as_it_does_in_the_engine(cli, write_spec, tmp_path):
    """The cheap model repeats its wrong answer: the engine stops the run (plateau) unless the loop switches
    models right after, so cheap ×3 → strong loses those cases while cheap ×2 → strong does not."""
    from loopkit.history import load_history
    from loopkit.ledger import Ledger
    from loopkit.plan_model import Design, Model, evaluate
    from loopkit.plan_write import design_text

    spec_path = write_spec(SPEC % (CHEAP % "\"{{ 'wrong2' }}\"").replace("'wrong1'", "'wrong2'"), cases__jsonl=CASES)
    cli("run", str(spec_path), "--explore", "cheap,strong")
    spec = load_spec(spec_path)
    with Ledger(tmp_path / "ledger.db", readonly=True) as ledger:
        model = Model.of(load_history(ledger, spec).segments)
    assert model.attempts["cheap"][1].stalled == 1  # case c9 repeated itself at the second attempt (c7, c8 were fixed)
    late, early = Design((("cheap", 3), ("strong", 1))), Design((("cheap", 2), ("strong", 1)))
    predicted = {f.design: f.accuracy for f in evaluate([late, early], model, None)}
    assert predicted == {late: 0.9, early: 1.0}
    for design in (late, early):
        path = tmp_path / "design.yaml"
        path.write_text(design_text(spec, design))
        done = json.loads(cli("run", str(path), "--no-cache", "--json").stdout)
        assert done["pass_rate"] == predicted[design]


def test_cached_steps_count_for_chances_but_not_as_free_steps(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    first = {(a["model"], a["attempt"]): a for a in plan_json(cli, quiz)["attempts"]}
    cli("run", str(quiz), "--explore", "cheap,strong")  # answered from the cache: cost 0
    again = {(a["model"], a["attempt"]): a for a in plan_json(cli, quiz)["attempts"]}
    for key, a in again.items():
        assert a["made"] == 2 * first[key]["made"] and a["step_usd"] == pytest.approx(first[key]["step_usd"])


def test_plan_without_history_says_how_to_start_and_writes_nothing(cli, quiz, write_spec, tmp_path):
    other = write_spec("model: {id: loopkit/scripted, replies: [x]}\ntask: {prompt: another task}\n", name="other.yaml")
    cli("run", str(other))  # a ledger, with nothing of this spec in it
    report = plan_json(cli, quiz)
    assert report["frontier"] == [] and report["chosen"] is None
    assert any("--explore" in note for note in report["notes"])
    done = cli("plan", str(quiz), "--write", str(tmp_path / "new.yaml"))
    assert done.returncode == 2 and not (tmp_path / "new.yaml").exists()


def test_plan_since_leaves_out_older_runs(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    assert plan_json(cli, quiz, "--since", "2099-01-01")["runs"] == 0


def test_a_person_is_weighed_only_at_a_price(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    unpriced = plan_json(cli, quiz)
    assert not any(f["human"] for f in unpriced["frontier"]) and unpriced["human"] is None
    priced = plan_json(cli, quiz, "--human-usd-per-hour", "0.0001")
    assert priced["human"]["usd"] == pytest.approx(5 * 0.0001 / 60) and priced["human"]["source"].startswith("prior")
    assert any(f["human"] for f in priced["frontier"])  # a person this cheap is worth handing the last case to


# --- the current design ---------------------------------------------------------------------------


def test_the_current_design_reads_the_spec_as_a_ladder():
    from loopkit.plan import current_design

    spec = parse_spec("""\
model: a
task: {prompt: hi}
stop: {max_iterations: 5}
escalate:
  - {when: {iterations: 4}, human: look}
  - {when: {iterations: 2}, model: b}
""")
    design, notes = current_design(spec)
    assert (design.stages, design.human, notes) == ((("a", 2), ("b", 2)), True, [])
    odd, notes = current_design(parse_spec("model: a\ntask: {prompt: hi}\nescalate:\n  - {when: {failed: x}, model: b}\n"
                                           "checkers: [{name: x, type: equals, expected: y}]\n"))
    assert odd.stages == (("a", 3),) and "fires on a condition" in notes[0]  # what a case does: plan cannot weigh it
    mixed, notes = current_design(parse_spec("model: a\ntask: {prompt: hi}\nescalate:\n  - {when: {failed: x, iterations: 2}, model: b}\n"
                                             "checkers: [{name: x, type: equals, expected: y}]\n"))
    assert mixed.stages == (("a", 2), ("b", 1)) and "conditions besides `iterations`" in notes[0]


def test_a_persons_recorded_reviews_set_the_hand_offs_chance_minutes_and_price(cli, write_spec, tmp_path):
    """Three runs handed to a person, two approved in 3 minutes, one rejected in 1: plan prices a hand-off at
    what those reviews took and how they ended, not at the prior."""
    spec = write_spec("""\
        name: review-me
        model: {id: loopkit/scripted, name: solo, replies: [wrong]}
        task: {prompt: "{{ case.q }}"}
        inputs: cases.jsonl
        checkers: [{name: answer, type: equals, expected: "{{ case.answer }}"}]
        human_rate: {usd_per_hour: 60}
        stop: {max_iterations: 2}
        escalate:
          - when: {iterations: 1}
            human: {note: "please look", minutes: 5}
        """, cases__jsonl="".join(json.dumps({"id": f"c{i}", "q": "q", "answer": "a"}) + "\n" for i in range(3)))
    cli("run", str(spec))
    parked = [r for (r,) in rows(tmp_path, "SELECT id FROM runs WHERE status='needs_review' ORDER BY case_id")]
    assert len(parked) == 3
    for run_id, decision, minutes in zip(parked, ("--approve", "--approve", "--reject"), ("3", "3", "1")):
        assert cli("review", run_id, decision, "--minutes", minutes).returncode == 0
    report = plan_json(cli, spec)
    human = report["human"]
    assert (human["reviews"], human["pass_chance"], human["source"]) == (3, pytest.approx(2 / 3), "history: 3 review(s)")
    assert human["minutes"] == pytest.approx(7 / 3) and human["usd"] == pytest.approx(7 / 3 * 60 / 60)
    assert [(a["model"], a["attempt"], a["made"], a["pass_chance"]) for a in report["attempts"]] == [("solo", 1, 3, 0.0)]
    assert report["current"]["design"] == "solo ×1 → person"
    assert report["current"]["accuracy"] == pytest.approx(2 / 3)
    assert report["current"]["human_minutes_per_case"] == pytest.approx(7 / 3)


def test_design_and_min_accuracy_pick_other_rows_and_a_current_design_off_the_frontier_is_shown(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    report = plan_json(cli, quiz)
    front = report["frontier"]
    assert report["current"]["design"] not in [f["design"] for f in front]  # strong ×3 costs what strong ×1 does
    assert plan_json(cli, quiz, "--design", "1")["chosen"]["design"] == front[0]["design"]
    floor = front[1]["accuracy"]
    assert plan_json(cli, quiz, "--min-accuracy", str(floor))["chosen"]["design"] == front[1]["design"]
    text = cli("plan", str(quiz)).stdout
    off = [line for line in text.splitlines() if "strong ×3" in line]
    assert len(off) == 1 and "current" in off[0] and off[0].lstrip("│ ").startswith("-")
    done = cli("plan", str(quiz), "--design", str(len(front) + 1))
    assert done.returncode == 2 and f"the frontier has {len(front)} row(s)" in done.stderr


def test_a_design_is_a_small_sample_when_any_attempt_it_uses_is():
    """40 cases made the first attempt, only 5 a second: one attempt rests on 40, two on 5 (said so)."""
    from loopkit.history import Segment
    from loopkit.plan_model import Design, Model, evaluate

    segments = [Segment(f"r{i}", f"c{i}", "a", False, passed=[True], costs=[0.01], prompt_tokens=[10]) for i in range(35)]
    segments += [Segment(f"r{i}", f"c{i}", "a", False, passed=[False, True], costs=[0.01, 0.02], prompt_tokens=[10, 20])
                 for i in range(35, 40)]
    once, twice = evaluate([Design((("a", 1),)), Design((("a", 2),))], Model.of(segments), None)
    assert (once.accuracy, once.small_sample) == (35 / 40, False)
    assert (twice.accuracy, twice.small_sample) == (1.0, True)
    assert twice.usd_per_case == pytest.approx(0.01 + 5 / 40 * 0.02)


def test_write_keeps_an_escalation_that_fires_on_a_condition_as_written(cli, write_spec, tmp_path):
    """A hand-off on `failed:` is no step of the ladder: the planned spec keeps it (its comment too), first."""
    text = (SPEC % (CHEAP % "\"{{ 'wrong3' }}\"")).replace("escalate:\n", """escalate:
  - when: {failed: answer}  # odd cases
    # a person looks at them
    human: {note: "look", minutes: 4}
  # the ladder
""").replace("stop: {max_iterations: 3}", "stop: {max_iterations: 3}\nhuman_rate: {usd_per_hour: 60}")
    quiz = write_spec(text, cases__jsonl=CASES)
    cli("run", str(quiz), "--explore", "cheap,strong")
    new = tmp_path / "planned.yaml"
    report = plan_json(cli, quiz, "--write", str(new))
    assert any("escalate.0 fires on a condition" in n for n in report["notes"])
    written = new.read_text()
    assert "  - when: {failed: answer}  # odd cases\n    # a person looks at them\n    human: {note: \"look\", minutes: 4}\n" in written
    assert written.count("# the ladder") == 0  # it belonged to the ladder's entry, which the plan replaced
    planned = load_spec(new)
    assert planned.escalate[0].when.failed == "answer" and planned.escalate[0].human_minutes == 4
    assert [(e.when.iterations, e.model.label) for e in planned.escalate[1:]] == [(2, "strong")]


def test_accuracy_intervals_stay_within_0_and_1_and_widen_on_few_cases(cli, quiz):
    cli("run", str(quiz), "--explore", "cheap,strong")
    for f in plan_json(cli, quiz)["frontier"]:
        low, high = f["accuracy_interval"]
        assert 0 <= low <= f["accuracy"] <= high <= 1
        assert high - low > 0.1  # ten cases: even a design right on all of them is not known to be right on 99%


def test_the_current_design_is_kept_when_nothing_within_the_margin_is_cheaper():
    from loopkit.plan import choose
    from loopkit.plan_model import Design, Figures

    def figures(name: str, accuracy: float, usd: float) -> Figures:
        return Figures(Design(((name, 1),)), accuracy, (accuracy, accuracy), usd, (usd, usd), usd, 0, 0, 10, False, False, False)

    front = [figures("cheap", 0.5, 1.0), figures("strong", 1.0, 2.0)]
    assert choose(front, figures("current", 1.0, 2.0), margin=0.02, min_accuracy=None).design.stages[0][0] == "current"
    assert choose(front, figures("current", 1.0, 3.0), margin=0.02, min_accuracy=None).design.stages[0][0] == "strong"
