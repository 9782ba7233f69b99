"""Keys never reach the ledger, the terminal or the CI reports (SPEC.md §3: "Keys (`*_API_KEY`) are
never written to the ledger or printed") — even when a provider echoes the key back in an error.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from fake_llm import FakeLLM, Reply
from loopkit.redact import MASK, is_secret_name, register_secret, scrub

# The key the spec names with api_key_env, another provider's key that merely sits in the
# environment, and a key-shaped token in a variable whose name says nothing.
WORKER_KEY = "lk-worker-5ecret-Zq8xT4w9-value"
OTHER_KEY = "other-provider-Key-7d1c0e55aa"
SHAPED = "sk-proj-shapedShapedShaped1234567890"
SECRETS = (WORKER_KEY, OTHER_KEY, SHAPED)
ENV = {"FAKE_LLM_API_KEY": WORKER_KEY, "ANTHROPIC_API_KEY": OTHER_KEY, "SOME_SETTING": SHAPED}

SPEC = """\
version: 1
name: secrets
model: {{id: openai/test-model, api_base: "{base}", api_key_env: FAKE_LLM_API_KEY,
         price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
task:
  prompt: "case {{{{ case.id }}}}: what is six times seven?"
inputs: [{{id: ok}}, {{id: auth}}, {{id: boom}}, {{id: wrong}}]
checkers:
  - {{name: answer, type: equals, expected: "42"}}
stop: {{max_iterations: 2}}
"""


def _echo(body: dict) -> Reply | str:
    prompt = body["messages"][0]["content"]
    everything = f"{WORKER_KEY} / {OTHER_KEY} / {SHAPED}"
    if "case auth:" in prompt:
        return Reply(status=401, content=f"Incorrect API key provided: {everything}. Find your key at https://example.invalid")
    if "case boom:" in prompt:
        return Reply(status=500, content=f"internal error while serving key={WORKER_KEY} (also saw {OTHER_KEY}, {SHAPED})")
    if "case wrong:" in prompt and len(body["messages"]) > 1:
        return Reply("still 41")  # the feedback turn: the checker's feedback quotes the answer, not a key
    if "case wrong:" in prompt:
        return "41"
    return "42"


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_keys_echoed_back_by_the_provider_appear_nowhere(fake_llm: FakeLLM, tmp_path: Path, cli_proc) -> None:
    fake_llm.responder = _echo
    (tmp_path / "spec.yaml").write_text(SPEC.format(base=fake_llm.base_url))
    summary = tmp_path / "summary.md"
    env = {**ENV, "GITHUB_STEP_SUMMARY": str(summary)}

    outputs = []
    done = cli_proc("run", "spec.yaml", "--max-retries", "2", "--junit", "report.xml", "--json", env=env, timeout=120)
    outputs.append(done)
    assert done.returncode == 4, done.stderr  # auth and boom are errors
    doc = json.loads(done.stdout)
    statuses = {r["case_id"]: r["status"] for r in doc["runs"]}
    assert statuses == {"ok": "passed", "auth": "error", "boom": "error", "wrong": "failed"}
    errors = {r["case_id"]: r["message"] for r in doc["runs"] if r["status"] == "error"}
    assert "Incorrect API key provided" in errors["auth"] and MASK in errors["auth"], "the echo was recorded, scrubbed"
    assert "internal error while serving" in errors["boom"] and MASK in errors["boom"]

    # Everything a person or a CI job can look at afterwards.
    auth_run = next(r["id"] for r in doc["runs"] if r["case_id"] == "auth")
    for args in (["show", doc["batch_id"]], ["show", auth_run, "--calls"], ["show", auth_run, "--json"], ["runs", "--json"],
                 ["runs"], ["review"]):
        shown = cli_proc(*args, env=env)
        assert shown.returncode == 0, (args, shown.stderr)
        outputs.append(shown)

    files = _files_under(tmp_path)
    assert {"ledger.db", "report.xml", "summary.md"} <= set(files)
    assert b"Incorrect API key provided" in b"".join(files.values()), "the scrubbed error message is in the ledger"
    for secret in SECRETS:
        for name, data in files.items():
            assert secret.encode() not in data, f"{secret} written to {name}"
        for proc in outputs:
            assert secret not in proc.stdout and secret not in proc.stderr, f"{secret} printed by loopkit {' '.join(proc.args[1:])}"


def test_a_key_given_as_a_tag_is_not_written(tmp_path: Path, cli) -> None:
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""\
        model: {id: loopkit/scripted, replies: ["42"]}
        task: {prompt: "six times seven?"}
        checkers: [{name: answer, type: equals, expected: "42"}]
        """))
    done = cli("run", "spec.yaml", "--tag", f"note={OTHER_KEY}", "--json", env=ENV)
    assert done.returncode == 0, done.stderr
    assert OTHER_KEY not in done.stdout
    assert all(OTHER_KEY.encode() not in data for data in _files_under(tmp_path).values())


