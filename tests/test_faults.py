"""Faults loopkit must survive: 5xx storms, concurrent writers, Ctrl-C, kill -9, a ledger that cannot be
written, broken inputs (SPEC.md §2 "Interrupts and resume", "Inputs"; §3 exit codes).

Every test is bounded: processes run under timeouts, and waiting for a state means polling the
ledger with a deadline, never sleeping a fixed time and hoping.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest

import specs
from fake_llm import FakeLLM, Reply

LOOPKIT = str(Path(sys.executable).with_name("loopkit"))
KEY = "sk-faults-test-0123456789abcdef"
FINISHED = ("passed", "failed", "needs_review", "error")


def fake_spec(base_url: str, *, extra: str = "") -> str:
    return specs.fake_spec(base_url, name="faults", expected="42", extra=extra)


def write_fake_spec(tmp_path: Path, base_url: str, case_ids: list[str], **kw: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(fake_spec(base_url, **kw))
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps({"id": c}) + "\n" for c in case_ids))
    return spec


def env_for(db: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LOOPKIT_LEDGER": str(db), "TEST_KEY": KEY, **extra}


def query(db: Path, sql: str, args: tuple = ()) -> list[dict]:
    """Read the ledger as another process would, without taking a write lock."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def wait_until(check: Callable[[], bool], *, proc: subprocess.Popen | None = None, timeout: float = 60, what: str = "") -> None:
    """Poll `check` until it holds; fail at the deadline, or at once if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def start(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([LOOPKIT, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def killed_at_exit(proc: subprocess.Popen):
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


_SERVER_NOISE = re.compile(r"^-{40}\n.*?^-{40}\n", re.S | re.M)


def assert_no_traceback(text: str) -> None:
    """No traceback from loopkit (the in-process fake server's report of a client that hung up is not one)."""
    assert "Traceback" not in _SERVER_NOISE.sub("", text), text


def rows_per_case(db: Path, batch_id: str) -> Counter:
    """Every run row of the batch, whatever its status: "exactly once" counts rows, not finished runs."""
    rows = query(db, "SELECT case_id FROM runs WHERE batch_id=?", (batch_id,))
    return Counter(r["case_id"] for r in rows)


# --- a 5xx storm ----------------------------------------------------------------------------------


def test_a_5xx_storm_that_outlasts_the_retries_is_an_error_and_the_others_finish(fake_llm: FakeLLM, tmp_path: Path, cli) -> None:
    storm = [Reply(status=503, content="upstream overloaded"), Reply(status=500)]
    seen = Counter()

    def respond(body: dict) -> Reply | str:
        first = body["messages"][0]["content"]
        if "case storm:" in first:
            seen["storm"] += 1
            return storm[seen["storm"] % 2]
        return "42"

    fake_llm.responder = respond
    write_fake_spec(tmp_path, fake_llm.base_url, ["a", "b", "storm", "c", "d"])
    proc = cli("run", "spec.yaml", "--max-retries", "2", "--concurrency", "2", "--json", env={"TEST_KEY": KEY}, timeout=90)
    assert_no_traceback(proc.stderr)
    doc = json.loads(proc.stdout)
    statuses = {r["case_id"]: r["status"] for r in doc["runs"]}
    assert statuses == {"a": "passed", "b": "passed", "storm": "error", "c": "passed", "d": "passed"}
    assert seen["storm"] == 2, "--max-retries 2 means two attempts, then the run is an error"
    assert proc.returncode == 4
    assert doc["exit_code"] == 4 and doc["status"] == "done"
    storm_run = next(r for r in doc["runs"] if r["case_id"] == "storm")
    assert storm_run["stop_reason"] == "error"
    assert "upstream overloaded" in storm_run["message"]  # the last attempt's error
    db = tmp_path / "ledger.db"
    calls = query(db, "SELECT error, cost_usd FROM calls WHERE run_id=?", (storm_run["id"],))
    assert len(calls) == 1 and calls[0]["error"] and calls[0]["cost_usd"] == 0
    events = query(db, "SELECT kind, detail FROM events WHERE run_id=?", (storm_run["id"],))
    assert [e["kind"] for e in events] == ["error"] and json.loads(events[0]["detail"])["attempts"] == 2


# --- concurrent writers -----------------------------------------------------------------------------


# Scripted replies come back at once, so four processes commit iterations as fast as SQLite lets them.
BUSY = """\
version: 1
name: busy
model: {id: loopkit/scripted, replies: ["no", "{{ case.id }}"]}
task: {prompt: "say {{ case.id }}"}
inputs: busy.jsonl
checkers:
  - {name: echo, type: equals, expected: "{{ case.id }}"}
"""


def _four_writers(tmp_path: Path, db: Path) -> None:
    (tmp_path / "busy.yaml").write_text(BUSY)
    (tmp_path / "busy.jsonl").write_text("".join(json.dumps({"id": f"c{i}"}) + "\n" for i in range(25)))
    env = env_for(db)
    procs = [start(["run", "busy.yaml", "--no-cache", "--json", "--concurrency", "8", "--tag", f"proc={i}"], cwd=tmp_path, env=env)
             for i in range(4)]
    outputs = []
    for p in procs:
        with killed_at_exit(p):
            outputs.append(p.communicate(timeout=120))
    for p, (out, err) in zip(procs, outputs):
        assert "locked" not in err and "Traceback" not in err, err
        assert p.returncode == 0, err
        assert json.loads(out)["passed"] == 25
    batches = query(db, "SELECT id, status FROM batches")
    assert len(batches) == 4 and {b["status"] for b in batches} == {"done"}
    for b in batches:
        assert rows_per_case(db, b["id"]) == Counter({f"c{i}": 1 for i in range(25)})
    assert len(query(db, "SELECT run_id FROM iterations")) == 4 * 25 * 2
    assert len(query(db, "SELECT id FROM calls")) == 4 * 25 * 2


def test_four_processes_write_one_ledger_at_once(tmp_path: Path) -> None:
    from loopkit.ledger import Ledger

    db = tmp_path / "ledger.db"
    Ledger(db).close()  # the schema exists; the four processes only race to write runs
    _four_writers(tmp_path, db)


def test_four_processes_create_one_fresh_ledger_at_once(tmp_path: Path) -> None:
    _four_writers(tmp_path, tmp_path / "fresh" / "ledger.db")


# --- Ctrl-C and resume ----------------------------------------------------------------------------


def test_ctrl_c_mid_batch_exits_130_and_resume_runs_every_case_exactly_once(fake_llm: FakeLLM, tmp_path: Path, cli) -> None:
    fake_llm.queue(*["42"] * 4)  # four cases answer at once; every later call hangs until Ctrl-C cuts it off,
    fake_llm.default = Reply("42", latency=60)  # so the batch is surely still running when resume is tried
    ids = [f"c{i:02d}" for i in range(20)]
    write_fake_spec(tmp_path, fake_llm.base_url, ids)
    db = tmp_path / "ledger.db"
    proc = start(["run", "spec.yaml", "--concurrency", "2"], cwd=tmp_path, env=env_for(db))
    with killed_at_exit(proc):
        wait_until(lambda: len(query(db, "SELECT id FROM runs WHERE status='passed'")) >= 2, proc=proc, what="two finished runs")
        (batch,) = query(db, "SELECT id, status FROM batches")
        early = cli("resume", batch["id"], env={"TEST_KEY": KEY}, timeout=60)
        assert early.returncode == 2 and "still running" in early.stderr, early.stderr
        assert_no_traceback(early.stderr)
        assert proc.poll() is None, "the batch is still going"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)  # stopping at all is the behaviour; its speed is for bench/
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err
    (batch,) = query(db, "SELECT id, status FROM batches")
    assert batch["status"] == "interrupted"
    assert "resume" in err
    runs = query(db, "SELECT id, case_id, status, stop_reason FROM runs")
    assert not [r for r in runs if r["status"] == "running"]
    interrupted = [r for r in runs if r["status"] == "interrupted"]
    assert interrupted, "the runs in flight are marked interrupted"
    assert {r["stop_reason"] for r in interrupted} == {"interrupted"}
    done_before = sum(r["status"] in FINISHED for r in runs)
    assert done_before < 20

    fake_llm.default = Reply("42")
    resumed = cli("resume", batch["id"][:8], "--json", env={"TEST_KEY": KEY}, timeout=90)
    assert_no_traceback(resumed.stderr)
    assert resumed.returncode == 0, resumed.stderr
    resumed_doc = json.loads(resumed.stdout)
    assert resumed_doc["status"] == "done"
    assert resumed_doc["pass_rate"] == 1.0, "every row passed: the resumed batch says 100%, as show does"
    shown = json.loads(cli("show", batch["id"], "--json").stdout)
    assert shown["pass_rate"] == 1.0
    assert query(db, "SELECT status FROM batches WHERE kind='run'")[0]["status"] == "done"
    assert rows_per_case(db, batch["id"]) == Counter({i: 1 for i in ids})
    # Finished cases are not run (or paid for) again: 20 answers plus at most the 2 calls cut off in flight.
    assert 20 <= fake_llm.count <= 22
    after = {r["id"]: r["status"] for r in query(db, "SELECT id, status FROM runs")}
    assert all(after[r["id"]] == "passed" for r in interrupted), "an interrupted run is continued under its own id"
    assert query(db, "SELECT COUNT(DISTINCT batch_id) AS n FROM runs")[0]["n"] == 1


