"""The pure Raft core: no trio, no clock, no global randomness, no I/O."""

from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendResponse,
    ClusterMismatch,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .node import CatchUpState, LeaderNotReady, RaftNode, Role, TransferInProgress
from .options import CoreOptions
from .progress import Progress, ProgressMode
from .ready import HardState, PersistedState, Ready, Snapshot, SoftState

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "CatchUpState",
    "ClusterMismatch",
    "Config",
    "CoreOptions",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "LeaderNotReady",
    "Message",
    "PersistedState",
    "Progress",
    "ProgressMode",
    "RaftLog",
    "RaftNode",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "Ready",
    "RequestVote",
    "Role",
    "Snapshot",
    "SoftState",
    "TimeoutNow",
    "TransferInProgress",
    "VoteResponse",
]
