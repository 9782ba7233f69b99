"""`--engine ray`: the scheduler on a fake executor (fast), then a real local Ray (started once for the module):
every case recorded exactly once, the batch cap held across workers, a worker killed mid-case, Ctrl-C then
resume. Figures come from the ledger (rows counted), never from timings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import specs
from fake_llm import Reply
from loopkit.inputs import Case
from loopkit.ray_engine.scheduler import REFUSED, CaseTask, Scheduler, Shipped
from loopkit.records import IterationRecord, RunInfo, RunResult, RunState
from loopkit.status import RunStatus, StopReason

# Every real-Ray test shares the module's one local Ray: with `pytest -n auto --dist loadgroup` they stay on one
# xdist worker, so the suite starts Ray once (other --dist modes ignore the mark).
pytestmark = pytest.mark.xdist_group("ray")

# --- the scheduler on a fake executor ----------------------------------------------------------------


class Lost(Exception):
    """The fake's stand-in for Ray's ActorDiedError."""


def step(task: CaseTask, n: int, status: RunStatus) -> Shipped:
    """Iteration `n` of the task's run, as a worker's recorder ships it."""
    state = RunState(iterations=n, rewards=[0.0] * (n - 1) + [1.0 if status == RunStatus.PASSED else 0.0])
    result = RunResult(task.run_id, status, StopReason.PASSED if status == RunStatus.PASSED else None,
                       status == RunStatus.PASSED, 1.0, n, n, "out", 0.0, 0, 0, state)
    start = RunInfo(task.run_id, "b", "h", "s", task.case.id, task.case.data) if n == 1 else None
    return Shipped(result, IterationRecord(n, "m", "out", 1.0, True, "", 0.0, 0, 0, 0.0, []), [], [], start)


class FakeExecutor:
    """Runs each case in two iterations. `lose` maps a case id to how often its worker dies after iteration 1;
    `refuse` is a case id whose first call the batch budget refuses; `hang` cases wait until interrupted."""

    def __init__(self, *, lose: dict[str, int] | None = None, refuse: str | None = None, hang: bool = False) -> None:
        self.lose = dict(lose or {})
        self.refuse = refuse
        self.hang = hang
        self.started: list[tuple[str, int]] = []  # (case id, iterations it started from)
        self.in_flight = 0
        self.most_in_flight = 0
        self.released: list[str] = []
        self.interrupted = asyncio.Event()

    async def run(self, task: CaseTask) -> AsyncIterator[list[Shipped] | str]:
        done = task.state.iterations if task.state else 0
        self.started.append((task.case.id, done))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if task.case.id == self.refuse:
                yield REFUSED
                return
            if done == 0:
                yield [step(task, 1, RunStatus.RUNNING)]
            if self.lose.get(task.case.id):
                self.lose[task.case.id] -= 1
                raise Lost()
            if self.hang:
                await self.interrupted.wait()
                yield [step(task, 2, RunStatus.INTERRUPTED)] if task.case.id == "1" else []
                return
            yield [step(task, 2, RunStatus.PASSED)]
        finally:
            self.in_flight -= 1

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, Lost)

    async def release(self, task: CaseTask) -> None:
        self.released.append(task.case.id)

    async def interrupt(self) -> None:
        self.interrupted.set()


def schedule(executor: FakeExecutor, cases: int, *, window: int = 3, drawn: list[int] | None = None) -> tuple[Scheduler, list[Shipped]]:
    """A scheduler over `cases` tasks; `drawn` gets how many cases were in flight as each task was drawn."""
    committed: list[Shipped] = []
    scheduler = Scheduler(executor, window=window, commit=committed.append,
                          info=lambda t: RunInfo(t.run_id, "b", "h", "s", t.case.id, t.case.data), drain_seconds=1.0)

    def tasks():
        for i in range(1, cases + 1):
            if drawn is not None:
                drawn.append(len(scheduler.running))
            yield CaseTask(Case(str(i), {"n": i}), 0, f"run{i}")

    scheduler.tasks = tasks()  # type: ignore[attr-defined]
    return scheduler, committed


def iterations_of(committed: list[Shipped]) -> list[tuple[str, int]]:
    return sorted((s.result.run_id, s.iteration.n) for s in committed if s.iteration is not None)


def test_every_case_is_committed_once_within_the_window_and_cases_are_drawn_as_it_frees():
    executor = FakeExecutor()
    drawn: list[int] = []
    scheduler, committed = schedule(executor, 20, window=3, drawn=drawn)
    asyncio.run(scheduler.drive(scheduler.tasks))
    assert iterations_of(committed) == sorted((f"run{i}", n) for i in range(1, 21) for n in (1, 2))
    assert executor.most_in_flight <= 3
    assert len(drawn) == 20 and not scheduler.refused
    assert max(drawn) < 3  # a task is drawn only once the window has room for it (an A/B test decides late)


def test_a_lost_worker_retries_the_case_from_its_last_committed_iteration_under_the_same_run():
    executor = FakeExecutor(lose={"2": 1})
    scheduler, committed = schedule(executor, 4)
    asyncio.run(scheduler.drive(scheduler.tasks))
    assert [s for s in executor.started if s[0] == "2"] == [("2", 0), ("2", 1)]  # the retry starts after iteration 1
    assert [s.iteration.n for s in committed if s.result.run_id == "run2"] == [1, 2]  # each once
    assert [s for s in committed if s.result.run_id == "run2"][-1].result.status == RunStatus.PASSED
    assert executor.released == ["2"]  # its reservations were charged and freed before the retry


def test_a_case_whose_worker_keeps_dying_ends_in_error_instead_of_looping():
    executor = FakeExecutor(lose={"1": 99})
    scheduler, committed = schedule(executor, 2)
    asyncio.run(scheduler.drive(scheduler.tasks))
    last = [s for s in committed if s.result.run_id == "run1"][-1]
    assert last.result.status == RunStatus.ERROR and "lost 3 times" in (last.result.message or "")
    assert len([s for s in executor.started if s[0] == "1"]) == 3


def test_a_refused_case_stops_the_batch_from_starting_more():
    executor = FakeExecutor(refuse="1")
    scheduler, committed = schedule(executor, 10, window=1)
    asyncio.run(scheduler.drive(scheduler.tasks))
    assert not committed and scheduler.refused == 10  # not written as runs; counted as kept from running
    assert [s[0] for s in executor.started] == ["1"]


def test_ctrl_c_drains_the_last_steps_and_marks_runs_without_one_interrupted():
    executor = FakeExecutor(hang=True)
    scheduler, committed = schedule(executor, 5, window=3)

    async def main() -> None:
        drive = asyncio.create_task(scheduler.drive(scheduler.tasks))
        while len(committed) < 3:  # the three cases in flight committed iteration 1
            await asyncio.sleep(0)
        drive.cancel()
        with pytest.raises(asyncio.CancelledError):
            await drive

    asyncio.run(main())
    final = {s.result.run_id: s.result.status for s in committed}
    assert final == {"run1": RunStatus.INTERRUPTED, "run2": RunStatus.INTERRUPTED, "run3": RunStatus.INTERRUPTED}
    assert [s.iteration.n for s in committed if s.result.run_id == "run1" and s.iteration] == [1, 2]  # its own last step arrived
    assert [s.iteration for s in committed if s.result.run_id == "run2"][-1] is None  # marked by the driver


def test_a_lost_runs_reservations_are_charged_at_their_worst_case_and_its_late_settle_is_ignored():
    """The budget actor's bookkeeping (plain class here): a worker gone mid-call may still be billed."""
    from loopkit.ray_engine.actors import BudgetActor

    budget = BudgetActor(cap=1.0, spent=0.0)

    async def main() -> None:
        assert (await budget.reserve("run1", 0.3, None))[0] is True
        assert (await budget.reserve("run2", 0.2, None))[0] is True
        budget.settle("run2", 0.2, 0.05)
        assert budget.release("run1") == 0.3
        budget.settle("run1", 0.3, 0.01)  # its worker's settle arriving after all: already charged
        admitted, remaining, _ = await budget.reserve("run3", 0.7, None)
        assert admitted is False and remaining == pytest.approx(0.65)  # 0.3 + 0.05 spent: 0.7 no longer fits

    asyncio.run(main())
    assert budget.pool.spent == pytest.approx(0.35) and budget.pool.reserved == 0.0