def test_kill_9_mid_batch_leaves_a_ledger_that_opens_and_resume_continues_from_the_last_iteration(
        fake_llm: FakeLLM, tmp_path: Path, cli) -> None:
    # Every case takes two iterations: a wrong answer, then the right one after feedback.
    fake_llm.responder = lambda body: Reply("42" if len(body["messages"]) > 1 else "41", latency=0.15)
    ids = [f"k{i}" for i in range(10)]
    write_fake_spec(tmp_path, fake_llm.base_url, ids)
    db = tmp_path / "ledger.db"
    proc = start(["run", "spec.yaml", "--concurrency", "2"], cwd=tmp_path, env=env_for(db))
    with killed_at_exit(proc):
        wait_until(lambda: len(query(db, "SELECT id FROM runs WHERE status='passed'")) >= 2
                   and len(query(db, "SELECT id FROM runs WHERE status='running' AND iterations=1")) >= 1,
                   proc=proc, what="two passed runs and one half-way")
        proc.kill()
        proc.communicate(timeout=10)  # reaped: its pid is really gone
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    (batch,) = query(db, "SELECT id, status FROM batches")
    assert batch["status"] == "running"  # nobody could mark it: a dead pid is what tells
    half_way = {r["id"]: r["case_id"] for r in query(db, "SELECT id, case_id FROM runs WHERE status='running' AND iterations=1")}
    assert half_way, "killed with a run between its two iterations"
    passed_before = len(query(db, "SELECT id FROM runs WHERE status='passed'"))
    listed = cli("runs", "--json")
    assert listed.returncode == 0, listed.stderr

    before = fake_llm.count
    fake_llm.default = Reply("42")
    resumed = cli("resume", batch["id"][:8], "--json", env={"TEST_KEY": KEY}, timeout=90)
    assert_no_traceback(resumed.stderr)
    assert resumed.returncode == 0, resumed.stderr
    assert query(db, "SELECT status FROM batches")[0]["status"] == "done"
    assert rows_per_case(db, batch["id"]) == Counter({i: 1 for i in ids})
    runs = {r["id"]: r for r in query(db, "SELECT id, status, iterations FROM runs")}
    for run_id in half_way:  # continued in place from its committed first iteration
        assert runs[run_id]["status"] == "passed" and runs[run_id]["iterations"] == 2
    iterations = query(db, "SELECT run_id, COUNT(*) AS n FROM iterations GROUP BY run_id")
    assert all(r["n"] <= 2 for r in iterations), "no iteration is recorded twice"
    # At most: one call per half-way run, two per case not started; none for finished cases.
    assert fake_llm.count - before <= len(half_way) + 2 * (len(ids) - passed_before - len(half_way))


