"""Linearizable reads (§6.4 ReadIndex, §6.4.1 leases, follower reads): on the leader,
reads waiting for a quorum round, the lease and when it ends; on a follower, reads
batched into requests for a read index, matched to their answers.

Owns: the reads' tickets, the pending and confirmed reads, the round send times, the
lease, the follower's requests and the tag of its life. May not touch: the log,
votes, progress (it reads the rounds followers acknowledged).
"""

from __future__ import annotations

from .._errors import (
    NotLeader,
)
from .membership import Membership
from .messages import (
    ReadIndexRequest,
    ReadIndexResponse,
)
from .options import lease_length
from .types import INF, MAX_READ_REQUESTS, ReadRequest, Role, mypyc_attr, rng_nonce

__all__ = ["Reads"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Reads(Membership):
    """Linearizable reads: ReadIndex, leases, follower reads."""

    def request_read(self, now: float) -> int:
        """Start a linearizable read; returns its ticket.

        On the leader (§6.4 ReadIndex): when a quorum has acknowledged a message sent
        after the request, and the no-op of this term has committed, ``(ticket, read
        index)`` comes out in a Ready's ``reads`` (at once while a lease holds, §6.4.1).
        On a follower with ``follower_reads``: it asks the leader for the read index.
        If leadership is lost first, the ticket comes out in ``failed_reads``.
        """
        self._now = now
        if self.role is not Role.LEADER:
            if not (self.options.follower_reads and self.leader and self.role is Role.FOLLOWER):
                raise NotLeader(self.leader)
            self._count_life()
            self._next_ticket += 1
            ticket = self._next_ticket
            # Asked in the next Ready, with every read that comes before it (one request
            # per pass of the runtime, not one per read).
            self._read_batch.append(ticket)
            return ticket
        self._next_ticket += 1
        self._read_for(self._next_ticket, None, now)
        return self._next_ticket

    def _count_life(self) -> None:
        """Before this life of the server first asks a leader for a read index: count it
        (one more than the lives persisted; the Ready that sends the request persists it
        first), and tag its requests with it and with bits of the state of its random
        generator (a server restarted on new storage differs too). Its tickets are
        numbered from 1 in every life: the tag tells their answers apart."""
        if self._incarnation_tag < 0:
            self.incarnation += 1
            self._incarnation_tag = (self.incarnation % 2**31) << 32 | rng_nonce(self._rng)

    def _read_for(self, ticket: int, request: ReadIndexRequest | None, now: float) -> None:
        """A leader serves a read (its own, or a follower's ``request``): at once under a
        lease, else after a quorum round."""
        if self._lease_holds(now) or self._vouched_for_by(request):
            self._answer_read(ticket, request, self.commit_index)
            return
        self._round += 1
        self._pending_reads.append((self._round, ticket, request))
        for peer in self.config.all_voters:
            pr = self.progress.get(peer)
            if pr is not None:
                pr.heartbeat_wanted = True
                self._replication_due = True
        if self._quorum().reached(lambda v: v == self.name):
            # No one else can have acknowledged a round not yet sent: only a leader that
            # is a quorum by itself (the one voter) answers now.
            self._check_reads()

    def _vouched_for_by(self, request: ReadIndexRequest | None) -> bool:
        """Whether a follower's request for a read index is, with this leader, a quorum's
        word that no other leader existed when its reads began (§6.4, a round saved).

        The request left after its reads began, in this term (a request of another term
        is refused before it gets here): so its sender had voted in no later term then,
        nor had this leader, which still leads that term. If the two are a quorum of
        voters (three voters, say), no leader of a later term could have been elected
        before the reads began, and every entry committed by then is in this leader's
        commit index: a valid read index, with no heartbeat round. The no-op of the term
        must have committed, as for every read."""
        if request is None or not self.committed_in_term:
            return False
        pair = (request.src, self.name)
        return self._quorum().reached(pair.__contains__)

    def _answer_read(self, ticket: int, request: ReadIndexRequest | None, index: int) -> None:
        if request is None:
            self._read_states.append((ticket, index))
        else:
            self._answer_request(request, index)

    def _read_answer(
        self, request: ReadIndexRequest, index: int = 0, ok: bool = False
    ) -> ReadIndexResponse:
        """The answer to a follower's ``request``: a read index (``ok``) or a refusal,
        naming the request's ticket and the incarnation of its sender."""
        return ReadIndexResponse(
            self.name, request.src, self.term, request.ticket, index, ok, request.incarnation,
            cluster=self.cluster_id,
        )  # fmt: skip

    def _answer_request(self, request: ReadIndexRequest, index: int | None = None) -> None:
        """Send ``request``'s sender its read index, or (``None``) a refusal."""
        if index is None:
            self._send(self._read_answer(request))
        else:
            self._send(self._read_answer(request, index, True))

    def _lease_holds(self, now: float) -> bool:
        return self.options.lease_reads and now < self.lease_until

    def lease_read_index(self, now: float) -> int | None:
        """With ``lease_reads``, on a leader whose lease holds at ``now`` (§6.4.1): the
        read index of a read starting now (the commit index), with no round and no
        Ready; else ``None`` (use :meth:`request_read`)."""
        # lease_until's conditions, the cheapest first: this is every lease read's path.
        if (
            now < self._lease_until
            and self.options.lease_reads
            and self.role is Role.LEADER
            and self.transfer_target is None
            and self.committed_in_term
        ):
            return self.commit_index
        return None

    @property
    def lease_until(self) -> float:
        """Until when this leader is sure no other leader can be elected (§6.4.1): a
        quorum acknowledged a round sent at T, and voters refuse elections for a minimum
        election timeout after hearing from their leader (with CheckQuorum); less a margin
        for clock drift. ``-inf`` when not leading, before its no-op commits, before a
        round of its own is acknowledged, while it hands leadership over, and for the
        rest of its term once it told a server to take over (TimeoutNow), even if that
        transfer is abandoned."""
        if (
            self.role is not Role.LEADER
            or not self.committed_in_term
            or self.transfer_target is not None
        ):
            return -INF
        return self._lease_until

    def _quorum_acked_round(self) -> float:
        """The latest round a quorum (of each voter set while joint) acknowledged."""
        name, progress = self.name, self.progress
        acked = self._quorum().agreed_value(
            lambda v: INF if v == name else (progress[v].acked_round if v in progress else 0)
        )
        return 0 if acked is None else acked

    def _check_reads(self) -> None:
        confirmed = self._quorum_acked_round()
        self._extend_lease(confirmed)
        if self._handed_over:
            self._lease_until = -INF  # no lease after a TimeoutNow (see _after_match)
        if not self._pending_reads or not self.committed_in_term:
            return  # §6.4: reads wait until the leader has committed its no-op
        pending = self._pending_reads
        n = 0
        while n < len(pending) and pending[n][0] <= confirmed:
            _, ticket, request = pending[n]
            self._answer_read(ticket, request, self.commit_index)
            n += 1
        if n:
            del pending[:n]

    def _extend_lease(self, confirmed: float) -> None:
        # §6.4.1: the lease runs from the send time of the round a quorum acknowledged,
        # shortened for clock drift (options.lease_length derives how much).
        duration = lease_length(self.options)
        if confirmed == INF:  # a quorum of one: no one else can ever be elected
            self._lease_until = INF
            return
        sent = self._round_sent.get(int(confirmed))
        if sent is not None:
            self._lease_until = max(self._lease_until, sent + duration)
        for old in [s for s in self._round_sent if s < confirmed]:
            del self._round_sent[old]

    def _on_read_index_request(self, m: ReadIndexRequest, now: float) -> None:
        # §6.4: a follower's read: confirm leadership as for one of our own, then tell it
        # the index to apply up to.
        if self.role is not Role.LEADER:
            self._answer_request(m)  # a refusal
            return
        self._read_for(m.ticket, m, now)

    def _send_read_request(self, now: float) -> None:
        """A follower asks its leader for a read index for every read waiting, in one
        request, unless :data:`MAX_READ_REQUESTS` are already in flight (an answer then
        sends the next): the leader sees one request per batch however many reads there
        are, and a batch does not wait for the answer to the one before it."""
        if not self._read_batch or len(self._read_requests) >= MAX_READ_REQUESTS:
            return
        if self.leader is None or self.role is not Role.FOLLOWER:
            self._failed_reads.extend(self._read_batch)
            self._read_batch = []
            return
        self._next_ticket += 1
        retry_at = now + self.options.min_election_timeout
        request = ReadRequest(self._next_ticket, self.leader, self.term, retry_at, self._read_batch)
        self._read_requests[request.ticket] = request
        self._read_batch = []
        self._send(ReadIndexRequest(self.name, request.leader, self.term, request.ticket,
                                    self._incarnation_tag, cluster=self.cluster_id))  # fmt: skip

    def _on_read_index_response(self, m: ReadIndexResponse, now: float) -> None:
        request = self._read_requests.get(m.ticket)
        if (
            request is None
            or m.incarnation != self._incarnation_tag
            or (m.src, m.term) != (request.leader, request.term)
        ):
            # An answer to a request given up on, a duplicate, or an answer to another
            # request: of an earlier life of this server (which numbered its tickets
            # alike), or of another leader or term. Never taken for this one's (§6.4).
            return
        del self._read_requests[m.ticket]
        if m.ok:
            # Each read in the batch began before the request left: the leader's index,
            # confirmed after that, is a valid read index for all of them (§6.4).
            self._read_states.extend((ticket, m.index) for ticket in request.reads)
        else:
            self._failed_reads.extend(request.reads)
        self._send_read_request(now)

    def _retry_read_requests(self, now: float) -> None:
        """Requests with no answer for an election timeout (the request or the answer
        was lost): ask again, for their reads and any waiting, in one request."""
        late = [t for t, r in self._read_requests.items() if now >= r.retry_at]
        if not late:
            return
        reads = [read for t in late for read in self._read_requests.pop(t).reads]
        self._read_batch[:0] = sorted(reads)
        self._send_read_request(now)

    def _fail_remote_reads(self) -> None:
        """Reads asked of a leader (or a term of it) we no longer follow will not be
        answered: fail them (reads not yet asked go to the new leader, or fail if there
        is none)."""
        for ticket, request in list(self._read_requests.items()):
            if request.leader != self.leader or request.term != self.term:
                del self._read_requests[ticket]
                self._failed_reads.extend(request.reads)
        if self._read_batch:
            self._send_read_request(self._now)
