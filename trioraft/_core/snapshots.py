"""Snapshots (§5, dissertation §5.3): taking one when enough is applied, sending one in
chunks to a follower that needs it (stalls and restarts of a transfer), and receiving
one: chunks of one transfer only, bounded by its declared size, checked against its
checksum before it is installed.

Owns: the latest snapshot, the transfer numbers, the incoming snapshot's chunks. May
not touch: votes, reads, the configuration history but to rebase it on a snapshot.
"""

from __future__ import annotations

from .messages import (
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
)
from .progress import Progress, ProgressMode
from .reads import Reads
from .ready import Snapshot, snapshot_checksum
from .types import IncomingSnapshot, mypyc_attr

__all__ = ["Snapshots"]


@mypyc_attr(allow_interpreted_subclasses=True)
class Snapshots(Reads):
    """Taking, sending and receiving snapshots."""

    def _snapshot_due(self, committed: tuple[Entry, ...]) -> bool:
        # §5: snapshot once snapshot_threshold entries were applied since the last one
        # (and since the last attempt that failed).
        return (
            self.compaction
            and bool(committed)
            and committed[-1].index - self.snapshot_index >= self.options.snapshot_threshold
            and committed[-1].index >= self._snapshot_retry_at
        )

    def snapshot_failed(self, index: int) -> None:
        """The runtime could not take the snapshot at ``index`` (the state machine's
        ``snapshot()`` raised, or its value cannot be encoded): ask again once another
        ``snapshot_threshold`` entries are applied, not at every Ready until then."""
        self._snapshot_retry_at = index + self.options.snapshot_threshold

    def snapshot_taken(self, index: int, data: bytes) -> Snapshot:
        """The runtime snapshotted the state machine after applying entry ``index``
        (``data``: the encoded state). The next Ready persists it and compacts the log,
        keeping ``snapshot_trailing`` entries behind it (§5.1)."""
        if index <= self.snapshot_index:
            assert self.snapshot is not None
            return self.snapshot
        if index > self._applied_handed:
            raise ValueError(f"cannot snapshot at {index}: only {self._applied_handed} applied")
        term = self.log.term_at(index)
        assert term is not None, f"entry {index} to snapshot is not in the log"
        config = self._config_at(index)
        snapshot = Snapshot(index, term, config, data, self.cluster_id)
        self.snapshot = snapshot
        self._pending_snapshot = snapshot
        self._restore = False
        self.configs.compact(index, config)
        cut = index - self.options.snapshot_trailing
        if cut > self.log.snapshot_index:
            cut_term = self.log.term_at(cut)
            assert cut_term is not None
            self.log.compact(cut, cut_term)
            self._pending_compact = (cut, cut_term)
        return snapshot

    def _start_transfer(self, pr: Progress, now: float) -> None:
        """Send ``pr``'s follower the latest snapshot, from its first byte, as a transfer
        of a number of its own (chunks of two transfers are never joined)."""
        self._transfers += 1
        pr.become_snapshot(self.snapshot_index, now, self._transfers)

    def _snapshot_stalled(self, pr: Progress, now: float) -> None:
        if now - pr.snapshot_progress_at > self.options.max_election_timeout:
            # No progress for an election timeout: start over, with the latest snapshot.
            self._start_transfer(pr, now)
        else:
            pr.snapshot_sent = pr.snapshot_acked  # resend what was not acknowledged

    def _snapshot_chunk(self, peer: str, pr: Progress) -> InstallSnapshot | None:
        snapshot = self.snapshot
        assert snapshot is not None, f"{peer!r} needs a snapshot and there is none"
        if pr.snapshot_index != snapshot.index:
            self._start_transfer(pr, self._now)  # a newer one: send that
        size = len(snapshot.data)
        chunk_size = self.options.snapshot_chunk_size
        window = self.options.max_inflight * chunk_size
        sent = pr.snapshot_sent
        if sent >= max(size, 1) or sent - pr.snapshot_acked >= window:
            return None
        data = snapshot.data[sent : sent + chunk_size]
        pr.snapshot_sent = sent + max(len(data), 1)
        pr.heartbeat_wanted = False
        return InstallSnapshot(
            self.name,
            peer,
            self.term,
            snapshot.index,
            snapshot.term,
            snapshot.config,
            sent,
            size,
            data,
            snapshot.checksum,
            pr.snapshot_transfer,
            cluster=self.cluster_id,
        )

    def _on_install_snapshot(self, m: InstallSnapshot, now: float) -> None:
        self._follow(m.src, now)
        if m.index <= self.commit_index:
            # It already holds everything the snapshot covers (committed, so matching).
            self._send_snapshot_response(m, m.size, done=True)
            return
        incoming = self._incoming
        # One transfer of one leader's term: never joined with another's chunks (two
        # leaders' snapshots of one index may differ in their bytes).
        key = (m.src, m.term, m.index, m.snapshot_term, m.size, m.checksum, m.transfer)
        if incoming is None or incoming.key != key:
            if m.offset != 0:
                self._send_snapshot_response(m, 0, gap=True)
                return
            incoming = self._incoming = IncomingSnapshot(key)
        held = incoming.held
        if m.offset > held:
            self._send_snapshot_response(m, held, gap=True)  # a chunk was lost: resend
            return
        incoming.add(m.data if m.offset == held else m.data[held - m.offset :])
        if incoming.held < m.size:
            self._send_snapshot_response(m, incoming.held)
            return
        self._incoming = None
        data = b"".join(incoming.chunks)
        if snapshot_checksum(data) != m.checksum:
            # Not the bytes the leader checksummed: discard them and fetch them again.
            self._notices.append(
                f"discarded the snapshot at index {m.index} received from {m.src!r}: its "
                "bytes do not match its checksum; fetching it again"
            )
            self._send_snapshot_response(m, 0, gap=True)
            return
        snapshot = Snapshot(m.index, m.snapshot_term, m.config, data, m.cluster, m.checksum)
        self._install_snapshot(snapshot, now)
        # Acknowledged once the snapshot is durable (the same Ready persists it).
        self._send_snapshot_response(m, m.size, done=True)

    def _install_snapshot(self, snapshot: Snapshot, now: float) -> None:
        # §5.3 (Figure 13): if the log holds the snapshot's last entry, keep what follows
        # it; otherwise discard the whole log. Either way, the state machine is reset
        # from the snapshot and everything up to it counts as committed and applied.
        was_voter = self.can_campaign
        index, term = snapshot.index, snapshot.term
        keep = self.log.term_at(index) == term and index <= self.log.last_index
        retained = self.log.slice(index + 1, self.log.last_index) if keep else []
        self.log.reset(index, term, retained)
        if not keep:
            self._truncate_from = index + 1
            self._stable_index = index
        self._unstable_from = max(self._unstable_from, index + 1)
        self._pending_compact = (index, term)
        self._pending_snapshot = snapshot
        self._restore = True
        self.snapshot = snapshot
        self.configs.reset(
            index,
            snapshot.config,
            ((e.index, e.data) for e in retained if e.kind is EntryKind.CONFIG),
        )
        self.commit_index = max(self.commit_index, index)
        self._applied_handed = index
        if not self.cluster_id and snapshot.cluster_id:
            self.cluster_id = snapshot.cluster_id
        if self.can_campaign != was_voter:
            self._reset_election_timer(now)

    def _send_snapshot_response(
        self, m: InstallSnapshot, offset: int, *, done: bool = False, gap: bool = False
    ) -> None:
        self._send(
            InstallSnapshotResponse(
                self.name,
                m.src,
                self.term,
                m.index,
                offset,
                done,
                gap,
                m.transfer,
                cluster=self.cluster_id,
            )
        )

    def _on_install_snapshot_response(self, m: InstallSnapshotResponse, now: float) -> None:
        pr = self._heard_from(m.src, 0, 0)
        if pr is None:
            return
        if pr.mode is not ProgressMode.SNAPSHOT or m.index != pr.snapshot_index:
            if m.done and m.index > pr.match and pr.mode is ProgressMode.SNAPSHOT:
                self._snapshot_installed(m.src, pr, m.index, now)  # an older one: fine
            return
        if m.done:
            # Installed, whichever of our transfers of this snapshot brought it.
            self._snapshot_installed(m.src, pr, m.index, now)
            return
        if m.transfer != pr.snapshot_transfer:
            return  # about a transfer given up on: its offsets mean nothing now
        if m.offset > pr.snapshot_acked:
            pr.snapshot_acked = m.offset
            pr.snapshot_progress_at = now
        if m.gap:
            # Resend from what it holds: below what it acknowledged if it discarded its
            # bytes (they did not match the checksum, or it restarted).
            pr.snapshot_acked = m.offset
            pr.snapshot_sent = m.offset

    def _snapshot_installed(self, peer: str, pr: Progress, index: int, now: float) -> None:
        pr.acknowledge(index)
        pr.become_probe(index + 1)
        self._maybe_commit(now)
        self._after_match(peer, now)
