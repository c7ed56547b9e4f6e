"""The leader's side of replication: what to send each follower (entries, pipelined;
heartbeats; snapshot chunks through :mod:`.snapshots`), what their answers say, the
commit rule (Figure 2, §5.4.2), and removed servers told of their removal (§4.2.2).

Owns: the followers' progress, the round stamps, the retiring servers. May not touch:
votes, reads' state (it tells :mod:`.reads` when answers arrive), the configuration
(that is :mod:`.membership`'s).
"""

from __future__ import annotations

from collections.abc import Iterable

from .confchange import (
    CatchUpState,
)
from .messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    Message,
    TimeoutNow,
)
from .progress import Progress, ProgressMode
from .snapshots import Snapshots
from .types import INF, RETIRING_TICKS, Role, mypyc_attr

__all__ = ["Replication"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Replication(Snapshots):
    """A leader's replication to its followers, and its commit rule."""

    def heartbeat_now(self) -> None:
        """On a leader: send every follower a heartbeat (or what else is due) in the next
        Ready, now rather than when its heartbeat interval ends (etcd's MsgBeat)."""
        if self.role is not Role.LEADER:
            return
        for pr in self.progress.values():
            pr.heartbeat_wanted = True
        self._replication_due = True

    def unknown_outcomes(self, proposed: Iterable[int]) -> list[int]:
        """Of entries this server appended as leader (their indexes), once it no longer
        leads in their term: those whose outcome it cannot know. An entry above its
        commit index may be committed by the next leader, or replaced; a committed one
        is applied (and its writer answered) as usual."""
        commit = self.commit_index
        return [index for index in proposed if index > commit]

    def _on_append_response(self, m: AppendResponse, now: float) -> None:
        pr = self._heard_from(m.src, m.round, m.commit_index)
        if pr is None:
            return
        if m.success:
            first = pr.match == 0
            advanced = pr.acknowledge(m.match_index)
            if pr.mode is ProgressMode.PROBE:
                pr.become_replicate()
            if advanced:
                if first:
                    self.change_count += 1  # its first answer (a new learner waits for it)
                self._maybe_commit(now)
                self._after_match(m.src, now)
        elif m.reject_index > pr.match and (
            pr.mode is ProgressMode.REPLICATE or m.reject_index == pr.next - 1
        ):
            # A rejection of what we last sent (older ones are stale: the logs are
            # known to match beyond them, or a later probe has been sent since).
            if m.conflict_term is not None:
                last = self.log.last_index_of_term(m.conflict_term)
                next_index = last + 1 if last is not None else m.conflict_index
            else:
                next_index = m.conflict_index
            pr.become_probe(min(next_index, m.reject_index))
        self._check_reads()

    def _heard_from(self, name: str, stamp: int, commit: int) -> Progress | None:
        """Book-keeping common to every answer a leader receives; the peer's progress,
        or None if there is nothing more to do."""
        if self.role is not Role.LEADER:
            return None
        pr = self.progress.get(name)
        if pr is None:
            return None
        pr.recent_active = True
        self._replication_due = True
        if stamp > pr.acked_round:
            pr.acked_round = stamp
        if commit > pr.commit:
            pr.commit = commit
            if name in self._retiring:
                self._check_retired(name)
                if name not in self.progress:
                    self._check_reads()
                    return None
        return pr

    def _on_heartbeat_response(self, m: HeartbeatResponse, now: float) -> None:
        pr = self._heard_from(m.src, m.round, m.commit_index)
        if pr is None:
            return
        if pr.mode is ProgressMode.PROBE:
            pr.probe_sent = False  # the probe or its answer may be lost: allow another
        elif (
            pr.mode is ProgressMode.REPLICATE
            and pr.match < self.log.last_index
            and pr.match == pr.heartbeat_match
        ):
            # No progress over a whole heartbeat round while entries are outstanding:
            # messages were lost. Probe again from what is known to match.
            pr.become_probe(pr.match + 1)
        pr.heartbeat_match = pr.match
        self._check_reads()

    def _replicate_all(self) -> None:
        self._replication_due = False
        now = self._now
        self._round_sent.setdefault(self._round, now)
        for peer, pr in self.progress.items():
            for _ in range(self.options.max_inflight + 1):
                message = self._next_message(peer, pr)
                if message is None:
                    break
                pr.last_sent = now
                self._outbox.append(message)

    def _next_message(self, peer: str, pr: Progress) -> Message | None:
        """The next message to send to ``peer``, or ``None`` if nothing is due: entries
        it lacks (batched up to ``max_entries_per_message``, pipelined up to
        ``max_inflight`` messages), snapshot chunks, else a heartbeat when one is due or
        a read waits."""
        if pr.mode is not ProgressMode.SNAPSHOT and self._entries_due(pr):
            if pr.next - 1 < self.log.snapshot_index:
                # §5.3: the entries it needs are compacted away: send the snapshot.
                self._start_transfer(pr, self._now)
            else:
                return self._append_entries(peer, pr)
        if pr.mode is ProgressMode.SNAPSHOT:
            chunk = self._snapshot_chunk(peer, pr)
            if chunk is not None:
                return chunk
        if pr.heartbeat_wanted:
            pr.heartbeat_wanted = False
            commit = min(pr.match, self.commit_index)
            return Heartbeat(
                self.name, peer, self.term, commit, self._round, cluster=self.cluster_id
            )
        return None

    def _append_entries(self, peer: str, pr: Progress) -> AppendEntries:
        log = self.log
        prev = pr.next - 1
        prev_term = log.term_at(prev)
        assert prev_term is not None, f"entry {prev} needed by {peer!r} is not in the log"
        hi = min(log.last_index, pr.next + self.options.max_entries_per_message - 1)
        entries = tuple(log.slice(pr.next, hi))
        if pr.mode is ProgressMode.PROBE:
            pr.probe_sent = True
        else:
            pr.next = hi + 1
            pr.inflight.append(hi)
        pr.heartbeat_wanted = False
        return AppendEntries(
            self.name,
            peer,
            self.term,
            prev,
            prev_term,
            entries,
            self.commit_index,
            self._round,
            cluster=self.cluster_id,
        )

    def _entries_due(self, pr: Progress) -> bool:
        if pr.mode is ProgressMode.PROBE:
            return not pr.probe_sent
        return pr.next <= self.log.last_index and len(pr.inflight) < self.options.max_inflight

    def _maybe_commit(self, now: float) -> None:
        # Figure 2 (leaders): commit N if a quorum has matchIndex >= N and log[N] is of
        # the current term. §5.4.2: never count replicas of an older term's entry. The
        # leader counts itself only for entries it has made durable.
        # While joint, a quorum of each voter set holds it (§4.3).
        mine, name, progress = self._stable_index, self.name, self.progress
        candidate = self._quorum().agreed_value(
            lambda v: mine if v == name else (progress[v].match if v in progress else 0)
        )
        if candidate is None:
            return
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self._commit_to(candidate, now)

    def _check_retired(self, peer: str) -> None:
        # A removed server is told until it knows that the configuration without it is
        # committed (then it stops campaigning for good, §4.2.2).
        cfg_index = self._retiring.get(peer)
        pr = self.progress.get(peer)
        if cfg_index is None:
            return
        if pr is None or (pr.commit >= cfg_index and self.commit_index >= cfg_index):
            self._retire_done(peer)

    def _retire_done(self, peer: str) -> None:
        self._retiring.pop(peer, None)
        self.progress.pop(peer, None)

    def _tick_retiring(self) -> None:
        for name in list(self._retiring):
            pr = self.progress.get(name)
            if pr is None:
                continue
            pr.idle_ticks = 0 if pr.recent_active else pr.idle_ticks + 1
            pr.recent_active = False
            if pr.idle_ticks >= RETIRING_TICKS:
                self._retire_done(name)  # gone for now; told again if it campaigns

    def _after_match(self, peer: str, now: float) -> None:
        pr = self.progress.get(peer)
        if pr is None:
            return  # a commit just now may have ended our leadership or its retirement
        catch_up = self.catch_ups.get(peer)
        if catch_up is not None and catch_up.state is CatchUpState.PENDING:
            self._catch_up_progress(catch_up, pr.match, now)
        if (
            peer == self.transfer_target
            and not self._timeout_now_sent
            and pr.match == self.log.last_index
        ):
            self._timeout_now_sent = True
            # §3.10 and §6.4.1: the target campaigns with a forced election, which voters
            # grant whatever lease they gave us: our lease is over for this whole term,
            # even if the transfer is abandoned later (the target may still win).
            self._handed_over = True
            self._lease_until = -INF
            self._send(TimeoutNow(self.name, peer, self.term, cluster=self.cluster_id))
            if self._stepping_down:
                # A removed leader hears nothing more from the cluster: step down now.
                self._become_follower(self.term, None, now)

    def _wanted_peers(self) -> list[str]:
        return [p for p in self.config.members if p != self.name] + list(self._retiring)

    def _sync_progress(self) -> None:
        next_index = self.log.last_index + 1
        wanted = self._wanted_peers()
        for peer in wanted:
            if peer not in self.progress:
                self.progress[peer] = Progress(next_index)
        for peer in list(self.progress):
            if peer not in wanted:
                del self.progress[peer]
        self._replication_due = True
