"""What a leader knows about each follower's log: match and next index, flow control.

A follower is in one of two modes (as in etcd-io/raft's tracker):

* ``PROBE``: the leader does not know where the follower's log diverges. It sends one
  AppendEntries at a time and waits for the answer, backing up with the follower's hint.
* ``REPLICATE``: the logs match up to ``match``. The leader streams entries
  optimistically, advancing ``next`` as it sends, with at most ``max_inflight``
  unacknowledged messages in flight.
* ``SNAPSHOT``: the follower needs entries the leader has compacted away. The leader
  sends its snapshot in chunks (at most ``max_inflight`` unacknowledged) and nothing
  else until the follower has installed it (dissertation §5.3; etcd's snapshot state).
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["Progress", "ProgressMode"]


class ProgressMode(enum.Enum):
    """How the leader is replicating to one follower."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    """The leader's view of one follower (Figure 2's ``nextIndex`` / ``matchIndex``)."""

    __slots__ = (
        "acked_round",
        "commit",
        "heartbeat_match",
        "heartbeat_wanted",
        "idle_ticks",
        "inflight",
        "last_sent",
        "match",
        "mode",
        "next",
        "probe_sent",
        "recent_active",
        "snapshot_acked",
        "snapshot_index",
        "snapshot_progress_at",
        "snapshot_sent",
        "snapshot_transfer",
    )

    def __init__(self, next_index: int) -> None:
        #: Highest index known to be replicated on the follower.
        self.match = 0
        #: Index of the next entry to send.
        self.next = next_index
        self.mode = ProgressMode.PROBE
        #: In PROBE mode: a probe is out and unanswered.
        self.probe_sent = False
        #: In REPLICATE mode: last index of each unacknowledged AppendEntries, oldest first.
        self.inflight: deque[int] = deque()
        #: Heard from since the last CheckQuorum round.
        self.recent_active = False
        #: Highest round stamp the follower has acknowledged (§6.4, §6.4.1).
        self.acked_round = 0
        #: ``match`` when the previous heartbeat was answered (to notice lost messages).
        self.heartbeat_match = -1
        #: A read is waiting: send a heartbeat now even if one is not due.
        self.heartbeat_wanted = False
        #: The follower's commit index, as it last reported it.
        self.commit = 0
        #: Leader ticks in a row without hearing from it (for removed servers).
        self.idle_ticks = 0
        #: When the leader last sent it anything (heartbeats are due an interval later).
        self.last_sent = -float("inf")
        #: In SNAPSHOT mode: the snapshot being sent, the bytes the follower holds, the
        #: bytes sent, and when the follower last made progress.
        self.snapshot_index = 0
        self.snapshot_acked = 0
        self.snapshot_sent = 0
        self.snapshot_progress_at = 0.0
        #: In SNAPSHOT mode: the number of the transfer under way (InstallSnapshot's).
        self.snapshot_transfer = 0

    def __repr__(self) -> str:
        return (
            f"<Progress {self.mode.value} match={self.match} next={self.next} "
            f"inflight={len(self.inflight)}>"
        )

    def become_probe(self, next_index: int) -> None:
        """Back off to probing from ``next_index``."""
        self.mode = ProgressMode.PROBE
        self.next = max(next_index, self.match + 1)
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, index: int, now: float, transfer: int) -> None:
        """Send the snapshot at ``index`` from its first byte, as transfer ``transfer``."""
        self.mode = ProgressMode.SNAPSHOT
        self.snapshot_index = index
        self.snapshot_transfer = transfer
        self.snapshot_acked = 0
        self.snapshot_sent = 0
        self.snapshot_progress_at = now
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        """The logs are known to match up to ``match``: stream from there."""
        self.mode = ProgressMode.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def acknowledge(self, match_index: int) -> bool:
        """Record that the follower holds the log up to ``match_index``; True if news."""
        inflight = self.inflight
        while inflight and inflight[0] <= match_index:
            inflight.popleft()
        if match_index <= self.match:
            return False
        self.match = match_index
        if self.next <= match_index:
            self.next = match_index + 1
        return True