def test_show_calls_a_batch_whose_process_died_interrupted(tmp_path: Path, cli) -> None:
    (tmp_path / "busy.yaml").write_text(BUSY)
    (tmp_path / "busy.jsonl").write_text('{"id": "a"}\n')
    batch_id = json.loads(cli("run", "busy.yaml", "--json").stdout)["batch_id"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: nothing has this pid now
    conn = sqlite3.connect(tmp_path / "ledger.db")
    with conn:  # what a kill -9 leaves behind
        conn.execute("UPDATE batches SET status='running', ended_at=NULL, pid=? WHERE id=?", (dead.pid, batch_id))
    conn.close()
    shown = cli("show", batch_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["batch"]["status"] == "interrupted"
    text = cli("show", batch_id).stdout
    assert "interrupted" in text and "resume" in text


# --- a ledger that cannot be written -------------------------------------------------------------


def _mount_tmpfs(target: Path, options: str) -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a tmpfs")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")


@pytest.fixture
def mounts():
    mounted: list[Path] = []

    def mount(target: Path, options: str) -> Path:
        _mount_tmpfs(target, options)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def _ledger_location(kind: str, tmp_path: Path, mounts) -> Path:  # noqa: ANN001
    if kind == "parent-is-a-file":
        (tmp_path / "plain-file").write_text("not a folder")
        return tmp_path / "plain-file" / "sub" / "ledger.db"
    if kind == "chmod-555":
        if os.geteuid() == 0:
            pytest.skip("root writes through a 0o555 folder; the read-only tmpfs case covers root")
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "ledger.db"
    if kind == "read-only-tmpfs":
        return mounts(tmp_path / "ro-mount", "ro,size=64k") / "ledger.db"
    if kind == "disk-full":
        full = mounts(tmp_path / "full-mount", "size=64k")
        try:  # fill the device to the last byte
            with open(full / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        except OSError:
            pass
        return full / "ledger.db"
    if kind == "disk-nearly-full":
        full = mounts(tmp_path / "nearly-full-mount", "size=256k")
        (full / "filler").write_bytes(b"\0" * 180 * 1024)  # room for the schema, not for the write probe
        return full / "ledger.db"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["parent-is-a-file", "chmod-555", "read-only-tmpfs", "disk-full", "disk-nearly-full"])
def test_a_ledger_that_cannot_be_written_is_one_line_exit_2_and_no_model_call(
        fake_llm: FakeLLM, tmp_path: Path, mounts, kind: str) -> None:  # noqa: ANN001
    fake_llm.default = Reply("42")
    write_fake_spec(tmp_path, fake_llm.base_url, ["a", "b"])
    ledger = _ledger_location(kind, tmp_path, mounts)
    try:
        proc = subprocess.run([LOOPKIT, "--ledger", str(ledger), "run", "spec.yaml", "--json"], cwd=tmp_path, env=env_for(ledger),
                              capture_output=True, text=True, timeout=60)
    finally:
        if kind == "chmod-555":
            (tmp_path / "ro").chmod(0o755)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["error"]["exit_code"] == 2  # under --json the error is the one document on stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {proc.stderr!r}"
    assert lines[0].startswith("error:") and str(ledger) in lines[0] and "ledger" in lines[0].split(str(ledger), 1)[1]
    if kind.startswith("disk"):
        assert "disk is full" in lines[0]
    assert fake_llm.count == 0, "nothing is paid for when the ledger cannot record it"


BIG = """\
version: 1
name: big
model: {id: loopkit/scripted, replies: ["{{ 'x' * 3000 }} {{ case.id }}"]}
task: {prompt: "case {{ case.id }}"}
inputs: big.jsonl
checkers:
  - {name: has, type: contains, expected: "{{ case.id }}"}
"""


def test_a_disk_that_fills_mid_batch_is_one_line_exit_2_and_resume_finishes_after_space_is_freed(
        tmp_path: Path, mounts, cli) -> None:  # noqa: ANN001
    disk = mounts(tmp_path / "small-disk", "size=400k")
    ids = [f"b{i:02d}" for i in range(40)]
    (tmp_path / "big.yaml").write_text(BIG)
    (tmp_path / "big.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in ids))
    db = disk / "ledger.db"
    full = cli("--ledger", str(db), "run", "big.yaml", "--concurrency", "4", "--json")
    assert "Traceback" not in full.stderr
    assert full.returncode == 2, full.stdout + full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk is full" in lines[0] and str(db) in lines[0], full.stderr

    conn = sqlite3.connect(db, timeout=10)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (batch_id,) = conn.execute("SELECT id FROM batches").fetchone()
        done_before = conn.execute("SELECT COUNT(*) FROM runs WHERE status='passed'").fetchone()[0]
    finally:
        conn.close()
    assert done_before < len(ids)

    grown = subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], capture_output=True, text=True, timeout=30)
    if grown.returncode != 0:
        pytest.skip(f"cannot grow the tmpfs to test resume ({grown.stderr.strip()})")
    resumed = cli("--ledger", str(db), "resume", batch_id[:8], "--json")
    assert "Traceback" not in resumed.stderr
    assert resumed.returncode == 0, resumed.stderr
    assert rows_per_case(db, batch_id) == Counter({i: 1 for i in ids})
    assert query(db, "SELECT status FROM batches")[0]["status"] == "done"