class Handle:
    """A plain object as an actor handle in this event loop: `handle.method.remote(*args)` starts the method as a
    task and returns a ref that, like Ray's, can be awaited again and is not cancelled with its awaiter."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __getattr__(self, name: str):
        method = getattr(self.obj, name)

        class Ref:
            def __init__(self, task: asyncio.Future) -> None:
                self.task = task

            def __await__(self):
                return asyncio.shield(self.task).__await__()

        class Method:
            @staticmethod
            def remote(*args: object) -> Ref:
                async def call() -> object:
                    result = method(*args)
                    return await result if asyncio.iscoroutine(result) else result

                return Ref(asyncio.ensure_future(call()))

        return Method


def test_a_rate_limit_seen_by_one_worker_lowers_the_limit_every_worker_waits_on():
    """One adaptive limit per model for the cluster: a 429 on worker 1 halves what worker 2 may have in flight."""
    from loopkit.ray_engine.actors import LimiterActor
    from loopkit.ray_engine.proxies import SharedLimit

    limiter = LimiterActor(concurrency=4)

    async def main() -> None:
        one, two = (SharedLimit(Handle(limiter), "model", worker) for worker in ("w1", "w2"))
        one.rate_limited()
        await asyncio.sleep(0)
        assert limiter.limit("model") == 2.0
        await one.__aenter__()
        await two.__aenter__()  # the two slots left of four
        third = asyncio.ensure_future(two.__aenter__())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not third.done()  # worker 2 waits on worker 1's 429
        await one.__aexit__(None, None, None)
        await third
        await limiter.forget("w2")  # worker 2 lost while holding both: its slots come back
        assert limiter.limits["model"]._in_flight == 0

    asyncio.run(main())


def test_a_wait_for_a_model_slot_cut_off_by_the_cases_deadline_gives_the_slot_back_once_granted():
    from loopkit.ray_engine.actors import LimiterActor
    from loopkit.ray_engine.proxies import SharedLimit

    limiter = LimiterActor(concurrency=1)

    async def main() -> None:
        holder, waiter = SharedLimit(Handle(limiter), "model", "w1"), SharedLimit(Handle(limiter), "model", "w2")
        await holder.__aenter__()
        waiting = asyncio.ensure_future(waiter.__aenter__())
        for _ in range(5):
            await asyncio.sleep(0)
        waiting.cancel()  # what asyncio.wait_for does at the case's deadline
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await holder.__aexit__(None, None, None)
        for _ in range(10):  # the actor grants the slot to the cut-off wait, which hands it straight back
            await asyncio.sleep(0)
        assert limiter.limits["model"]._in_flight == 0 and not any(limiter.holding.get("w2", {}).values())

    asyncio.run(main())


# --- without Ray installed ----------------------------------------------------------------------------


def test_engine_ray_without_ray_names_the_extra(cli, write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    write_spec(SPEC.format(replies='["x"]', extra=""))
    proc = cli("run", "spec.yaml", "--engine", "ray")
    assert proc.returncode == 2
    assert "pip install 'loopkit[ray]'" in proc.stderr and "Traceback" not in proc.stderr


def test_ab_and_resume_with_engine_ray_without_ray_name_the_extra_before_anything_else(cli, write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    write_spec(SPEC.format(replies='["x"]', extra=""), name="a.yaml")
    write_spec(SPEC.format(replies='["y"]', extra=""), name="b.yaml")
    for args in (["ab", "a.yaml", "b.yaml"], ["resume", "no-such-batch"]):
        proc = cli(*args, "--engine", "ray")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == "error: --engine ray needs Ray: pip install 'loopkit[ray]'"


def test_address_without_the_ray_engine_is_a_usage_error(cli, write_spec):
    write_spec(SPEC.format(replies='["x"]', extra=""))
    proc = cli("run", "spec.yaml", "--address", "auto")
    assert proc.returncode == 2 and "--engine ray" in proc.stderr


def test_an_address_where_nothing_listens_is_one_line_before_anything_is_recorded(cli, write_spec, tmp_path):
    """Ray itself retries a dead address for minutes; loopkit answers at once, and records no batch."""
    import socket

    pytest.importorskip("ray")
    from test_fleet import write_fleet, write_loop

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    write_spec(SPEC.format(replies='["x"]', extra=""))
    write_spec(SPEC.format(replies='["y"]', extra=""), name="b.yaml")
    cases(tmp_path, 2)
    write_loop(tmp_path, "triage", ["yes"])
    write_fleet(tmp_path, "budget: {usd_per_day: 1}\nloops:\n  - {spec: triage.yaml}\n")
    for args in (["run", "spec.yaml"], ["ab", "spec.yaml", "b.yaml"], ["fleet", "run", "fleet.yaml"]):
        proc = cli(*args, "--engine", "ray", "--address", dead)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().startswith(f"error: --address {dead}: could not join Ray: nothing answers there")
    assert rows(tmp_path / "ledger.db", "select count(*) from batches") == [(0,)]


def test_the_folder_shipped_holds_every_spec_unless_that_means_the_whole_disk_or_home(tmp_path, monkeypatch):
    """With --address one folder is shipped: for a fleet file in examples/ whose loops are in ../loops, their
    parent, so every spec keeps its relative path on the workers; never `/` or a folder holding home."""
    from test_fleet import write_loop

    from loopkit.fleet.load import load_fleet
    from loopkit.fleet.runner import FleetRun
    from loopkit.ledger import Ledger
    from loopkit.ray_engine.driver import common_folder

    monkeypatch.setenv("HOME", "/nonexistent/home/me")
    (tmp_path / "examples").mkdir()
    (tmp_path / "loops").mkdir()
    write_loop(tmp_path / "loops", "triage", ["yes"])
    (tmp_path / "examples" / "fleet.yaml").write_text("budget: {usd_per_day: 1}\nloops:\n  - {spec: ../loops/triage.yaml}\n")
    fleet = FleetRun(load_fleet(tmp_path / "examples" / "fleet.yaml"), Ledger(tmp_path / "ledger.db"))
    assert fleet.shipped_folder == tmp_path.resolve()
    assert common_folder([tmp_path / "loops"]) == (tmp_path / "loops").resolve()
    assert common_folder([Path("/srv/a"), Path("/opt/b")]) == Path("/srv/a")
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "me"))
    assert common_folder([tmp_path / "home" / "me" / "a", tmp_path / "home" / "me" / "b"]) == (tmp_path / "home" / "me" / "a").resolve()
    assert common_folder([]) is None


# --- a real local Ray -----------------------------------------------------------------------------------

SPEC = """\
version: 1
name: doubling
model: {{id: loopkit/scripted, replies: {replies}, price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
params: {{max_tokens: 20}}
task:
  prompt: "Double {{{{ case.n }}}}"
inputs: cases.jsonl
checkers:
  - {{name: exact, type: equals, expected: "{{{{ case.n * 2 }}}}"}}
{extra}"""
TWO_TRIES = '["wrong {{ case.n }}", "{{ case.n * 2 }}"]'


def cases(folder: Path, n: int) -> None:
    (folder / "cases.jsonl").write_text("".join(json.dumps({"id": str(i), "n": i}) + "\n" for i in range(1, n + 1)))


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray (2 CPUs) for every test below; stopped after the last."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_every_case_is_recorded_exactly_once(ray_cluster, cli, write_spec, tmp_path):
    write_spec(SPEC.format(replies=TWO_TRIES, extra=""))
    cases(tmp_path, 30)
    proc = cli("run", "spec.yaml", "--engine", "ray", "--concurrency", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "ledger.db"
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT case_id) FROM runs") == [(30, 30)]
    assert rows(db, "SELECT COUNT(*) FROM iterations") == [(60,)]
    assert rows(db, "SELECT COUNT(*) FROM calls") == [(60,)]
    assert rows(db, "SELECT DISTINCT status FROM runs") == [("passed",)]
    assert json.loads(proc.stdout)["passed"] == 30


def test_a_worker_killed_mid_case_leaves_each_case_once_and_the_cap_holds(ray_cluster, write_spec, tmp_path):
    """Case 1's checker kills its worker (SIGKILL to the actor's process) once, in iteration 2: the case
    runs again on another worker from iteration 2, and the batch cap still holds over every worker."""
    from loopkit.api import run_batch
    from loopkit.batch import BatchOptions
    from loopkit.ledger import Ledger
    from loopkit.ray_engine import engine_for
    from loopkit.spec import load_spec

    marker = tmp_path / "killed"
    kill = (f'  - {{name: node_loss, type: command, run: "if [ \\"$LOOPKIT_OUTPUT\\" = 2 ] && [ ! -e {marker} ]; '
            f'then touch {marker}; kill -9 $PPID; fi"}}\n')
    cap = 0.0006  # about half of the 24 cases' two iterations
    cases(tmp_path, 24)
    spec = load_spec(write_spec(SPEC.format(replies=TWO_TRIES, extra=kill + f"budget: {{total_usd: {cap}}}\n")))
    ledger = Ledger(tmp_path / "ledger.db")
    result = run_batch(spec, ledger=ledger, options=BatchOptions(concurrency=4), engine=engine_for("ray"))

    db = tmp_path / "ledger.db"
    assert marker.exists()  # the worker really was killed
    per_case = rows(db, "SELECT case_id, COUNT(*) FROM runs GROUP BY case_id")
    assert per_case and all(n == 1 for _, n in per_case)
    assert ("1", 1) in per_case
    assert rows(db, "SELECT n FROM iterations i JOIN runs r ON r.id = i.run_id WHERE r.case_id = '1' ORDER BY n") == [(1,), (2,)]
    assert rows(db, "SELECT COUNT(*) FROM calls c JOIN runs r ON r.id = c.run_id WHERE r.case_id = '1'") == [(2,)]
    recorded = rows(db, "SELECT COALESCE(SUM(cost_usd), 0) FROM calls")[0][0]
    assert 0 < recorded <= cap
    assert result.refused > 0 and result.exit_code(None) == 3
    assert rows(db, "SELECT COUNT(*) FROM runs WHERE status NOT IN ('passed', 'failed')") == [(0,)]  # failed: its budget stop


def test_sigint_of_the_driver_marks_runs_interrupted_and_resume_finishes(ray_cluster, fake_llm, tmp_path, tmp_path_factory):
    """A separate driver process joins the module's Ray (--address: the spec's folder is shipped). The fake
    server answers every first iteration wrong at once and holds every second one for a minute, so with two
    cases in flight both are certainly mid-iteration-2 when the SIGINT lands: the ledger shows their
    iteration 1 and the server their second call before the signal is sent (polled, not slept)."""
    from test_faults import killed_at_exit, query, wait_until

    def held(body: dict) -> Reply:  # by the request, not by arrival order: the two workers race
        return Reply("41") if len(body["messages"]) == 1 else Reply("42", latency=60)

    fake_llm.responder = held
    cap = 0.01
    (tmp_path / "spec.yaml").write_text(specs.fake_spec(fake_llm.base_url, name="sigint").replace(" api_key_env: TEST_KEY,", "")
                                        + f"budget: {{total_usd: {cap}}}\n")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps({"id": f"c{i}"}) + "\n" for i in range(6)))
    db = tmp_path_factory.mktemp("ledger") / "ledger.db"  # outside the shipped folder
    exe = Path(sys.executable).with_name("loopkit")
    env = {**os.environ, "LOOPKIT_LEDGER": str(db)}
    args = ["--engine", "ray", "--address", ray_cluster, "--json"]
    driver = subprocess.Popen([str(exe), "run", "spec.yaml", "--concurrency", "2", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with killed_at_exit(driver):
        wait_until(lambda: len(query(db, "SELECT id FROM runs WHERE status = 'running'")) == 2 and fake_llm.count == 4,
                   proc=driver, timeout=120, what="two runs held in iteration 2")
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-2000:]

    (batch_id, status), = rows(db, "SELECT id, status FROM batches WHERE kind = 'run'")
    assert status == "interrupted"
    assert rows(db, "SELECT status, COUNT(*) FROM runs GROUP BY status") == [("interrupted", 2)]
    assert rows(db, "SELECT COUNT(*) FROM iterations") == [(2,)]  # each interrupted run's iteration 1, once

    fake_llm.responder = None  # every call now answers 42 at once
    fake_llm.default = Reply("42")
    from loopkit.api import resume
    from loopkit.ledger import Ledger

    # Resumed locally, as the README says a batch stopped on Ray may be (ab's test resumes one on Ray);
    # this also spares a Ray worker's import of litellm, seconds of CPU.
    result = resume(batch_id, ledger=Ledger(db))
    assert result.exit_code(None) == 0
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT case_id) FROM runs") == [(6, 6)]
    assert rows(db, "SELECT DISTINCT status FROM runs") == [("passed",)]
    assert rows(db, "SELECT status FROM batches WHERE id = ?", batch_id) == [("done",)]
    # Resume continued the two interrupted runs at iteration 2 and ran the four others once: 4 + 2 + 4 calls.
    assert fake_llm.count == 10
    assert rows(db, "SELECT COUNT(*) FROM iterations") == [(8,)]
    assert 0 < rows(db, "SELECT SUM(cost_usd) FROM calls")[0][0] <= cap


# --- loopkit ab on Ray: the same schedule, each run on a worker -----------------------------------------


def ab_runs(db: Path, batch_id: str) -> list[tuple]:
    """An A/B batch's runs in the order they started: case, variant, repeat, status, iterations."""
    return rows(db, "SELECT case_id, variant, repeat, status, iterations FROM runs WHERE batch_id = ? ORDER BY started_at, rowid",
                batch_id)


