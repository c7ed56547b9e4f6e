"""The TCP transport's limits and timings: every bound a connection meets, in one place
(read at the time of use, so tests may change them)."""

from __future__ import annotations

import errno

import trio

from .._errors import MalformedMessage
from .handshake import HandshakeError

#: Seconds a handshake may take (TLS's included).
HANDSHAKE_TIMEOUT = 5.0
#: Seconds one send may block before the connection is presumed dead.
SEND_TIMEOUT = 5.0
#: Frames queued for one peer or client; beyond, new ones are dropped (Raft resends).
QUEUE_SIZE = 4096
#: Reconnection backoff: first wait, and the longest.
BACKOFF = (0.02, 1.0)
#: Connections that have not authenticated yet, at most, at once (fewer if the process
#: may open few files: an eighth of its limit); more are closed as soon as accepted.
MAX_UNAUTHENTICATED = 64
#: Requests of one client connection being served at once, at most; past it, the
#: connection is not read until answers have gone out (TCP pushes back on the client).
MAX_CLIENT_REQUESTS = 1024
#: Client requests let in per pass of the scheduler, all client connections together
#: (see :class:`_Admissions`). Fewer leave more of a busy leader to replication under a
#: flood of requests; more serve more requests while it is busy (the hostile benchmark:
#: with 16, a flood of 8 clients took about a quarter of the CPU of a leader writing at
#: C=256; with 64, about half; with no limit, it deposed the leader).
CLIENT_REQUESTS_PER_PASS = 16
#: Peers not in the configuration that may be answered at once (a server that was just
#: added hears from the leader before it knows the configuration): each only while its
#: own connection to us lasts.
MAX_PROVISIONAL = 16
#: TCP keep-alive: idle seconds before the first probe, seconds between probes, probes.
KEEPALIVE = (10, 5, 3)
#: Seconds to wait before accepting again when ``accept`` runs out of file descriptors
#: or memory (as ``trio.serve_listeners`` does).
ACCEPT_RETRY = 0.1
_ACCEPT_CAPACITY_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS)
#: Frames longer than this are decoded a piece at a time, letting other tasks run.
LARGE_FRAME = 1 << 20
_CONNECTION_ERRORS = (
    OSError,  # ssl.SSLError included
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    HandshakeError,
    MalformedMessage,
)
