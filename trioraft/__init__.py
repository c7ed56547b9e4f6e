"""trioraft: Raft consensus for Python, built on Trio's structured concurrency.

Start servers with :func:`start_server` (or :func:`serve` with ``nursery.start``) around
your :class:`StateMachine`, connect them with a :class:`MemoryNetwork`, and call the
:class:`Server` handle: ``write``, ``read``, ``read_dirty``, ``await_leader``,
``add_server``, ``remove_server``, ``trigger_election``, ``transfer_leadership``,
``status`` and ``stop``.
"""

import logging

# _build first: it chooses the build (compiled or pure) before any compiled module loads;
# metrics imports prometheus-client only when metrics are used.
from . import _build, metrics
from ._client import Client, open_client
from ._core.messages import Config, Entry, EntryKind
from ._core.node import Role
from ._core.ready import Snapshot
from ._errors import (
    AuthenticationFailed,
    CatchUpFailed,
    ChangeInProgress,
    ConfigChangeInProgress,
    MachineError,
    MalformedMessage,
    NameInUse,
    NotLeader,
    NotVoter,
    OutcomeUnknown,
    RaftError,
    ReplyNotEncodable,
    ServerFailed,
    ServerStopped,
    SessionExpired,
    StoppedOutcomeUnknown,
    TransferFailed,
    UnknownServer,
    WriteNumberReused,
    WrongCluster,
)
from ._network import Endpoint, MemoryNetwork, NetworkStatistics, Transport
from ._network.tcp import TcpNetwork, TcpStatistics, open_tcp_network
from ._options import ServerOptions
from ._runtime import (
    Server,
    ServerStatistics,
    Status,
    TraceEvent,
    open_server,
    serve,
    start_server,
)
from ._state_machine import StateMachine
from ._storage import DiskStorage, MemoryStorage, StorageError
from ._sync_client import SyncClient

__version__ = "0.1.0"

_build.document(Entry, Snapshot)  # the compiled build's classes have no docstrings

# A library logs to "trioraft" and leaves the output to the application (configure
# logging to see the warnings of servers, such as one that waits to be added).
logging.getLogger("trioraft").addHandler(logging.NullHandler())

__all__ = [
    "AuthenticationFailed",
    "CatchUpFailed",
    "Config",
    "Client",
    "ChangeInProgress",
    "ConfigChangeInProgress",
    "DiskStorage",
    "Endpoint",
    "Entry",
    "EntryKind",
    "MachineError",
    "MalformedMessage",
    "MemoryNetwork",
    "MemoryStorage",
    "NameInUse",
    "NetworkStatistics",
    "NotLeader",
    "NotVoter",
    "OutcomeUnknown",
    "RaftError",
    "ReplyNotEncodable",
    "Role",
    "Server",
    "ServerFailed",
    "ServerOptions",
    "ServerStatistics",
    "ServerStopped",
    "SessionExpired",
    "Snapshot",
    "StateMachine",
    "Status",
    "StoppedOutcomeUnknown",
    "SyncClient",
    "StorageError",
    "TcpNetwork",
    "TcpStatistics",
    "TraceEvent",
    "TransferFailed",
    "Transport",
    "UnknownServer",
    "WriteNumberReused",
    "WrongCluster",
    "__version__",
    "metrics",
    "open_client",
    "open_server",
    "open_tcp_network",
    "serve",
    "start_server",
]
