"""Random membership changes for fault schedules: what :class:`SetMembers` asks for.

A schedule is drawn before it runs, so it cannot know the configuration its changes will
meet. :class:`MemberPlan` follows the configuration the schedule's membership changes
would make if each succeeded, from the cluster's initial voters, and draws each
``set_members`` target from it as a multi-server change: a swap (one voter out, another
in), the replacement of several voters, a demotion of voters to learners (with a learner
or spare promoted, now and then), or any configuration of the servers at all. When a
change fails (it often does under faults), the next one still names a target near the
configuration the cluster is likely in, and any target is a valid one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["MEMBERSHIP_KINDS", "MemberPlan"]

#: The fault kinds that change the configuration, with the weight of each in the draws
#: of ``FaultSchedule.random(membership=...)``: half of them are multi-server changes.
MEMBERSHIP_KINDS = {"set_members": 2, "add_server": 1, "remove_server": 1}

#: The shapes of ``set_members`` targets :meth:`MemberPlan.draw` picks from.
SHAPES = ("swap", "replace", "demote", "any")


class MemberPlan:
    """The configuration that a schedule's membership changes would make, if each
    succeeded: ``voters`` and ``learners``, among ``pool`` (every server the schedule
    may name)."""

    def __init__(self, voters: Sequence[str], pool: Sequence[str]) -> None:
        self.pool = sorted(set(pool) | set(voters))
        self.voters = sorted(voters)
        self.learners: list[str] = []

    def added(self, name: str, voter: bool) -> None:
        """An ``add_server`` of ``name`` was drawn (of a voter, it would be refused)."""
        if name in self.voters:
            return
        self.learners = [n for n in self.learners if n != name]
        (self.voters if voter else self.learners).append(name)
        self.voters.sort()
        self.learners.sort()

    def removed(self, name: str) -> None:
        """A ``remove_server`` of ``name`` was drawn (the last voter stays)."""
        if self.voters != [name]:
            self.voters = [v for v in self.voters if v != name]
        self.learners = [n for n in self.learners if n != name]

    def draw(self, rng: random.Random) -> tuple[list[str], list[str]]:
        """A ``set_members`` target ``(voters, learners)`` of one of :data:`SHAPES`,
        drawn from ``rng``; the plan moves to it."""
        shape = rng.choice(SHAPES)
        outside = [n for n in self.pool if n not in self.voters]
        if shape == "demote" and len(self.voters) > 1:
            voters, learners = self._demote(rng, outside)
        elif shape in ("swap", "replace") and outside:
            most = min(len(self.voters), len(outside))
            count = 1 if shape == "swap" else rng.randint(min(2, most), most)
            leaving = rng.sample(self.voters, count)
            coming = rng.sample(outside, count)
            voters = [v for v in self.voters if v not in leaving] + coming
            kept = [n for n in self.learners if n not in coming]
            learners = kept + [n for n in leaving if rng.random() < 0.3]
        else:  # any configuration of the pool
            voters = rng.sample(self.pool, rng.randint(1, len(self.pool)))
            learners = [n for n in self.pool if n not in voters and rng.random() < 0.3]
        self.voters, self.learners = sorted(voters), sorted(learners)
        return list(self.voters), list(self.learners)

    def _demote(self, rng: random.Random, outside: list[str]) -> tuple[list[str], list[str]]:
        """Some voters (not all) become learners; now and then one learner or spare is
        promoted in the same change."""
        demoted = rng.sample(self.voters, rng.randint(1, len(self.voters) - 1))
        voters = [v for v in self.voters if v not in demoted]
        learners = [n for n in self.learners if n not in demoted] + demoted
        if outside and rng.random() < 0.5:
            promoted = rng.choice(outside)
            voters.append(promoted)
            learners = [n for n in learners if n != promoted]
        return voters, learners