def test_the_budget_and_limiter_actors_live_on_the_drivers_node(ray_cluster):
    """Losing a worker node must not lose the batch's pool: its actors are pinned (not softly) where the driver is."""
    import ray

    from loopkit.ray_engine.driver import driver_side

    here = ray.get_runtime_context().get_node_id()
    options = driver_side(here)
    assert options["num_cpus"] == 0
    assert options["scheduling_strategy"].node_id == here and options["scheduling_strategy"].soft is False
    assert driver_side(None) == {"num_cpus": 0}  # Ray Client: the driver is not on the cluster


def test_ab_on_ray_runs_the_same_pairs_in_the_same_order_to_the_same_early_verdict(ray_cluster, cli, write_spec, tmp_path):
    """One run at a time, so the early stop falls after the same case on both engines: same runs, same order
    (pairs back to back, the seed's first variant), same verdict. `--engine ray` uses the Ray already running."""
    from test_ab import RIGHT, SOMETIMES, variant

    from loopkit.ab import ABOptions, run_ab
    from loopkit.ledger import Ledger
    from loopkit.spec import load_spec

    a = write_spec(variant("baseline", SOMETIMES, cases=40), name="a.yaml")
    b = write_spec(variant("candidate", RIGHT, cases=40), name="b.yaml")
    local = run_ab(load_spec(a), load_spec(b), ledger=Ledger(tmp_path / "local.db"), options=ABOptions(concurrency=1, seed=7))
    done = cli("ab", "a.yaml", "b.yaml", "--engine", "ray", "--concurrency", "1", "--seed", "7", "--json")
    assert done.returncode == 0, done.stderr
    remote = json.loads(done.stdout)
    assert remote["stopped_early"] and local["stopped_early"] and remote["pairs_run"] == local["pairs_run"] < 40
    assert remote["verdict"] == local["verdict"] and remote["verdict"]["winner_variant"] == "B"
    assert ab_runs(tmp_path / "ledger.db", remote["batch_id"]) == ab_runs(tmp_path / "local.db", local["batch_id"])


