"""The pure Raft core: no trio, no clock, no global randomness."""

from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendResponse,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .node import LeaderNotReady, RaftNode, Role, TransferInProgress
from .options import ServerOptions
from .progress import Progress, ProgressMode

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "Config",
    "Entry",
    "EntryKind",
    "Heartbeat",
    "HeartbeatResponse",
    "LeaderNotReady",
    "Message",
    "Progress",
    "ProgressMode",
    "RaftLog",
    "RaftNode",
    "RequestVote",
    "Role",
    "ServerOptions",
    "TimeoutNow",
    "TransferInProgress",
    "VoteResponse",
]
