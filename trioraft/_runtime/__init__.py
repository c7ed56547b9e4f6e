"""The Trio runtime: a server's tasks, and the :class:`~trioraft.Server` handle users call.

The runtime makes no Raft decisions. It feeds the core (:class:`~trioraft._core.RaftNode`)
events with the current time, carries out what the core hands it in a
:class:`~trioraft._core.ready.Ready`, and reports and waits on what the core reports. Its
rooms, each a file that says what it owns and what it may not touch (docs/design.rst
has the map):

* :mod:`.server`: the public handle (:class:`Server`);
* :mod:`.serve`: starting a server (:func:`serve`, :func:`start_server`,
  :func:`open_server`);
* :mod:`.driver`: the tasks (receive, timer, ready loop) and the Ready/Advance cycle;
* :mod:`.replication`: sending, and a leader's replication tasks;
* :mod:`.apply`: the state machine, client sessions, snapshots;
* :mod:`.watch`: ``leadership()``, ``terms()``, ``role_changes()``, the tracer;
* :mod:`.waiters`: the callers waiting, and the server's end;
* :mod:`.changes`: membership changes and transfers, as their callers wait;
* :mod:`.clients`: the server's side of the client protocol;
* :mod:`.machine` and :mod:`.records`: the machine's checks and hooks, the records
  handed out (:class:`Status`, :class:`ServerStatistics`, :class:`TraceEvent`).
"""

from .machine import check_machine
from .records import ServerStatistics, Status, TraceEvent
from .serve import open_server, serve, start_server
from .server import Server

__all__ = [
    "Server",
    "ServerStatistics",
    "Status",
    "TraceEvent",
    "check_machine",
    "open_server",
    "serve",
    "start_server",
]
