"""The records a server hands out: :class:`Status`, :class:`ServerStatistics` and
:class:`TraceEvent`.

Owns: their shapes (frozen attrs classes, part of the public API), and how a node's
report becomes a :class:`Status`. May not touch: anything; every room of the runtime
may use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .._core.ready import NodeStatus
from .._core.types import Role
from .._histogram import HistogramCounts

__all__ = ["ServerStatistics", "Status", "TraceEvent", "status_of"]


@attrs.frozen
class Status:
    """A snapshot of one server's state, from :meth:`Server.status`."""

    name: str
    role: Role
    term: int
    leader: str | None
    commit_index: int
    last_applied: int
    last_log_index: int
    voters: frozenset[str]
    learners: frozenset[str]
    #: On a leader, each follower's match index (highest entry known replicated on it).
    match_index: Mapping[str, int] = attrs.field(factory=dict, eq=False, hash=False)
    #: On a leader handing over leadership, the server it hands over to.
    transfer_target: str | None = None
    #: This server is in no configuration it knows (neither voter nor learner): it was
    #: started without one, or removed, and does nothing until a leader adds it.
    waiting_to_be_added: bool = False
    #: The identity of the cluster this server belongs to ("" until it knows one).
    cluster_id: str = ""
    #: Index of the latest snapshot (0 before any).
    snapshot_index: int = 0
    #: While the configuration is joint (a change of several voters, §4.3): the voters
    #: being left (C_old's); ``voters`` are then C_new's. ``None`` otherwise.
    joint_voters: frozenset[str] | None = None


@attrs.frozen
class ServerStatistics:
    """Counters of one server, from :meth:`Server.statistics` (like
    ``trio.Lock.statistics()``)."""

    role: Role
    term: int
    commit_index: int
    last_applied: int
    #: Committed entries not yet applied.
    apply_lag: int
    #: Writes (and membership changes) waiting for their entry to be applied.
    writes_in_flight: int
    #: Linearizable reads waiting to be confirmed.
    reads_in_flight: int
    messages_sent: int
    messages_received: int
    #: Snapshots this server took, and installed from a leader.
    snapshots_taken: int
    snapshots_installed: int
    snapshot_index: int
    #: Entries held in the log (after the compaction point).
    log_length: int
    #: Elections this server started (the terms in which it campaigned).
    elections: int = 0
    #: Seconds from proposal to application of the writes this server committed as
    #: leader (its count: those writes).
    write_latency: HistogramCounts = attrs.field(factory=HistogramCounts)
    #: Committed entries not yet applied, seen each time this server applied a batch.
    apply_lag_entries: HistogramCounts = attrs.field(factory=HistogramCounts)


@attrs.frozen
class TraceEvent:
    """Something that happened on a server, for tracers (``tracer=`` option).

    ``kind`` is ``"role"`` (data: role, term, leader), ``"commit"`` (data: index),
    ``"propose"`` (data: index, term: a leader appended a client's write), ``"apply"``
    (data: index, term, kind) or ``"snapshot"`` (data: index, installed: taken here or
    installed from the leader). ``time`` is ``trio.current_time()``.
    """

    time: float
    server: str
    kind: str
    data: Mapping[str, Any] = attrs.field(eq=False, hash=False)


def status_of(name: str, report: NodeStatus, last_applied: int) -> Status:
    """The :class:`Status` of server ``name``: its node's ``report``, and the last entry it
    applied."""
    cfg = report.config
    return Status(
        name=name,
        role=report.role,
        term=report.term,
        leader=report.leader,
        commit_index=report.commit_index,
        last_applied=last_applied,
        last_log_index=report.last_log_index,
        voters=frozenset(cfg.voters),
        learners=frozenset(cfg.learners),
        match_index=report.match_index,
        transfer_target=report.transfer_target,
        waiting_to_be_added=name not in cfg.members,
        cluster_id=report.cluster_id,
        snapshot_index=report.snapshot_index,
        joint_voters=None if cfg.outgoing is None else frozenset(cfg.outgoing),
    )
