"""The pure Raft core: no trio, no clock, no global randomness, no I/O."""

from .log import RaftLog
from .messages import *  # noqa: F403  (every message, entry and Config)
from .messages import __all__ as _messages
from .node import CatchUpState, LeaderNotReady, RaftNode, Role, TransferInProgress
from .options import CoreOptions
from .progress import Progress, ProgressMode
from .ready import HardState, PersistedState, Ready, Snapshot, SoftState

__all__ = [
    *_messages,
    "CatchUpState",
    "CoreOptions",
    "HardState",
    "LeaderNotReady",
    "PersistedState",
    "Progress",
    "ProgressMode",
    "RaftLog",
    "RaftNode",
    "Ready",
    "Role",
    "Snapshot",
    "SoftState",
    "TransferInProgress",
]
