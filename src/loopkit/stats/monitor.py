"""The anytime-valid tests of one A/B test, fed a case at a time, and what they conclude together.

Without a margin (`loopkit ab`) two tests can end the experiment, each at alpha / 2: superiority on
success (`SuccessEValue`) and on reward (`RewardConfidenceSequence`); it stops once either names a
winner. With a margin (`loopkit ab --margin M`) four tests can, each at alpha / 4: those two, plus
non-inferiority on success (`NonInferiorityTest`: B not worse than A by more than M) and the cost
difference per case (`CostConfidenceSequence`). It then stops once both questions have an answer:
is B as good (better, worse, or within the margin) and is it cheaper or dearer.

Bonferroni: each test errs (ever, at any look) with probability <= its share, so the chance that
any claim in the verdict is false is <= alpha, whichever test ends the experiment and whenever.
A verdict that needs two claims (non-inferior *and* cheaper) is false only if one of them is.

Ville's inequality needs the observations in an order that does not depend on their outcomes:
`ab` feeds cases in its seeded, shuffled scheduling order, never in the order they finish.
"""

from __future__ import annotations

from typing import Literal

from .cost import CostConfidenceSequence
from .noninferiority import NonInferiorityTest
from .sequential import RewardConfidenceSequence, SuccessEValue, discordant_cs

__all__ = ["COST_SIDES", "SUCCESS_SIDES", "VERDICT_KINDS", "SequentialMonitor"]

SuccessSide = Literal["better", "worse", "non_inferior", "mixed"]
CostSide = Literal["cheaper", "dearer"]

# verdict.kind: what the anytime-valid tests concluded about B against A.
VERDICT_KINDS: dict[str, str] = {
    "better": "B succeeds more often (or earns more reward) than A; implies non-inferior",
    "worse": "A succeeds more often (or earns more reward) than B, and B is not shown to be cheaper",
    "cheaper_but_worse": "B is worse than A and cheaper per case (--margin)",
    "non_inferior_cheaper": "B is not worse than A by more than the margin, and cheaper per case (--margin)",
    "non_inferior_dearer": "B is not worse than A by more than the margin, and dearer per case (--margin)",
    "non_inferior": "B is not worse than A by more than the margin; no cost difference shown (--margin)",
    "mixed": "success and reward name different winners: no winner",
    "inconclusive": "not enough evidence yet for any of the above",
}
SUCCESS_SIDES = ("better", "worse", "non_inferior", "mixed")
COST_SIDES = ("cheaper", "dearer")


class SequentialMonitor:
    """The anytime-valid tests of an A/B test, updated once per case (its runs all finished).

    ``alpha`` is the overall level, split evenly over the tests that can end the experiment
    (``alpha_split``); ``margin`` (a fraction, 0.02 = 2 points) adds the non-inferiority and cost tests.
    """

    def __init__(self, *, alpha: float = 0.05, target_n: int = 100, margin: float | None = None,
                 track_discordant: bool = True) -> None:
        self.alpha = alpha
        self.track_discordant = track_discordant  # the report's interval for discordant cases; no decision uses it
        self.margin = margin
        self.tests = 2 if margin is None else 4
        self.each = alpha / self.tests
        target = max(1, target_n)
        self.success = SuccessEValue(alpha=self.each)
        self.reward = RewardConfidenceSequence(alpha=self.each, bound=1.0, target_n=target)
        self.noninferiority = NonInferiorityTest(margin, alpha=self.each) if margin is not None else None
        self.cost = CostConfidenceSequence(alpha=self.each, target_n=target) if margin is not None else None
        self.discordant = (0.0, 1.0)
        self.n = 0

    @property
    def alpha_split(self) -> dict[str, float]:
        """Each test that can end the experiment, with its share of alpha (the shares sum to alpha)."""
        names = ["success_sequential", "reward_sequential"]
        if self.margin is not None:
            names += ["success_noninferiority", "cost_sequential"]
        return {name: self.each for name in names}

    def update(self, a_passed: float, b_passed: float, reward_diff: float, cost_diff: float | None = None) -> None:
        """One case: each variant's pass (or pass rate over its repeats), the mean reward difference B - A,
        and (with a margin) the case's cost difference B - A in USD."""
        self.n += 1
        self.success.update(a_passed, b_passed)
        self.reward.update(max(-1.0, min(1.0, reward_diff)))
        if self.noninferiority is not None:
            self.noninferiority.update(a_passed, b_passed)
        if self.cost is not None:
            if cost_diff is None:
                raise ValueError("a monitor with a margin needs each case's cost difference")
            self.cost.update(cost_diff)
        if a_passed == b_passed or not self.track_discordant:
            return  # only discordant pairs move the success test
        lo, hi = discordant_cs(self.success.b, self.success.c, self.each, self.success.prior)
        lo, hi = max(self.discordant[0], lo), min(self.discordant[1], hi)
        self.discordant = (lo, hi) if lo <= hi else discordant_cs(self.success.b, self.success.c, self.each)

    @property
    def winner(self) -> str | None:
        """'A' or 'B' by superiority; None while undecided or when the two tests name different winners."""
        s, r = self.success.winner, self.reward.winner
        if s and r and s != r:
            return None
        return s or r

    @property
    def mixed(self) -> bool:
        s, r = self.success.winner, self.reward.winner
        return bool(s and r and s != r)

    @property
    def success_side(self) -> SuccessSide | None:
        """Is B as good? better / worse (superiority), non_inferior (within the margin), mixed, or None yet.

        Non-inferiority outranks "worse": B significantly worse, but by less than the margin, is non-inferior."""
        if self.mixed:
            return "mixed"
        if self.winner == "B":
            return "better"
        if self.noninferiority is not None and self.noninferiority.crossed:
            return "non_inferior"
        return "worse" if self.winner == "A" else None

    @property
    def cost_side(self) -> CostSide | None:
        """Is B cheaper or dearer per case? None without a margin, or while the cost test has not crossed."""
        if self.cost is None or self.cost.winner is None:
            return None
        return "cheaper" if self.cost.winner == "B" else "dearer"

    @property
    def kind(self) -> str:
        """The verdict's kind (`VERDICT_KINDS`), from the two sides."""
        success, cost = self.success_side, self.cost_side
        if success is None:
            return "inconclusive"
        if success == "worse":
            return "cheaper_but_worse" if cost == "cheaper" else "worse"
        if success == "non_inferior":
            return f"non_inferior_{cost}" if cost else "non_inferior"
        return success

    @property
    def decided(self) -> bool:
        """The verdict is clear, so no new case need start. Without a margin: a test has named a winner.
        With one: B's success is settled (better, worse, non-inferior or mixed) and so is its cost."""
        if self.margin is None:
            return self.success.crossed or self.reward.crossed
        return self.success_side is not None and self.cost_side is not None
