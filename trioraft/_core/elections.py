"""Elections (§5.2, PreVote §9.6, leases §6.4.1): campaigning, voting, counting votes.

Owns: the votes of the current round, whether its own vote waits for a lease, the
force flag of a transfer's campaign. May not touch: the log (it only compares logs,
§5.4.1), replication, reads. Wins and losses go through the node's transitions
(``_become_leader``, ``_become_follower``); majorities through :mod:`.quorum`.
"""

from __future__ import annotations

from .._errors import (
    NotVoter,
)
from .follower import Following
from .messages import (
    RequestVote,
    VoteResponse,
)
from .types import INF, Role, mypyc_attr

__all__ = ["Elections"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Elections(Following):
    """Campaigns and votes."""

    def trigger_election(self, now: float) -> None:
        """Start an election now, skipping PreVote (ExRaft's ``trigger_election``).

        Voters answer it even if they heard from a leader recently: it was asked for.
        Not with ``lease_reads``: then a leader's lease is respected, by the voters and
        by this server's own vote (§6.4.1, :meth:`_campaign`).
        """
        if not self.can_campaign:
            raise NotVoter(f"{self.name!r} is not a voter in its configuration {self.config}")
        self._now = now
        # With lease reads, a forced election must not break a leader's lease: voters
        # may refuse it while they hear from their leader (§6.4.1).
        self._campaign(now, pre=False, force=not self.options.lease_reads)

    def _campaign(self, now: float, *, pre: bool, force: bool) -> None:
        self._campaign_force = force
        self._leave_leadership()
        if pre:
            # §9.6 PreVote: ask whether we could win before disturbing anyone's term.
            self.role = Role.PRE_CANDIDATE
            vote_term = self.term + 1
        else:
            # §5.2: increment the term, vote for ourselves, ask everyone else. The vote
            # is persisted (in the same Ready) before any RequestVote leaves.
            self.term += 1
            self.voted_for = self.name
            self.role = Role.CANDIDATE
            vote_term = self.term
        self.leader = None
        self._fail_remote_reads()
        self._votes = {self.name: True}
        # §6.4.1: with lease_reads, a candidate that acknowledged a leader's round less
        # than a minimum election timeout ago (only trigger_election starts one that
        # early) counts its own vote only once that leader's lease has run out. A forced
        # campaign is a transfer's, whose leader stopped serving lease reads when it began.
        self._own_vote_from = (
            self._last_leader_contact + self.options.min_election_timeout
            if not pre and not force and self.options.lease_reads and self._in_lease(now)
            else -INF
        )
        self._reset_election_timer(now)
        if self._tally(now):
            return
        last_index, last_term = self.log.last_index, self.log.last_term
        for peer in self.config.all_voters:  # both sets while joint (§4.3)
            if peer != self.name:
                self._send(
                    RequestVote(
                        self.name,
                        peer,
                        vote_term,
                        last_index,
                        last_term,
                        pre,
                        force,
                        cluster=self.cluster_id,
                    )
                )

    def _log_up_to_date(self, m: RequestVote) -> bool:
        # §5.4.1: the candidate's log must be at least as up-to-date as ours: a later
        # last term, or the same last term and at least as long.
        return (m.last_log_term, m.last_log_index) >= (self.log.last_term, self.log.last_index)

    def _on_request_vote(self, m: RequestVote, now: float) -> None:
        if m.pre_vote:
            # §9.6: grant a pre-vote to a candidate whose next term would be newer, whose
            # log is up to date, unless we hear from a live leader. Nothing is persisted.
            grant = (
                m.term > self.term
                and self._log_up_to_date(m)
                and (m.force or not self._in_lease(now))
            )
            term = m.term if grant else self.term
            self._send(VoteResponse(self.name, m.src, term, grant, True, cluster=self.cluster_id))
            return
        # Here m.term == self.term. Figure 2: one vote per term, first come first served
        # (a server already following a leader in this term has nothing to vote for).
        can_vote = self.voted_for == m.src or (self.voted_for is None and self.leader is None)
        grant = can_vote and self._log_up_to_date(m)
        if grant and self.voted_for is None and not m.force and self.options.lease_reads:
            # §6.4.1: a server that learnt this term from elsewhere (a reply) may still be
            # in the window of the leader it heard from last: it does not help depose it.
            grant = not self._in_lease(now)
        if grant:
            # Figure 2: votedFor is persisted before the vote is granted (same Ready).
            self.voted_for = m.src
            self._reset_election_timer(now)  # §5.2: granting a vote resets the timer
        self._send(VoteResponse(self.name, m.src, self.term, grant, False, cluster=self.cluster_id))

    def _on_vote_response(self, m: VoteResponse, now: float) -> None:
        if m.pre_vote:
            if self.role is not Role.PRE_CANDIDATE:
                return
            if m.term != (self.term + 1 if m.granted else self.term):
                return  # an answer to an older round
        elif self.role is not Role.CANDIDATE or m.term != self.term:
            return
        if m.src in self.config.all_voters:
            self._votes[m.src] = m.granted
        self._tally(now)

    def _tally(self, now: float) -> bool:
        """Count votes; act on a won or lost election. True if the round is decided.
        §5.2: a quorum of voters wins it; while joint, a quorum of each set (§4.3)."""
        votes, quorum = self._votes, self._quorum()
        # Its own vote counts only once a lease it acknowledged has run out (§6.4.1).
        waiting = self.name if now < self._own_vote_from else None
        if quorum.reached(lambda v: votes.get(v) is True and v != waiting):
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(now, pre=False, force=self._campaign_force)
            else:
                self._become_leader(now)
            return True
        if quorum.lost(lambda v: votes.get(v) is False):
            # The election can no longer be won: wait as a follower for the next timeout.
            self.role = Role.FOLLOWER
            return True
        return False