def test_ab_on_ray_without_early_stop_runs_every_pair_once_with_the_verdict_of_the_asyncio_engine(ray_cluster, write_spec, tmp_path):
    from test_ab import RIGHT, SOMETIMES, variant

    from loopkit.ab import ABOptions, run_ab
    from loopkit.ledger import Ledger
    from loopkit.ray_engine import engine_for
    from loopkit.spec import load_spec

    a = load_spec(write_spec(variant("baseline", SOMETIMES, cases=12), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", RIGHT, cases=12), name="b.yaml"))
    options = ABOptions(concurrency=4, repeat=2, seed=3, early_stop=False)
    local = run_ab(a, b, ledger=Ledger(tmp_path / "local.db"), options=options)
    remote = run_ab(a, b, ledger=Ledger(tmp_path / "ray.db"), options=options, engine=engine_for("ray"))
    assert remote["pairs_run"] == local["pairs_run"] == 24 and remote["verdict"] == local["verdict"]
    assert sorted(ab_runs(tmp_path / "ray.db", remote["batch_id"])) == sorted(ab_runs(tmp_path / "local.db", local["batch_id"]))
    assert rows(tmp_path / "ray.db", "SELECT COUNT(*), COUNT(DISTINCT case_id || variant || repeat) FROM runs") == [(48, 48)]


def test_ctrl_c_of_ab_on_ray_marks_it_interrupted_and_resume_on_ray_runs_no_finished_run_again(ray_cluster, cli, write_spec,
                                                                                                tmp_path, monkeypatch):
    from test_ab import RIGHT, SOMETIMES, variant

    from loopkit.ab import ABOptions, ABTest
    from loopkit.ab_report import ab_report
    from loopkit.ledger import Ledger
    from loopkit.ray_engine import engine_for
    from loopkit.spec import load_spec

    a = load_spec(write_spec(variant("baseline", SOMETIMES, cases=10), name="a.yaml"))
    b = load_spec(write_spec(variant("candidate", RIGHT, cases=10), name="b.yaml"))
    ledger = Ledger(tmp_path / "ledger.db")
    test = ABTest(a, b, ledger, ABOptions(concurrency=2, early_stop=False, seed=5), engine=engine_for("ray"))
    step, finished = test._step, []

    def ctrl_c_at_the_seventh_finished_run(shipped) -> None:
        step(shipped)
        if shipped.result.status != "running":
            finished.append(shipped.result.run_id)
            if len(finished) == 7:
                signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers; the batch's handler cancels it

    monkeypatch.setattr(test, "_step", ctrl_c_at_the_seventh_finished_run)
    with pytest.raises(KeyboardInterrupt):
        test.run()
    assert ledger.batch(test.batch_id)["status"] == "interrupted"
    assert rows(tmp_path / "ledger.db", "SELECT COUNT(*) FROM runs WHERE status = 'running'") == [(0,)]
    calls_before = dict(rows(tmp_path / "ledger.db", "SELECT r.id, COUNT(c.id) FROM runs r JOIN calls c ON c.run_id = r.id "
                                                      "WHERE r.status IN ('passed', 'failed') GROUP BY r.id"))
    assert 7 <= len(calls_before) < 20

    done = cli("resume", test.batch_id[:10], "--engine", "ray", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "done" and report["cases_run"] == 10 and report == ab_report(ledger, test.batch_id)
    assert rows(tmp_path / "ledger.db", "SELECT COUNT(*), COUNT(DISTINCT case_id || variant) FROM runs") == [(20, 20)]
    after = dict(rows(tmp_path / "ledger.db", "SELECT r.id, COUNT(c.id) FROM runs r JOIN calls c ON c.run_id = r.id GROUP BY r.id"))
    assert {run: after[run] for run in calls_before} == calls_before  # no new call for a run that had finished


# --- a fleet on Ray ----------------------------------------------------------------------------------------


def test_a_fleets_pools_actor_charges_each_runs_chain_and_forgets_it_only_once_nothing_is_held():
    """The pools a fleet's runs reserve from, behind the driver's actor (a plain class here): a loop's share
    refuses before the total does, a settle arriving after the driver closed the run still counts, and a new
    day's pool serves only the runs opened after it."""
    from loopkit.ray_engine.actors import FleetBudgetActor

    chain = [("share", "a\x00share"), ("day", "day"), ("total", "total")]
    actor = FleetBudgetActor({"a\x00share": (0.10, 0.0), "day": (1.0, 0.0), "total": (5.0, 4.0)})

    async def scenario() -> None:
        actor.open("r1", chain)
        assert (await actor.reserve("r1", 0.08, None))[0] is True
        assert actor.close("r1") is None  # the driver saw the run end before its worker's settle arrived
        actor.settle("r1", 0.08, 0.05)
        assert "r1" not in actor.chains and actor.pools["a\x00share"].spent == 0.05 and actor.pools["total"].spent == 4.05
        actor.open("r2", chain)
        assert (await actor.reserve("r2", 0.06, None))[0] is False  # 0.05 + 0.06 > the share's 0.10
        assert actor.close("r2") == "share"
        actor.open("r3", chain)
        actor.reset({"day": (1.0, 0.0)})  # midnight
        actor.open("r4", chain)
        assert (await actor.reserve("r3", 0.01, None))[0] and (await actor.reserve("r4", 0.01, None))[0]
        actor.settle("r3", 0.01, 0.01)
        actor.settle("r4", 0.01, 0.01)
        assert actor.chains["r3"].pools[1].pool.spent == pytest.approx(0.06) and actor.pools["day"].spent == 0.01
        assert actor.release("r3") == 0.0  # nothing of it held any more

    asyncio.run(scenario())


def test_a_limiter_key_with_its_own_ceiling_uses_it():
    from loopkit.ray_engine.actors import LimiterActor

    limiter = LimiterActor(16, {"openai": 3})
    assert (limiter.limit("openai"), limiter.limit("anthropic")) == (3, 16)


def test_fleet_address_without_the_ray_engine_is_a_usage_error(cli, tmp_path):
    from test_fleet import write_fleet, write_loop

    write_loop(tmp_path, "triage", ["yes"])
    write_fleet(tmp_path, "budget: {usd_per_day: 1}\nloops:\n  - {spec: triage.yaml}\n")
    proc = cli("fleet", "run", "fleet.yaml", "--address", "auto")
    assert proc.returncode == 2 and "--engine ray" in proc.stderr


def test_a_fleet_on_ray_runs_each_case_once_within_its_share_across_a_lost_worker(ray_cluster, cli, tmp_path):
    """Two loops on Ray: the capped loop's share holds (counted from the calls table) although its first case's
    worker is killed mid-case, the other loop runs every case, and a rerun on Ray runs no finished case again."""
    from test_fleet import loop_runs, loop_spend, run, share_fleet

    from loopkit.ledger import Ledger
    from loopkit.ray_engine import engine_for

    marker = tmp_path / "killed"
    path = share_fleet(tmp_path)
    spec = tmp_path / "capped.yaml"
    spec.write_text(spec.read_text().replace(
        'checkers: [{name: right, type: equals, expected: "yes"}]',
        f'checkers:\n  - {{name: right, type: equals, expected: "yes"}}\n'
        f'  - {{name: node_loss, type: command, run: "if [ ! -e {marker} ]; then touch {marker}; kill -9 $PPID; fi"}}'))
    ledger = Ledger(tmp_path / "ledger.db")
    result = run(path, ledger, engine=engine_for("ray"))
    assert marker.exists()  # a worker really was killed
    assert loop_spend(ledger, "capped") <= 0.06
    # The killed worker's calls count against the share but never reach the ledger: when it held both of the
    # provider's slots, what was left of the share may not admit even the rerun, so `capped` can record none.
    assert len(loop_runs(ledger, "capped")) < 10
    assert [r["status"] for r in loop_runs(ledger, "other")] == ["passed"] * 4
    per_case = rows(tmp_path / "ledger.db", "SELECT batch_id, case_id, COUNT(*) FROM runs GROUP BY batch_id, case_id")
    assert per_case and all(n == 1 for *_, n in per_case)
    assert rows(tmp_path / "ledger.db", "SELECT COUNT(*) FROM runs WHERE status = 'running'") == [(0,)]
    capped = next(lp for lp in result.loops if lp["loop"] == "capped")
    assert capped["out_of_money"] == "share" and result.status == "budget" and result.exit_code == 3

    # The lost worker's call was charged its worst case while the fleet ran; the ledger (what was recorded) may
    # leave the share room for one more case now, never more than the share.
    other_calls = rows(tmp_path / "ledger.db", "SELECT COUNT(*) FROM calls c JOIN runs r ON r.id = c.run_id WHERE r.spec_name = 'other'")
    again = cli("fleet", "run", "fleet.yaml", "--engine", "ray", "--json")
    assert again.returncode == 3, again.stderr
    assert {lp["loop"]: lp["finished"] for lp in json.loads(again.stdout)["loops"]}["other"] == 0
    assert loop_spend(ledger, "capped") <= 0.06
    assert all(n == 1 for *_, n in rows(tmp_path / "ledger.db", "SELECT batch_id, case_id, COUNT(*) FROM runs GROUP BY batch_id, case_id"))
    assert rows(tmp_path / "ledger.db", "SELECT COUNT(*) FROM calls c JOIN runs r ON r.id = c.run_id WHERE r.spec_name = 'other'") \
        == other_calls


def test_a_fleet_joining_a_cluster_ships_the_folder_holding_its_file_and_its_loops(ray_cluster, cli_proc, tmp_path,
                                                                                  tmp_path_factory):
    """The fleet file is in examples/ and its loop in ../loops/: a driver joining the cluster (--address) ships
    their parent, so the loop's python checker runs from the shipped copy (its `__file__` says where)."""
    (tmp_path / "examples").mkdir()
    loops = tmp_path / "loops"
    loops.mkdir()
    (loops / "checks.py").write_text("def where(output, case):\n    return (1.0, True, __file__)\n")
    (loops / "cases.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    (loops / "where.yaml").write_text(
        "name: where\nmodel: {id: loopkit/scripted, replies: [ok], price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
        "params: {max_tokens: 5}\ntask: {prompt: 'Say ok'}\ninputs: cases.jsonl\n"
        "checkers: [{name: where, type: python, function: checks.py:where}]\n")
    (tmp_path / "examples" / "fleet.yaml").write_text("budget: {total_usd: 1}\nloops:\n  - {spec: ../loops/where.yaml}\n")
    db = tmp_path_factory.mktemp("ledger") / "ledger.db"  # outside the shipped folder
    proc = cli_proc("fleet", "run", "examples/fleet.yaml", "--engine", "ray", "--address", ray_cluster,
                    env={"LOOPKIT_LEDGER": str(db)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = [Path(f) for (f,) in rows(db, "SELECT feedback FROM checks")]
    assert len(files) == 2 and all(f.name == "checks.py" and f.parent.name == "loops" for f in files)
    assert not any(f.is_relative_to(tmp_path.resolve()) for f in files)  # the shipped copy ran, not the original


def test_a_fleet_on_ray_gives_people_only_the_days_minutes_and_the_model_escalation_the_rest(ray_cluster, tmp_path):
    """The reviewer gate stays at the driver and the loop's spec without people is shipped to the workers:
    as on one machine, two hand-offs fit the day's 20 minutes and the other cases take the model's road."""
    from test_fleet import loop_runs, run
    from test_fleet_reviewers import ladder_fleet

    from loopkit.ledger import Ledger
    from loopkit.ray_engine import engine_for

    path = ladder_fleet(tmp_path)
    ledger = Ledger(tmp_path / "ledger.db")
    result = run(path, ledger, engine=engine_for("ray"))
    assert result.status == "done"
    assert [r["status"] for r in loop_runs(ledger, "ladder")] == ["needs_review"] * 2 + ["passed"] * 3
    assert {m["model"] for m in ledger.query("SELECT DISTINCT model FROM calls")} == {"loopkit/scripted", "strong"}


def test_ctrl_c_of_a_fleet_on_ray_marks_it_interrupted_and_a_rerun_runs_each_case_once(ray_cluster, tmp_path):
    from test_fleet import run, write_fleet, write_loop

    from loopkit.ledger import Ledger
    from loopkit.ray_engine import engine_for

    write_loop(tmp_path, "first", ["yes"] * 8)
    write_loop(tmp_path, "second", ["no", "yes"] * 4)
    path = write_fleet(tmp_path, "budget: {total_usd: 5}\nproviders: {loopkit: {concurrency: 2}}\n"
                                 "loops:\n  - {spec: first.yaml}\n  - {spec: second.yaml}\n")
    ledger = Ledger(tmp_path / "ledger.db")
    launched: list[str] = []

    def ctrl_c_at_the_sixth_launch(loop: str, case: str, at: object) -> None:
        launched.append(case)
        if len(launched) == 6:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers; the fleet's handler cancels it

    with pytest.raises(KeyboardInterrupt):
        run(path, ledger, engine=engine_for("ray"), on_launch=ctrl_c_at_the_sixth_launch)
    db = tmp_path / "ledger.db"
    assert {s for (s,) in rows(db, "SELECT status FROM batches")} == {"interrupted"}
    assert rows(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'") == [(0,)]
    first_time = rows(db, "SELECT COUNT(*) FROM runs")[0][0]
    assert 0 < first_time <= 6
    result = run(path, ledger, engine=engine_for("ray"))
    assert result.status == "done"
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT case_id) FROM runs") == [(16, 16)]
    assert {s for (s,) in rows(db, "SELECT status FROM batches")} == {"done"}