# --- redact.scrub, directly ----------------------------------------------------------------------


def test_scrub_hides_secret_environment_values_and_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "plainvalue-123456")
    monkeypatch.setenv("HF_TOKEN", "tok-ABCDEFGH")
    monkeypatch.setenv("DB_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("MY_LLM_CREDENTIAL", "cred-abcdefgh")
    text = ("plainvalue-123456 tok-ABCDEFGH hunter2hunter2 cred-abcdefgh sk-ant-api03-AbCdEfGhIjKlMnOp "
            "AIzaSyA1234567890abcdefghijklmnopqrstu ghp_" + "a1" * 18 + " hf_" + "Q" * 34 + " AKIAABCDEFGHIJKLMNOP "
            "Authorization: Bearer eyJhbGciOi1234567890abc")
    scrubbed = scrub(text)
    assert scrubbed is not None
    for secret in text.split()[:-3] + ["eyJhbGciOi1234567890abc"]:
        assert secret not in scrubbed, secret
    assert scrubbed.count(MASK) == 10


def test_scrub_leaves_ordinary_text_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYBOARD_LAYOUT", "us-international")  # "KEYBOARD" is not "KEY"
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to scrub without mangling text
    text = ("expected exactly '42', got '41'; task-list-of-things us-international abc; the bearer of bad news; "
            "risk-assessment-procedure")
    assert scrub(text) == text
    assert scrub("") == "" and scrub(None) is None


def test_a_secret_set_or_changed_after_a_scrub_is_still_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATE_API_KEY", "first-value-123456")
    assert scrub("first-value-123456") == MASK  # the scrubber is reused until the environment changes
    monkeypatch.setenv("LATE_API_KEY", "second-value-123456")
    monkeypatch.setenv("LATER_TOKEN", "third-value-123456")
    assert scrub("first-value-123456 second-value-123456 third-value-123456") == f"first-value-123456 {MASK} {MASK}"


def test_scrub_hides_registered_and_passed_secrets_and_their_escaped_forms() -> None:
    register_secret("odd/key+with\"quote")
    assert scrub('{"error": "bad key odd/key+with\\"quote"}') == '{"error": "bad key [REDACTED]"}'
    assert scrub("url?key=odd%2Fkey%2Bwith%22quote") == "url?key=[REDACTED]"
    assert scrub("given 0123456789-passed", "0123456789-passed") == "given [REDACTED]"


@pytest.mark.parametrize(("name", "secret"), [("OPENAI_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True), ("GITHUB_TOKEN", True),
                                              ("GH_PAT", True), ("MY_LLM_CREDENTIAL", True), ("KEYBOARD", False),
                                              ("PATH", False), ("HOME", False), ("LOOPKIT_LEDGER", False)])
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_the_test_keys_are_not_in_this_process_environment_by_accident() -> None:
    assert not any(v in SECRETS for v in os.environ.values())


# --- the ledger and the model boundary --------------------------------------------------------------

LEAKY_SPEC = """\
version: 1
name: leaky
model: {{id: openai/test-model, api_base: "{base}", api_key_env: FAKE_LLM_API_KEY,
         price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
task:
  prompt: "what is six times seven?"
inputs: [{{id: one}}]
checkers:
  - {{name: printer, type: command, run: 'echo "the key is $FAKE_LLM_API_KEY and also $SOME_SETTING"; exit 1',
     env: [FAKE_LLM_API_KEY, SOME_SETTING]}}
stop: {{max_iterations: 2}}
"""


def test_a_key_in_a_checkers_output_or_a_reply_is_neither_stored_nor_sent_back(
        fake_llm: FakeLLM, tmp_path: Path, cli_proc) -> None:
    """A command checker allowed to see the key prints it, and the model echoes it in a 200 reply: the
    feedback turn the provider receives, and every row of the ledger, carry [REDACTED] instead."""
    fake_llm.default = Reply(f"my answer quotes {WORKER_KEY}")
    (tmp_path / "spec.yaml").write_text(LEAKY_SPEC.format(base=fake_llm.base_url))

    done = cli_proc("run", "spec.yaml", "--json", env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr  # a failed case is no error without --fail-under
    run_id = json.loads(done.stdout)["runs"][0]["id"]
    shown = cli_proc("show", run_id, "--calls", env=ENV)
    assert shown.returncode == 0, shown.stderr

    assert len(fake_llm.requests) == 2
    feedback_turn = json.dumps(fake_llm.requests[1]["messages"])
    assert "the key is" in feedback_turn and MASK in feedback_turn, "the feedback was sent, scrubbed"
    assert MASK in shown.stdout and "the key is" in shown.stdout
    for secret in (WORKER_KEY, SHAPED):
        assert secret not in feedback_turn, "a key was sent to the provider as feedback"
        assert secret not in done.stdout + shown.stdout + done.stderr + shown.stderr
        for name, data in _files_under(tmp_path).items():
            assert secret.encode() not in data, f"{secret} written to {name}"


def test_skipping_the_key_patterns_on_texts_without_their_marks_changes_no_result():
    """`scrub` runs its key-shape patterns only on texts holding a substring they need; checked against
    running them always, on texts built from the patterns' own pieces and the letters `re` folds together."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from loopkit import redact

    def always(text: str) -> str:
        return redact._HEADER_PATTERN.sub(redact._mask_header, redact._KEY_PATTERN.sub(MASK, text))

    pieces = st.sampled_from(["sk-", "pk-", "rk-", "ghp_", "gho_", "github_pat_", "hf_", "xoxb-", "AIza", "AKIA", "ASIA",
                              "Bearer ", "BEARER", "x-api-key: ", "api_key=", "Api-Key\": \"", "apı_key=", "APİ_KEY=", "ApiKey",
                              "api_base", "API_KEY_ENV", "X-Api-Key ", "apikey:", "abcDEF123456", "A1b2C3d4E5f6G7h8", "0123456789ABCDEF", " ", "\"", ":", "=", "-", "_", "é", "ı", "İ"])

    token = "A1b2C3d4E5f6G7h8" * 2
    shapes = ["sk-", "sk-proj-", "pk-", "rk-", "ghp_", "ghr_", "github_pat_", "hf_", "xoxb-", "AIza", "AKIA", "ASIA",
              "Bearer ", "x-api-key: ", "X-API-KEY ", "api_key=", "apı_key=", "APİ_KEY=", "Api-Key\": \"",
              '"api_base": null, "api_key": "']

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(st.lists(pieces, min_size=1, max_size=12).map("".join),
                     st.tuples(st.sampled_from(shapes), st.sampled_from(["", "see: ", "é "])).map(
                         lambda t: t[1] + t[0] + (token.upper()[:16] if t[0] in ("AKIA", "ASIA") else token))))
    def same(text: str) -> None:
        assert redact.scrubber()(text) == (always(text) if len(text) >= 8 else text)

    same()