# --- broken inputs --------------------------------------------------------------------------------

SCRIPTED = """\
version: 1
name: inputs
model: {id: loopkit/scripted, replies: ["{{ case.x }}"]}
task: {prompt: "x is {{ case.x }}"}
inputs: INPUTS
checkers:
  - {name: x, type: equals, expected: "{{ case.x }}"}
"""

BROKEN_INPUTS = [
    pytest.param("bad.jsonl", b'{"x": 1}\n{"x": 2\n', "bad.jsonl:2", id="jsonl-bad-line"),
    pytest.param("list.jsonl", b'{"x": 1}\n\n[1, 2]\n', "list.jsonl:3", id="jsonl-not-an-object"),
    pytest.param("short.csv", b"x,y\n1,2\n3\n", "short.csv:3", id="csv-missing-column"),
    pytest.param("long.csv", b"x,y\n1,2\n3,4,5\n", "long.csv:3", id="csv-extra-value"),
    pytest.param("bad.yaml", b"- {x: 1}\n- {x: [\n", "bad.yaml:3", id="yaml-bad"),
    pytest.param("latin1.jsonl", b'{"x": 1}\n{"x": 2}\n{"x": "caf\xe9"}\n', "latin1.jsonl:3", id="jsonl-not-utf8"),
    pytest.param("latin1.csv", b"x,y\n1,2\ncaf\xe9,3\n", "latin1.csv:3", id="csv-not-utf8"),
]


