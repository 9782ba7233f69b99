"""Run one case through the loop: render → call → check → reward → record → stop or escalate → feedback.

The engine takes its model clients, cache and recorder as arguments and knows nothing of SQL or the
terminal, so it is tested with an in-memory recorder and the scripted model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .budget import BudgetStop, CaseBudget, Prompt, Reservation
from .cache import CallCache, NoCache, cache_key
from .cheapest import escalation_action
from .checkers import CheckContext, CheckerError, CheckResult, run_checker
from .inputs import Case
from .models import ModelCallError, ModelClient
from .redact import safe_text, scrub_messages
from .records import (CallRecord, CheckRecord, EventRecord, IterationRecord, Messages, Recorder, RunInfo, RunResult,
                      RunState, new_id)
from .spec import Escalation, JudgeChecker, LoopSpec, ModelRef
from .status import RunStatus, StopReason
from .templates import TemplateError, case_templates, render
from .timewindow import utcnow_iso as now_iso
from .tool_loop import countable, tools_for, trajectory, worker_turn

if TYPE_CHECKING:
    from .agents import AgentWorker
    from .tools import Toolbox

# --- the loop ------------------------------------------------------------------------------


@dataclass
class _Iteration:
    """Calls and events gathered while one iteration runs, committed together."""

    calls: list[CallRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0


def _no_gain(rewards: list[float]) -> int:
    """How many of the latest iterations brought no reward gain over the best before them."""
    count, best = 0, float("-inf")
    for r in rewards:
        if r > best + 1e-12:
            best, count = r, 0
        else:
            count += 1
    return count


def combine(spec: LoopSpec, results: list[tuple[Any, CheckResult]]) -> float:
    """The reward of an iteration from its (non-audit) checker results."""
    if not results:
        return 1.0
    if any(c.required and not r.passed for c, r in results):
        return 0.0
    if spec.reward.combine == "min":
        return min(r.score for _, r in results)
    total = sum(c.weight for c, _ in results)
    if total <= 0:
        return min(r.score for _, r in results)
    return sum(c.weight * r.score for c, r in results) / total


def escalation_applies(esc: Escalation, iterations: int, reward: float, failed: set[str], no_gain: int) -> bool:
    w = esc.when
    return (
        (w.iterations is None or iterations >= w.iterations)
        and (w.reward_below is None or reward < w.reward_below)
        and (w.failed is None or w.failed in failed)
        and (w.plateau is None or no_gain >= w.plateau)
    )


class Loop:
    """One run of one case. Construct, then `await loop.run()`."""

    def __init__(
        self,
        spec: LoopSpec,
        info: RunInfo,
        *,
        clients: Callable[[ModelRef], ModelClient],
        recorder: Recorder,
        budget: CaseBudget,
        cache: CallCache | None = None,
        state: RunState | None = None,
        human_feedback: str | None = None,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.spec = spec
        self.toolbox = toolbox  # the batch's; a run given none opens its own when the spec has tools
        self.info = info
        self.clients = clients
        self.recorder = recorder
        self.budget = budget
        if state is not None:  # a continued run: its earlier spend counts against its caps
            budget.carry_over(state.cost_usd, state.prompt_tokens + state.completion_tokens, state.elapsed_seconds)
        self.cache = cache or NoCache()
        self.state = state or RunState(model=spec.model)
        self.human_feedback = human_feedback
        self.prompt = ""
        self._started = state is not None
        self._interrupted = False
        self._known_clients: dict[int, tuple[ModelRef, ModelClient]] = {}
        self._agent: AgentWorker | None = None  # the outside agent (`worker:`), made at its first iteration
        self._base_dir: Path | None = None

    # -- helpers --

    def _client(self, model: ModelRef) -> ModelClient:
        """The client for `model`, asked of `clients` once per model and run (a pool keys it by the model's JSON)."""
        known = self._known_clients.get(id(model))
        if known is None or known[0] is not model:  # the ref is held, so its id is not reused while it is known
            known = self._known_clients[id(model)] = (model, self.clients(model))
        return known[1]

    def _variables(self, **extra: Any) -> dict[str, Any]:
        return {"case": self.info.case, **extra}

    def _result(self, status: RunStatus, stop_reason: StopReason | None, message: str | None = None, suspect: str | None = None) -> RunResult:
        s = self.state
        finished = status != RunStatus.RUNNING
        return RunResult(
            run_id=self.info.id, status=status, stop_reason=stop_reason, success=status == RunStatus.PASSED,
            reward=s.best_reward, iterations=s.iterations, best_iteration=s.best_iteration, output=s.best_output,
            cost_usd=s.cost_usd, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens, state=s,
            ended_at=now_iso() if finished else None, message=message, suspect=suspect,
        )

    async def _call(self, step: _Iteration, role: str, model: ModelRef, messages: Messages, variables: dict[str, Any], *,
                    tools: list[dict[str, Any]] | None = None) -> str:
        """One model call through cache and budget; recorded in `step` whatever happens. With `tools` offered,
        the tool calls the reply asks for are on its record (`step.calls[-1].tool_calls`)."""
        messages = scrub_messages(messages)  # no key reaches a provider, whichever text carried it
        client = self._client(model)
        params = self.spec.params_for(model)
        if tools:
            params = {**params, "tools": tools}
        key = cache_key(self.spec.name, model, messages, params, self.info.repeat, client.cache_salt(variables))
        stored = key if self.cache.stores else None
        completion = self.cache.lookup(key)
        reservation: Reservation | None = None
        if completion is None or self.cache.charges_budget:
            # the prompt's size matters only to reserve its worst case against a cap; without one it costs nothing
            prompt = Prompt.of(countable(messages, tools), client.count_tokens) if self.budget.capped else 0
            reservation = await self.budget.reserve(client.price, prompt, params.get("max_tokens"), model=model.label)
        if completion is None:
            try:  # retries and their back-off included, cut at the case's deadline
                completion = await self.budget.within_deadline(client.complete(messages, params, variables), f"calling {model.label}")
            except BaseException as exc:
                # A call cut off in flight may still be billed: it is charged its reserved worst case, so the
                # caps hold against what the provider bills however often a batch is interrupted and resumed.
                cut_off = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
                charged = reservation.usd if cut_off and reservation is not None else 0.0
                self.budget.settle(reservation, charged, 0)
                step.cost += charged
                if cut_off or isinstance(exc, (ModelCallError, BudgetStop)):
                    error = (f"interrupted before the reply arrived; charged its worst case, ${charged:.6f}, as the provider "
                             "may bill it") if cut_off else str(exc)
                    step.calls.append(CallRecord(new_id(), self.state.iterations + 1, role, model.label, messages, None,
                                                 0, 0, charged, 0.0, False, error, key, stored, model.api_base))
                raise
        text = safe_text(completion.text)  # a lone surrogate in a paid reply is kept, escaped, not a crash later
        step.calls.append(CallRecord(new_id(), self.state.iterations + 1, role, model.label, messages, text,
                                     completion.prompt_tokens, completion.completion_tokens, completion.cost_usd,
                                     completion.latency_ms, completion.cached, None, key, stored, model.api_base,
                                     tool_calls=completion.tool_calls))
        step.cost += completion.cost_usd
        step.prompt_tokens += completion.prompt_tokens
        step.completion_tokens += completion.completion_tokens
        step.latency_ms += completion.latency_ms
        tokens = completion.prompt_tokens + completion.completion_tokens
        if completion.cached and self.cache.charges_budget:
            self.budget.settle(reservation, completion.recorded_cost_usd, tokens)  # recorded first: an overrun stops after it
        else:
            self.budget.settle(reservation, completion.cost_usd, 0 if completion.cached else tokens)
        return text

    def _opening_messages(self) -> Messages:
        messages: Messages = []
        if self.spec.task.system:
            messages.append({"role": "system", "content": render(self.spec.task.system, case=self.info.case)})
        messages.append({"role": "user", "content": self.prompt})
        return messages

    def _next_messages(self, feedback_message: str | None) -> Messages:
        s = self.state
        if not s.messages:
            return self._opening_messages()
        history = s.messages if self.spec.task.memory == "conversation" else self._opening_messages() + s.messages[-1:]
        return history + ([{"role": "user", "content": feedback_message}] if feedback_message else [])

    def _feedback_message(self, feedback: str, reward: float) -> str:
        return render(self.spec.task.feedback, case=self.info.case, feedback=feedback, reward=reward,
                      iteration=self.state.iterations)

    async def _outside_agent(self, step: _Iteration, model: ModelRef, feedback_message: str | None, n: int,
                             variables: dict[str, Any]) -> str:
        """The iteration's work done by an outside agent program (agents/); its model calls are metered into `step`."""
        if self._agent is None:
            from .agents import AgentWorker  # its HTTP endpoint and process handling load only for a spec with a worker

            self._agent = AgentWorker(self.spec, self.info)
        return await self._agent.turn(step, self._client(model), model, self.budget, self._opening_messages(), feedback_message,
                                      n, variables)

    # -- the loop --

    async def run(self) -> RunResult:
        """Iterate until the run stops; a batch-budget refusal before any call raises BatchBudgetRefused."""
        with case_templates(self.info.case):  # the prompt, expected values, … render once per case
            async with tools_for(self.spec, self.toolbox) as self.toolbox:
                return await self._run()

    async def _run(self) -> RunResult:
        s = self.state
        for _, model in self.spec.models():
            self._client(model)  # ready (a provider library loaded) before the case's clock starts
        self.budget.start()
        try:
            self.prompt = render(self.spec.task.prompt, case=self.info.case)
            feedback_message = None
            if self.human_feedback is not None:
                feedback_message = self._feedback_message(self.human_feedback, s.rewards[-1] if s.rewards else 0.0)
                s.last_feedback = self.human_feedback
                s.max_iterations = max(self.spec.stop.max_iterations, s.max_iterations or 0, s.iterations + 1)
            elif s.iterations and s.last_feedback:
                feedback_message = self._feedback_message(s.last_feedback, s.rewards[-1] if s.rewards else 0.0)
            while True:
                outcome = await self._iterate(feedback_message)
                if outcome is not None:
                    return outcome
                feedback_message = self._feedback_message(s.last_feedback, s.rewards[-1])
        except TemplateError as exc:
            return self._finish(RunStatus.ERROR, StopReason.ERROR, [EventRecord("error", {"message": str(exc)})], message=str(exc))
        except (asyncio.CancelledError, KeyboardInterrupt):
            if not self._interrupted:
                self._finish(RunStatus.INTERRUPTED, StopReason.INTERRUPTED, [])
            raise

    def _commit(self, result: RunResult, record: IterationRecord | None, calls: list[CallRecord], events: list[EventRecord]) -> None:
        self.recorder.commit(result, record, calls, events, start=None if self._started else self.info)
        self._started = True
        if self._agent is not None and result.status != RunStatus.RUNNING:  # its folder stays while the run may go on
            self._agent.close(keep=result.status in (RunStatus.INTERRUPTED, RunStatus.NEEDS_REVIEW))

    def _finish(self, status: RunStatus, reason: StopReason, events: list[EventRecord], *, message: str | None = None,
                step: _Iteration | None = None) -> RunResult:
        if step is not None:  # calls paid in an iteration cut short still count
            self.state.cost_usd += step.cost
            self.state.prompt_tokens += step.prompt_tokens
            self.state.completion_tokens += step.completion_tokens
        result = self._result(status, reason, message)
        self._commit(result, None, step.calls if step else [], events + (step.events if step else []))
        return result

    async def _iterate(self, feedback_message: str | None) -> RunResult | None:
        """One iteration; returns the final result when the run stops, else None."""
        s = self.state
        spec = self.spec
        n = s.iterations + 1
        model = s.model or spec.model
        step = _Iteration()
        messages = self._next_messages(feedback_message)
        variables = self._variables(iteration=n, feedback=s.last_feedback)
        try:
            if spec.worker is not None:
                output, turns = await self._outside_agent(step, model, feedback_message, n, variables), []
            else:
                output, turns = await worker_turn(self, step, model, messages, variables)
            scored = await self._check(step, output, n)
        except BudgetStop as stop:
            if stop.reason == StopReason.BUDGET_TOTAL_USD and not self._started and not step.calls:
                if self._agent is not None:  # the case is not written as a run, and nothing of it stays
                    self._agent.close(keep=False)
                raise BatchBudgetRefused(stop.detail) from None
            # calls already paid in this iteration are recorded with the stop
            detail = {"reason": stop.reason, "detail": stop.detail, **({"overrun": stop.overrun} if stop.overrun else {})}
            return self._finish(RunStatus.FAILED, stop.reason, [EventRecord("budget_stop", detail)], message=stop.detail, step=step)
        except ModelCallError as exc:
            return self._finish(RunStatus.ERROR, StopReason.ERROR, [EventRecord("error", {"message": str(exc), "attempts": exc.attempts})],
                                message=str(exc), step=step)
        except CheckerError as exc:  # the checker broke, not the answer: stop, and never feed it back to the model
            return self._finish(RunStatus.ERROR, StopReason.CHECKER_ERROR,
                                [EventRecord("error", {"checker": exc.checker, "message": exc.reason})], message=str(exc), step=step)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # replies already received were paid for: they are recorded with the interruption
            self._interrupted = True
            self._finish(RunStatus.INTERRUPTED, StopReason.INTERRUPTED, [], step=step)
            raise
        graded, audits = scored
        reward = combine(spec, graded)
        passed = reward >= spec.reward.pass_ - 1e-12
        # escalation may name any checker, audits included (an audit failing can call for a person)
        failed = {c.name for c, r in graded + audits if not r.passed}
        feedback = "\n".join(f"- {c.name}: {r.feedback}" for c, r in graded if not r.passed and r.feedback)

        s.iterations = n
        s.rewards.append(reward)
        s.messages = messages + turns + [{"role": "assistant", "content": output}]
        s.cost_usd += step.cost
        s.prompt_tokens += step.prompt_tokens
        s.completion_tokens += step.completion_tokens
        if reward >= s.best_reward or s.best_iteration == 0:
            s.best_iteration, s.best_reward, s.best_output = n, reward, output
        # an agent's report may well repeat while its work directory changes: only a model's answer can repeat
        repeated = spec.worker is None and s.last_output is not None and output == s.last_output
        s.last_output = output
        s.last_feedback = feedback

        suspect = None
        failed_audits = [c.name for c, r in audits if not r.passed]
        if failed_audits:
            step.events.append(EventRecord("audit_failed", {"iteration": n, "checkers": failed_audits}))
            if passed:
                passed_names = ", ".join(f"`{c.name}`" for c, r in graded if r.passed) or "the reward"
                suspect = f"possible reward hacking: passed {passed_names}, failed audit {', '.join(f'`{a}`' for a in failed_audits)}"

        status, reason, message = RunStatus.RUNNING, None, None
        if passed:
            status, reason = RunStatus.PASSED, StopReason.PASSED
        else:
            escalated_model = False
            limit = s.max_iterations or spec.stop.max_iterations
            for i, esc in enumerate(spec.escalate):
                if i in s.fired or not escalation_applies(esc, n, reward, failed, _no_gain(s.rewards)):
                    continue
                s.fired.append(i)
                to_model, note, detail = escalation_action(spec, esc, i, n, model, limit)  # `cheapest:` chooses here
                step.events.append(EventRecord("escalation", detail))
                if to_model is not None:
                    s.model = to_model
                    escalated_model = True
                else:
                    status, reason, message = RunStatus.NEEDS_REVIEW, StopReason.HUMAN, note
                break
            if status == RunStatus.RUNNING:
                if n >= limit:
                    status, reason = RunStatus.FAILED, StopReason.MAX_ITERATIONS
                elif not escalated_model and spec.stop.plateau and _no_gain(s.rewards) >= spec.stop.plateau:
                    status, reason = RunStatus.FAILED, StopReason.PLATEAU
                elif not escalated_model and repeated:
                    status, reason, message = RunStatus.FAILED, StopReason.PLATEAU, "the model repeated its previous answer"
        s.elapsed_seconds = self.budget.elapsed
        record = IterationRecord(n, model.label, output, reward, passed, feedback, step.cost, step.prompt_tokens,
                                 step.completion_tokens, step.latency_ms,
                                 [CheckRecord(c.name, r.score, r.passed, r.feedback, c.audit, c.weight) for c, r in graded + audits])
        result = self._result(status, reason, message, suspect)
        self._commit(result, record, step.calls, step.events)
        return None if status == RunStatus.RUNNING else result

    async def _check(self, step: _Iteration, output: str, n: int) -> tuple[list[tuple[Any, CheckResult]], list[tuple[Any, CheckResult]]]:
        """Run every checker in spec order; audit results are kept apart from the graded ones."""
        spec = self.spec

        async def judge(checker: JudgeChecker, messages: Messages) -> str:
            model = checker.model or spec.model
            return await self._call(step, "judge", model, messages, self._variables(iteration=n, feedback=self.state.last_feedback, output=output))

        if self._base_dir is None:  # the spec's folder (or the working one): a Path built once per run, not per check
            self._base_dir = spec.base_dir
        ctx = CheckContext(self.info.case, self._base_dir, spec.reward.pass_, self.prompt, judge, self.budget.time_left,
                           tool_calls=trajectory(step.calls), workdir=self._agent.workdir if self._agent else None)
        graded: list[tuple[Any, CheckResult]] = []
        audits: list[tuple[Any, CheckResult]] = []
        for checker in spec.checkers:
            result = await run_checker(checker, output, ctx)
            (audits if checker.audit else graded).append((checker, result))
        return graded, audits


class BatchBudgetRefused(Exception):
    """The batch budget refused a case's first call: the case is not written as a run."""


async def run_case(spec: LoopSpec, case: Case, *, clients: Callable[[ModelRef], ModelClient], recorder: Recorder,
                   budget: CaseBudget | None = None, cache: CallCache | None = None, batch_id: str | None = None,
                   repeat: int = 0, variant: str | None = None, run_id: str | None = None, state: RunState | None = None,
                   human_feedback: str | None = None, toolbox: Toolbox | None = None) -> RunResult:
    """Run one case to its end (passed, failed, parked, error) and return the outcome."""
    info = RunInfo(run_id or new_id(), batch_id, spec.hash, spec.name, case.id, case.data, repeat, variant)
    loop = Loop(spec, info, clients=clients, recorder=recorder, budget=budget or CaseBudget(spec.budget), cache=cache,
                state=state, human_feedback=human_feedback, toolbox=toolbox)
    return await loop.run()
