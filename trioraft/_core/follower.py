"""The follower's side of replication (Figure 2, AppendEntries) and of the cluster's
identity: taking entries and heartbeats from the leader, truncating conflicts, following
the leader of the term, and refusing messages of another cluster.

Owns: the log's suffix a leader sends (appending, truncating), the record of servers of
another cluster. May not touch: a leader's progress, reads, snapshots in transfer (an
InstallSnapshot goes to :mod:`.snapshots`).
"""

from __future__ import annotations

from .confchange import (
    CatchUpState,
)
from .messages import (
    AppendEntries,
    AppendResponse,
    ClusterMismatch,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
)
from .replication import Replication
from .types import Role, mypyc_attr

__all__ = ["Following"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Following(Replication):
    """A follower's handling of its leader, and of other clusters."""

    def _on_append_entries(self, m: AppendEntries, now: float) -> None:
        self._follow(m.src, now)
        prev, prev_term, entries = m.prev_log_index, m.prev_log_term, m.entries
        if prev < self.commit_index:
            # Entries up to our commit index are committed and therefore in the leader's
            # log too (Leader Completeness, §5.4): skip them rather than compare.
            skip = self.commit_index - prev
            if skip >= len(entries):
                self._send_append_response(m, True, self.commit_index)
                return
            entries = entries[skip:]
            prev = self.commit_index
        elif not self.log.matches(prev, prev_term):
            self._reject_append(m)
            return
        self._append_from_leader(entries, now)
        last_new = prev + len(entries)
        # Figure 2 (AppendEntries 5): commitIndex = min(leaderCommit, index of last new entry).
        if m.leader_commit > self.commit_index:
            self._commit_to(min(m.leader_commit, last_new), now)
        # The acknowledgement leaves only once the entries are durable (same Ready).
        self._send_append_response(m, True, last_new)

    def _send_append_response(self, m: AppendEntries, success: bool, match: int) -> None:
        self._send(
            AppendResponse(
                self.name,
                m.src,
                self.term,
                success,
                match,
                round=m.round,
                commit_index=self.commit_index,
                cluster=self.cluster_id,
            )
        )

    def _reject_append(self, m: AppendEntries) -> None:
        # Figure 2 (AppendEntries 2): reply false if the log has no entry at prevLogIndex
        # with prevLogTerm. The hint lets the leader skip a term's worth of entries per
        # round trip instead of one entry (§5.3, "fast backup").
        prev = m.prev_log_index
        if prev > self.log.last_index:
            conflict_index, conflict_term = self.log.last_index + 1, None
        else:
            conflict_term = self.log.term_at(prev)
            conflict_index = max(self.log.first_index_of_term(prev), self.commit_index + 1)
        self._send(
            AppendResponse(
                self.name,
                m.src,
                self.term,
                False,
                reject_index=prev,
                conflict_index=conflict_index,
                conflict_term=conflict_term,
                round=m.round,
                commit_index=self.commit_index,
                cluster=self.cluster_id,
            )
        )

    def _append_from_leader(self, entries: tuple[Entry, ...], now: float) -> None:
        log = self.log
        was_voter = self.can_campaign
        for i, entry in enumerate(entries):
            existing = log.term_at(entry.index)
            if existing == entry.term:
                continue  # already held (a duplicate or reordered message)
            if existing is not None:
                # Figure 2 (AppendEntries 3): a conflicting entry and all that follow it
                # are deleted. Committed entries never conflict (State Machine Safety).
                if entry.index <= self.commit_index:
                    raise AssertionError(
                        f"Raft safety violated on {self.name}: leader overwrites committed "
                        f"entry {entry.index} (commit index {self.commit_index})"
                    )
                self._truncate(entry.index)
            # Figure 2 (AppendEntries 4): append any new entries not already in the log.
            new = entries[i:] if i else entries
            log.extend(new)
            for added in new:
                if added.kind is EntryKind.CONFIG:
                    self.configs.append(added.index, added.data)
            if self.can_campaign != was_voter:
                # Joined or left the voters (or a truncation undid a change): the
                # election timer starts or stops accordingly (§4.1).
                self._reset_election_timer(now)
            return

    def _truncate(self, index: int) -> None:
        """Drop entries from ``index`` on (in memory now; from storage in the next Ready,
        which rewrites the log from the first entry it hands out)."""
        self.log.truncate_after(index - 1)
        self.configs.truncate(index)  # §4.1: fall back to the previous configuration
        self._unstable_from = min(self._unstable_from, index)
        self._stable_index = min(self._stable_index, index - 1)

    def _follow(self, leader: str, now: float) -> None:
        """A message from the leader of our term: follow it and restart the timer."""
        if self.role is Role.LEADER:
            raise AssertionError(
                f"Raft safety violated: {leader!r} and {self.name!r} both lead term {self.term}"
            )
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader, now)  # §5.2: a candidate defers
        if self.leader != leader:
            self.leader = leader
            self._incoming = None  # another leader's transfer: never joined with this one's
            self._fail_remote_reads()
        self._last_leader_contact = now
        self._reset_election_timer(now)

    def _on_heartbeat(self, m: Heartbeat, now: float) -> None:
        self._follow(m.src, now)
        # The leader sends min(match, commit): entries up to it are known to match ours.
        if m.commit > self.commit_index:
            self._commit_to(min(m.commit, self.log.last_index), now)
        self._send(
            HeartbeatResponse(
                self.name, m.src, self.term, m.round, self.commit_index, cluster=self.cluster_id
            )
        )

    def _on_timeout_now(self, m: TimeoutNow, now: float) -> None:
        # §3.10: the leader hands over: campaign at once, skipping PreVote, and ask voters
        # to ignore their leader lease for this election.
        self._follow(m.src, now)
        if self.can_campaign:
            self._campaign(now, pre=False, force=True)

    def _on_foreign(self, m: Message) -> None:
        # Cluster identity: a server never takes part in another cluster's log.
        if isinstance(m, ClusterMismatch):
            if (
                self.role is Role.LEADER
                and m.src in self.progress
                and m.cluster
                and m.cluster != self.cluster_id
            ):
                self._record_foreign_refusal(m.src, m.cluster)
            return
        if isinstance(m, (AppendEntries, Heartbeat, RequestVote, TimeoutNow, InstallSnapshot)):
            if m.src not in self.foreign:
                self.foreign[m.src] = m.cluster
                self._notices.append(
                    f"refused messages from {m.src!r} of cluster {m.cluster}: this server "
                    f"belongs to cluster {self.cluster_id}"
                )
            self._send(ClusterMismatch(self.name, m.src, self.term, cluster=self.cluster_id))

    def _record_foreign_refusal(self, name: str, cluster: str) -> None:
        if self.foreign.get(name) != cluster:
            self.foreign[name] = cluster
            self._notices.append(
                f"{name!r} belongs to another cluster (identity {cluster}) and refuses to "
                f"follow this leader of cluster {self.cluster_id}"
            )
            self.change_count += 1
        catch_up = self.catch_ups.get(name)
        if catch_up is not None and catch_up.state is CatchUpState.PENDING:
            catch_up.foreign_cluster = cluster
            catch_up.fail(f"it belongs to another cluster (identity {cluster})")
            self.change_count += 1

    def _on_cluster_mismatch(self, m: Message, now: float) -> None:
        self._on_foreign(m)  # never reached: step() hands these to _on_foreign first

    def _fix_identity(self) -> None:
        # The cluster's identity is the data of its first entry (a no-op of the first
        # leader); it is fixed once that entry is known committed.
        if self.commit_index < 1 or self.log.first_index != 1:
            return
        first = self.log.entry(1)
        if first.kind is EntryKind.NOOP and isinstance(first.data, str) and first.data:
            self.cluster_id = first.data