@pytest.mark.parametrize(("name", "data", "where"), BROKEN_INPUTS)
def test_broken_inputs_are_exit_2_naming_file_and_line(tmp_path: Path, cli, name: str, data: bytes, where: str) -> None:
    (tmp_path / name).write_bytes(data)
    (tmp_path / "spec.yaml").write_text(SCRIPTED.replace("INPUTS", name))
    for args in (["run", "spec.yaml", "--json"], ["check", "spec.yaml"]):
        proc = cli(*args)
        assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert where in proc.stderr, (args, proc.stderr)
    assert not query(tmp_path / "ledger.db", "SELECT id FROM runs"), "no case runs before every case is read"
    # The same file given with --inputs
    (tmp_path / "spec.yaml").write_text(SCRIPTED.replace("INPUTS", "[{x: 1}]"))
    proc = cli("run", "spec.yaml", "--inputs", name)
    assert proc.returncode == 2 and where in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name,data", [("bom.csv", b"\xef\xbb\xbfx\n1\n2\n"), ("bom.jsonl", b'\xef\xbb\xbf{"x": 1}\n{"x": 2}\n')])
def test_a_utf8_byte_order_mark_is_not_part_of_the_data(tmp_path: Path, cli, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    (tmp_path / "spec.yaml").write_text(SCRIPTED.replace("INPUTS", name))
    proc = cli("run", "spec.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] == 2


@pytest.mark.parametrize("cases", [b'{"b": 1}\n', b"\n"], ids=["field-missing", "no-cases"])
def test_check_of_a_case_without_a_prompt_field_is_exit_2_naming_the_case(tmp_path: Path, cli, cases: bytes) -> None:
    (tmp_path / "cases.jsonl").write_bytes(cases)
    (tmp_path / "spec.yaml").write_text(SCRIPTED.replace("INPUTS", "cases.jsonl"))
    proc = cli("check", "spec.yaml")
    assert "Traceback" not in proc.stderr
    if cases.strip():  # `run` says: cases.jsonl: case '1': template uses an undefined value ... 'x'
        assert proc.returncode == 2 and "cases.jsonl" in proc.stderr and "'x'" in proc.stderr, proc.stderr
    else:  # no case at all: refused, so a CI gate cannot pass on nothing
        assert proc.returncode == 2 and "no cases" in proc.stderr, proc.stderr


def test_sigterm_and_resume_cycles_never_let_the_provider_bill_past_the_cap(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """Interrupted three times with calls in flight, then finished: every request the provider answered is
    billed (even those whose reply the client never read), and neither that bill nor the ledger passes the cap.
    A call cut off in flight is recorded at its reserved worst case, so the ledger never under-counts."""
    per_call = (1 * 1 + 50 * 2) / 1e6  # 1 prompt token at $1/M, max_tokens 50 at $2/M: the worst case, billed
    fake_llm.default = Reply("42", prompt_tokens=1, completion_tokens=50, latency=0.3)
    cap = 0.0015
    write_fake_spec(tmp_path, fake_llm.base_url, [f"c{i:02d}" for i in range(40)], extra=f"budget: {{total_usd: {cap}}}\n")
    db = tmp_path / "ledger.db"
    batch_id = None
    for cycle in range(3):
        args = ["run", "spec.yaml", "--concurrency", "4"] if batch_id is None else ["resume", batch_id, "--concurrency", "4"]
        before = fake_llm.count
        proc = start(args, cwd=tmp_path, env=env_for(db))
        with killed_at_exit(proc):
            wait_until(lambda: fake_llm.count >= before + 3 or proc.poll() is not None, proc=None, what="calls in flight")
            if proc.poll() is not None:
                break  # the cap was reached: nothing left to interrupt
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode in (130, 3), err
        assert_no_traceback(err)
        batch_id = batch_id or query(db, "SELECT id FROM batches WHERE kind='run'")[0]["id"]
    final = subprocess.run([LOOPKIT, "resume", batch_id], cwd=tmp_path, env=env_for(db), capture_output=True, text=True, timeout=120)
    assert final.returncode in (0, 3), final.stderr
    billed = fake_llm.count * per_call
    recorded = query(db, "SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM calls")[0]["usd"]
    assert billed <= cap + 1e-12, f"the provider billed ${billed:.6f} against a ${cap} cap"
    assert billed - 1e-12 <= recorded <= cap + 1e-12, f"ledger ${recorded:.6f}, billed ${billed:.6f}, cap ${cap}"
    assert rows_per_case(db, batch_id) and max(rows_per_case(db, batch_id).values()) == 1


# --- a ledger that can be read but not written ----------------------------------------------------


def _ledger_made_read_only(kind: str, tmp_path: Path, mounts) -> Path:  # noqa: ANN001
    """A ledger of three finished runs, then made read-only the way `kind` says."""
    if kind.startswith("chmod") and os.geteuid() == 0:
        pytest.skip("root reads and writes through file modes; the read-only mount cases cover root")
    folder = mounts(tmp_path / "ro-mount", "size=8m") if kind.startswith("mount") else tmp_path / "data"
    folder.mkdir(exist_ok=True)
    db = folder / "ledger.db"
    (tmp_path / "busy.yaml").write_text(BUSY)
    (tmp_path / "busy.jsonl").write_text("".join(json.dumps({"id": c}) + "\n" for c in "abc"))
    if kind == "mount-with-wal":  # the writer dies without closing: every row is still in the -wal only
        code = ("import os, sys\nfrom loopkit.cli import main\nsys.argv = ['loopkit', 'run', 'busy.yaml']\n"
                "try:\n    main()\nfinally:\n    os._exit(0)\n")
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_for(db), capture_output=True, timeout=60, check=True)
        assert Path(f"{db}-wal").stat().st_size > 0
    else:
        done = subprocess.run([LOOPKIT, "run", "busy.yaml"], cwd=tmp_path, env=env_for(db), capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert not Path(f"{db}-wal").exists(), "the last connection checkpointed and removed the -wal"
    if kind.startswith("mount"):
        ro = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True, timeout=30)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only ({ro.stderr.strip()})")
    elif kind == "chmod-file":
        db.chmod(0o444)
    else:
        folder.chmod(0o555)
    return db


@pytest.mark.parametrize("kind", ["mount-clean", "mount-with-wal", "chmod-file", "chmod-folder"])
def test_a_read_only_ledger_is_read_and_a_write_is_one_line_exit_2_before_any_call(
        fake_llm: FakeLLM, tmp_path: Path, mounts, kind: str) -> None:  # noqa: ANN001
    db = _ledger_made_read_only(kind, tmp_path, mounts)
    try:
        env = env_for(db)
        listed = subprocess.run([LOOPKIT, "runs", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        runs = json.loads(listed.stdout)
        assert sorted(r["case_id"] for r in runs) == ["a", "b", "c"], "every committed run, the -wal's included"
        shown = subprocess.run([LOOPKIT, "show", runs[0]["batch_id"], "--json"], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        cost = subprocess.run([LOOPKIT, "cost", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert cost.returncode == 0, cost.stderr
        assert json.loads(cost.stdout)["total"]["calls"] == 6

        fake_llm.default = Reply("42")
        write_fake_spec(tmp_path, fake_llm.base_url, ["x"])
        for args in (["run", "spec.yaml"], ["resume", runs[0]["batch_id"]], ["review"]):
            done = subprocess.run([LOOPKIT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert_no_traceback(done.stderr)
            assert done.returncode == 2, (args, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0] == (f"error: {db}: cannot write the ledger: the location is read-only; "
                                                    "pass --ledger PATH or set $LOOPKIT_LEDGER to a writable file"), lines
        assert fake_llm.count == 0, "nothing is paid for when the ledger cannot record it"
    finally:
        if kind == "chmod-file":
            db.chmod(0o644)
        elif kind == "chmod-folder":
            db.parent.chmod(0o755)


# --- a reader that stays open (issue #15) ---------------------------------------------------------

PARKED = BUSY.replace("name: busy", "name: parked").replace(
    "checkers:", "escalate:\n  - when: {iterations: 1}\n    human: look at it\ncheckers:")
PRICED = BUSY.replace("name: busy", "name: priced").replace(
    'replies: ["no", "{{ case.id }}"]}', 'replies: ["no", "{{ case.id }}"], price: {input_per_mtok: 1, output_per_mtok: 2}}'
    "\nparams: {max_tokens: 50}")

_FRESH = ("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n"
          "print(*(c.execute(f'SELECT count(*) FROM {t}').fetchone()[0] for t in ('batches', 'runs', 'iterations', 'calls')))")


def test_a_reader_that_stays_open_reads_every_kind_of_write_as_a_fresh_process_does(tmp_path: Path, cli) -> None:
    """Issue #15: a long-lived reader (Datasette, a dashboard) saw "database disk image is malformed" on
    every query after Ctrl-C + resume, budget-refused batches and scripted runs, while a fresh process
    read the file fine. A live connection reads stale pages once its -wal/-shm are deleted under it (a
    process that wrongly believed it was the last to close); so the -wal must stay the same file, and
    every reader must agree with a fresh process after every kind of write."""
    from loopkit.ledger import Ledger
    from loopkit.ledger.queries import list_runs

    db = tmp_path / "ledger.db"
    (tmp_path / "busy.yaml").write_text(BUSY)
    (tmp_path / "twin.yaml").write_text(BUSY.replace("name: busy", "name: twin"))
    (tmp_path / "parked.yaml").write_text(PARKED)
    (tmp_path / "priced.yaml").write_text(PRICED)
    (tmp_path / "busy.jsonl").write_text("".join(json.dumps({"id": f"c{i}"}) + "\n" for i in range(6)))
    (tmp_path / "many.jsonl").write_text("".join(json.dumps({"id": f"m{i}"}) + "\n" for i in range(3000)))
    env = env_for(db)

    def loopkit(*args: str, code: int = 0) -> None:
        done = subprocess.run([LOOPKIT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert_no_traceback(done.stderr)
        assert done.returncode == code, (args, done.stderr)

    loopkit("run", "busy.yaml")
    ledger = Ledger(db, readonly=True)
    plain = sqlite3.connect(db)
    uri = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    readers = {"Ledger(readonly=True)": ledger.conn, "sqlite3.connect": plain, "mode=ro": uri}
    wal = Path(f"{db}-wal")

    def counts(conn: sqlite3.Connection) -> list[int]:
        return [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("batches", "runs", "iterations", "calls")]

    for conn in readers.values():
        counts(conn)
    wal_inode = wal.stat().st_ino

    def check(after: str) -> None:
        fresh = subprocess.run([sys.executable, "-c", _FRESH, str(db)], capture_output=True, text=True, timeout=60, check=True)
        expected = [int(n) for n in fresh.stdout.split()]
        for name, conn in readers.items():
            assert counts(conn) == expected, f"{name} after {after}"
            conn.execute("SELECT max(length(output)), sum(cost_usd) FROM iterations").fetchone()
        assert len(list_runs(ledger, limit=10_000)) == expected[1]
        assert wal.stat().st_ino == wal_inode, f"the -wal was replaced under the readers by {after}"

    def stopped(sig: signal.Signals) -> str:
        """A long batch stopped by `sig` once the readers have seen it write; its batch id."""
        before = counts(plain)[1]
        proc = start(["run", "busy.yaml", "--inputs", "many.jsonl", "--no-cache", "--concurrency", "2"], cwd=tmp_path, env=env)
        with killed_at_exit(proc):
            wait_until(lambda: counts(ledger.conn)[1] >= before + 20, proc=proc, what="twenty runs seen by the reader")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
        return plain.execute("SELECT id FROM batches ORDER BY started_at DESC LIMIT 1").fetchone()[0]

    check("the readers opened")
    loopkit("run", "busy.yaml", "--no-cache")
    check("run")
    loopkit("run", "priced.yaml", "--no-cache", "--max-usd", "0.0000001", code=3)
    check("a budget-refused batch")
    loopkit("ab", "busy.yaml", "twin.yaml", "--no-cache")
    check("ab")
    loopkit("run", "parked.yaml", "--no-cache")
    check("a batch parked for review")
    parked = [r[0] for r in plain.execute("SELECT id FROM runs WHERE status='needs_review' ORDER BY id")]
    loopkit("review", parked[0], "--feedback", "try again")
    check("review --feedback")
    loopkit("review", parked[1], "--approve")
    check("review --approve")
    batch = stopped(signal.SIGINT)
    check("Ctrl-C")
    loopkit("resume", batch)
    check("resume after Ctrl-C")
    batch = stopped(signal.SIGKILL)
    check("kill -9")
    loopkit("resume", batch)
    check("resume after kill -9")
    for readonly in (False, True):  # the reader's own process opens and closes the ledger too, as a dashboard may
        Ledger(db, readonly=readonly).close()
    loopkit("run", "busy.yaml", "--no-cache")
    check("a run after this process opened the ledger itself")
    for conn in readers.values():
        conn.close()


def test_a_read_only_view_of_a_ledger_that_then_changes_says_so_instead_of_reading_stale_pages(
        tmp_path: Path, mounts) -> None:  # noqa: ANN001
    """A clean WAL ledger on a read-only mount can only be read as immutable (SQLite cannot create its
    -shm); a reader kept open across a write made through another mount must not read on as if
    nothing happened (stale pages are issue #15's "malformed")."""
    from loopkit.errors import LedgerError
    from loopkit.ledger import Ledger

    db = _ledger_made_read_only("mount-clean", tmp_path, mounts)
    reader = Ledger(db, readonly=True)
    assert len(reader.query("SELECT id FROM runs")) == 3
    rw = subprocess.run(["mount", "-o", "remount,rw", str(db.parent)], capture_output=True, text=True, timeout=30)
    if rw.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-write ({rw.stderr.strip()})")
    done = subprocess.run([LOOPKIT, "run", "busy.yaml", "--no-cache"], cwd=tmp_path, env=env_for(db), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with pytest.raises(LedgerError, match="changed since it was opened read-only"):
        reader.query("SELECT id FROM runs")
    reader.close()
    with Ledger(db, readonly=True) as fresh:
        assert len(fresh.query("SELECT id FROM runs")) == 6
