"""TCP: one server per process, across machines.

:func:`open_tcp_network` listens on an address while it is open, and carries the messages
of the server registered on it to its peers, one outgoing connection per peer (opened
with ``trio.open_tcp_stream``, reconnected with backoff), and those of clients that
connect to it. Every connection starts with a handshake (:mod:`.handshake`): with a
shared ``secret``, both ends prove they know it, bound to both names, both nonces and the
server the dialler meant to reach, and every frame after it travels in an authenticated
record (:mod:`.frames`); with an ``ssl_context``, the stream is TLS (mutual TLS if the
context asks for client certificates); with neither, the network only listens on a
loopback address.

Peers and clients live apart: a client's name never takes a peer's place, a client is
never sent Raft traffic, and with ``client_secret`` a client's key cannot authenticate a
peer. Before a connection has authenticated it may only send a small handshake frame,
within a deadline, and only so many such connections exist at once. A malformed,
oversized or wrongly-typed frame, a message whose sender is not the peer that
authenticated, or a failed handshake closes that one connection, is counted in
:meth:`TcpNetwork.statistics` and logged; the server never stops for it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import trio

from .._codec import check_value as _check_value
from .._core.messages import Message
from .._errors import MalformedMessage, NameInUse
from .._protocol import ClientRequest, ClientResponse
from . import handshake, wire
from .frames import FrameStream, OversizedFrame, RecordOpener, RecordSealer
from .handshake import MAX_HANDSHAKE_FRAME, HandshakeError, Intro

__all__ = [
    "FrameStream",
    "HandshakeError",
    "TcpEndpoint",
    "TcpNetwork",
    "TcpStatistics",
    "client_handshake",
    "open_tcp_network",
    "parse_address",
]

logger = logging.getLogger("trioraft.tcp")

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


@attrs.frozen
class TcpStatistics:
    """Counters of a :class:`TcpNetwork` since it was opened."""

    sent: int
    received: int
    #: Messages dropped because their peer or client could not take them.
    dropped: int
    #: Connections closed for a frame that is not a well-formed message (a record that
    #: fails authentication included).
    malformed: int
    #: Connections closed for a frame over ``max_frame``.
    oversized: int
    #: Connections closed for a message whose sender is not the connection's peer.
    forged: int
    #: Connections closed because the handshake (authentication) failed.
    auth_failures: int
    #: Connections open now (incoming and outgoing).
    connections: int
    #: Outgoing connections opened (including reconnections).
    connects: int
    #: Connections closed as soon as accepted: too many had not authenticated yet.
    refused: int = 0


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as ``(host, port)``; ``ValueError`` if not."""
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"expected a 'host:port' address, got {address!r}")
    host, _, port_text = address.rpartition(":")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"bad port in address {address!r}")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address in {address!r}") from None
    elif "[" in host or "]" in host:
        raise ValueError(f"bad address {address!r}: unbalanced brackets")
    elif ":" in host:
        raise ValueError(
            f"bad address {address!r}: an IPv6 address goes in brackets, as '[{host}]:{port}'"
        )
    if not host or any(c.isspace() for c in host) or not 0 <= port < 65536:
        raise ValueError(f"bad address {address!r}")
    return host, port


def check_secret(secret: object, name: str = "secret") -> None:
    """``ValueError`` unless ``secret`` is ``None`` or non-empty bytes."""
    if secret is not None and (not isinstance(secret, bytes) or not secret):
        raise ValueError(f"{name} must be non-empty bytes, got {type(secret).__qualname__}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _keepalive(stream: trio.SocketStream) -> None:
    """Have the kernel probe an idle connection, so a half-open one (its host gone, a
    cable pulled) is noticed and closed."""
    sock = stream.socket
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in zip(
            ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"), KEEPALIVE, strict=True
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _max_unauthenticated() -> int:
    try:
        import resource  # POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - no such limit here
        return MAX_UNAUTHENTICATED
    if soft == resource.RLIM_INFINITY:
        return MAX_UNAUTHENTICATED
    return max(4, min(MAX_UNAUTHENTICATED, soft // 8))


#: Whether a frame may be written to a socket's file descriptor with ``os.write``.
_DIRECT_WRITES = os.name == "posix"


class _Link:
    """The way out to one peer or client: a queue of frames that a pump task sends; and,
    while a plain TCP connection is up and nothing waits in that queue, a write straight
    to the socket from the sender's task (one task switch and one Trio send fewer per
    message). Frames leave in the order they were put, either way. With a secret, each
    send is one sealed record, made for the connection it is written to."""

    __slots__ = ("backlog", "fd", "pending", "queue", "room", "scope", "sealer", "tail")

    def __init__(self, queue: trio.MemorySendChannel[bytes]) -> None:
        self.queue = queue
        #: The connection's socket while a pump serves it (plain TCP on POSIX only). It
        #: is cleared before the socket is closed, so it never names a reused descriptor.
        self.fd: int | None = None
        #: Frames were queued that the pump has not finished sending: put() queues too.
        self.backlog = False
        #: Its connection's record sealer, while attached (None: frames go as they are).
        self.sealer: RecordSealer | None = None
        #: What a direct write left unsent of its record: it goes out first.
        self.tail = b""
        #: The task(s) serving the link: cancelled when the link is closed.
        self.scope: trio.CancelScope | None = None
        #: A client's requests being served (their ids), and an event set when there
        #: is room for more.
        self.pending: set[int] = set()
        self.room: trio.Event | None = None

    def put(self, frame: bytes) -> None:
        """Send ``frame``; raises ``trio.WouldBlock`` if the queue is full, or
        ``trio.ClosedResourceError`` if the link was closed."""
        fd = self.fd
        if fd is not None and not self.backlog:
            data = frame if self.sealer is None else self.sealer.seal(frame)
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                written = 0  # the pump meets the error too, and ends the connection
                self.fd = None
            if written == len(data):
                return
            # The rest goes first, before anything queued: a record is never cut in two.
            self.tail = data[written:]
            frame = b""  # wakes the pump
        self.queue.send_nowait(frame)
        self.backlog = True

    def attach(self, stream: trio.abc.Stream, sealer: RecordSealer | None = None) -> None:
        """A pump now serves ``stream``: direct writes may go to it if it is plain TCP."""
        self.sealer = sealer
        if _DIRECT_WRITES and isinstance(stream, trio.SocketStream):
            self.fd = stream.socket.fileno()

    def detach(self) -> None:
        """The pump stops (its socket is about to close): queue everything from now on,
        and forget what was owed to that connection."""
        self.fd = None
        self.sealer = None
        self.tail = b""

    def take_tail(self) -> bytes:
        """What a direct write left unsent (to send before anything queued)."""
        tail, self.tail = self.tail, b""
        return tail

    def close(self) -> None:
        """No more sends; the task serving the link ends."""
        self.detach()
        self.queue.close()
        if self.scope is not None:
            self.scope.cancel()

    def answered(self, request_id: int, limit: int) -> None:
        """A client's request was answered: room for another."""
        self.pending.discard(request_id)
        if self.room is not None and len(self.pending) < limit:
            self.room.set()
            self.room = None

    async def wait_room(self, limit: int) -> None:
        """Until fewer than ``limit`` of the client's requests are being served."""
        while len(self.pending) >= limit:
            self.room = trio.Event()
            await self.room.wait()


class _Admissions:
    """Client requests let in per pass of Trio's scheduler, all client connections
    together: a flood of requests, however many connections carry it, adds the work of
    at most ``per_pass`` requests to each pass, so that peers' messages, timers and
    heartbeats keep their turn (each client request becomes a task: thousands let in at
    once stalled a leader for over a second, and its followers elected another). Past a
    pass's share, a connection's reader waits for a later pass; the share is given anew
    at most once a pass, by a task started when it runs out (a new task runs in the next
    pass)."""

    __slots__ = ("_next", "left", "per_pass")

    def __init__(self, per_pass: int) -> None:
        self.per_pass = per_pass
        self.left = per_pass
        self._next: trio.Event | None = None

    def try_take(self) -> bool:
        """Let one request in now, if this pass has room."""
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    async def take(self, nursery: trio.Nursery) -> None:
        """Let one request in, in a later pass if this one is full."""
        while not self.try_take():
            if self._next is None:
                self._next = trio.Event()
                nursery.start_soon(self._refill)  # a new task runs in the next pass
            await self._next.wait()

    async def _refill(self) -> None:
        self.left = self.per_pass
        event, self._next = self._next, None
        if event is not None:
            event.set()


async def client_handshake(
    frames: FrameStream,
    secret: bytes | None,
    role: str,
    name: str,
    listen: str = "",
    *,
    to: str = "",
    records: bool = True,
) -> str:
    """The connecting side's handshake: as ``role`` (``"peer"`` or ``"client"``) named
    ``name``, meaning to reach the server ``to`` (``""``: whichever answers), prove
    knowledge of ``secret`` and check that the other end knows it too (a peer also says
    where it listens). Then, with a secret, ``frames`` carries sealed records. Returns
    the other end's server name; raises :class:`HandshakeError`."""
    limit, frames.max_frame = frames.max_frame, MAX_HANDSHAKE_FRAME
    nonce_s = handshake.parse_hello(handshake.parse_control(await frames.receive()))
    intro, frame = handshake.make_intro(secret, nonce_s, role, name, to, listen)
    await frames.stream.send_all(frame)
    answer = handshake.parse_control(await frames.receive())
    server = handshake.parse_answer(answer, secret, nonce_s, intro)
    frames.max_frame = limit
    if secret is not None and records:
        _secure(frames, handshake.traffic_keys(secret, nonce_s, intro, server, dialler=True))
    return server


def _secure(frames: FrameStream, keys: handshake.TrafficKeys) -> None:
    frames.secure(
        RecordSealer(keys.outbound_key, keys.outbound_iv),
        RecordOpener(keys.inbound_key, keys.inbound_iv),
    )


def _certificate_names(stream: trio.abc.Stream) -> set[str] | None:
    """The names a TLS peer's verified certificate gives (subject alternative names and
    common name); ``None`` if it showed none."""
    if not isinstance(stream, trio.SSLStream):
        return None
    cert = stream.getpeercert()
    if not cert:
        return None
    names = {str(v) for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")}
    for rdn in cert.get("subject", ()):
        names.update(str(v) for k, v in rdn if k == "commonName")
    return names


class TcpEndpoint:
    """The server's attachment to a :class:`TcpNetwork`."""

    def __init__(self, network: TcpNetwork, name: str) -> None:
        self._network = network
        self._name = name
        self._closed = False

    @property
    def name(self) -> str:
        """The registered name."""
        return self._name

    def send(self, message: Message) -> None:
        """Send ``message`` without blocking (dropped if its peer cannot take it)."""
        if message.src != self._name:
            raise MalformedMessage(f"{self._name!r} cannot send a message from {message.src!r}")
        if not self._closed:
            self._network._send(message)

    #: Raise :class:`TypeError` naming the type if a value cannot cross this network
    #: (it is not a msgpack value). The same function as :class:`~trioraft.DiskStorage`'s,
    #: so a server on both checks a value once.
    check_value = staticmethod(_check_value)

    def learn_addresses(self, addresses: Mapping[str, str]) -> None:
        """Peers added later, and where to reach them (from the configuration)."""
        self._network.learn_addresses(addresses)

    def keep_only(self, members: Collection[str]) -> None:
        """The configuration's members are now ``members``: links to any other server
        are closed (and opened again if it comes back)."""
        if not self._closed:
            self._network.keep_only(members)

    def address_of(self, name: str) -> str | None:
        """Where the server ``name`` listens, if known (this server's own address too)."""
        if name == self._name:
            return self._network.listen
        return self._network._address_of(name)

    async def receive_batch(self) -> list[Message]:
        """Wait for messages to this server; return all that have arrived."""
        if self._closed:
            raise trio.ClosedResourceError(f"endpoint {self._name!r} is closed")
        return await self._network._receive_batch()

    def deliver_to(self, handler: Callable[[list[Message]], None]) -> None:
        """From now on, hand the messages that arrive to ``handler`` (a batch at a time:
        those one connection brought together, in order) from the task that read them,
        instead of keeping them for :meth:`receive_batch`. ``handler`` must not raise."""
        if not self._closed:
            self._network._handler = handler

    def close(self) -> None:
        """Leave the network (the listener stays until the network closes)."""
        self._closed = True
        self._network._unregister(self)


def _secrets_by_role(
    secret: bytes | None, client_secret: bytes | None
) -> dict[str, tuple[bytes | None, ...]]:
    # A peer proves the cluster's secret; a client the client secret, or the cluster's
    # (a key that authenticates a peer may do anything a client may).
    clients = (secret,) if client_secret is None else (client_secret, secret)
    return {"peer": (secret,), "client": tuple(s for s in clients if s is not None) or (None,)}


class TcpNetwork:
    """A transport over TCP for one server per process. Made by :func:`open_tcp_network`."""

    def __init__(
        self,
        listen: str,
        peers: Mapping[str, str],
        secret: bytes | None,
        ssl_context: Any,
        max_frame: int,
        client_secret: bytes | None = None,
        *,
        records: bool = True,
    ) -> None:
        host, port = parse_address(listen)
        check_secret(secret)
        check_secret(client_secret, "client_secret")
        self._server_ssl, self._client_ssl = _contexts(ssl_context)
        _check_protection(listen, host, secret, self._server_ssl)
        if isinstance(max_frame, bool) or not isinstance(max_frame, int) or max_frame < 1024:
            raise ValueError(f"max_frame must be an integer >= 1024, got {max_frame!r}")
        self.listen = listen
        self._host, self._port = host, port
        if not isinstance(peers, Mapping):
            raise TypeError(
                "peers must be a mapping of server names to 'host:port' addresses, got "
                f"{type(peers).__qualname__}"
            )
        #: Where the members are: the peers given, and those the configuration adds.
        self._addresses = {name: address for name, address in peers.items()}
        for address in self._addresses.values():
            parse_address(address)
        #: Servers not (yet) in the configuration that dialled us as peers, and the
        #: connection that vouches for each (see MAX_PROVISIONAL).
        self._provisional: dict[str, tuple[str, trio.CancelScope]] = {}
        #: The configuration's members, once the server knows them (None: not yet).
        self._members: frozenset[str] | None = None
        self._secret = secret
        self._secrets = _secrets_by_role(secret, client_secret)
        #: With a secret, whether frames travel in sealed records (False only to measure
        #: what they cost: the benchmark's "handshake only" mode, as before them).
        self._records = records
        self.max_frame = max_frame
        self._endpoint: TcpEndpoint | None = None
        self._inbox_send, self._inbox = trio.open_memory_channel[Message](QUEUE_SIZE)
        #: Where messages go when the server takes them by call (:meth:`TcpEndpoint.deliver_to`).
        self._handler: Callable[[list[Message]], None] | None = None
        #: Outgoing links to peers, and clients' connections: two name spaces.
        self._links: dict[str, _Link] = {}
        self._clients: dict[str, _Link] = {}
        #: Each peer's incoming connection (the newest wins: an older one is half-open).
        self._incoming: dict[str, trio.CancelScope] = {}
        self._unauthenticated = 0
        self._admissions = _Admissions(CLIENT_REQUESTS_PER_PASS)
        self._max_unauthenticated = _max_unauthenticated()
        self._refusals_logged_at = -float("inf")
        self._nursery: trio.Nursery | None = None
        self._counts = dict.fromkeys(
            ("sent", "received", "dropped", "malformed", "oversized", "forged", "auth_failures",
             "connections", "connects", "refused"),
            0,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<TcpNetwork listen={self.listen!r} peers={sorted(self._addresses)}>"

    @property
    def port(self) -> int:
        """The port it listens on (useful with port 0)."""
        return self._port

    def statistics(self) -> TcpStatistics:
        """Message and connection counters (Trio's ``statistics()`` convention)."""
        return TcpStatistics(**self._counts)

    # ---------------------------------------------------------- registration
    def register(self, name: str) -> TcpEndpoint:
        """Attach the server ``name`` (one per network)."""
        if self._endpoint is not None:
            raise NameInUse(f"{self._endpoint.name!r} is already registered on this network")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a server name must be a non-empty string, got {name!r}")
        self._addresses.pop(name, None)
        endpoint = TcpEndpoint(self, name)
        self._endpoint = endpoint
        for peer in list(self._addresses):
            self._connect(peer)
        return endpoint

    def _unregister(self, endpoint: TcpEndpoint) -> None:
        if self._endpoint is endpoint:
            self._endpoint = None
            self._handler = None
            for link in self._links.values():
                link.close()
            self._links.clear()

    def learn_addresses(self, addresses: Mapping[str, str]) -> None:
        """Reach the members named in ``addresses`` there (peers given at the start keep
        their address)."""
        for name, address in addresses.items():
            if self._endpoint is not None and name == self._endpoint.name:
                continue
            if name not in self._addresses:
                parse_address(address)
                self._addresses[name] = address
                self._provisional.pop(name, None)
                self._connect(name)

    def keep_only(self, members: Collection[str]) -> None:
        """Links only to ``members`` (the configuration's), and to provisional peers."""
        self._members = frozenset(members)
        for name in list(self._links):
            if name not in self._members and name not in self._provisional:
                self._links.pop(name).close()
        for name in self._members:
            if name in self._provisional and name not in self._addresses:
                self._addresses[name] = self._provisional.pop(name)[0]
            self._connect(name)

    def _address_of(self, name: str) -> str | None:
        address = self._addresses.get(name)
        if address is None and name in self._provisional:
            address = self._provisional[name][0]
        return address

    # ------------------------------------------------------------- sending
    def _send(self, message: Message) -> None:
        # Two name spaces: answers go to clients, everything else to peers only.
        client = type(message) is ClientResponse
        link = (self._clients if client else self._links).get(message.dst)
        if link is None:
            self._counts["dropped"] += 1
            return
        if client:
            link.answered(message.request_id, MAX_CLIENT_REQUESTS)  # type: ignore[attr-defined]
        try:
            frame = wire.encode(message)
        except (TypeError, MalformedMessage) as exc:
            self._counts["dropped"] += 1
            logger.error("cannot send %s to %r: %s", type(message).__name__, message.dst, exc)
            return
        try:
            link.put(frame)
            self._counts["sent"] += 1
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._counts["dropped"] += 1

    async def _receive_batch(self) -> list[Message]:
        batch = [await self._inbox.receive()]
        while len(batch) < 1024:
            try:
                batch.append(self._inbox.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    def _deliver(self, message: Message) -> None:
        try:
            self._inbox_send.send_nowait(message)
            self._counts["received"] += 1
        except trio.WouldBlock:
            self._counts["dropped"] += 1

    # ------------------------------------------------- outgoing connections
    def _connect(self, peer: str) -> None:
        if peer in self._links or self._nursery is None or self._endpoint is None:
            return
        if self._address_of(peer) is None or peer == self._endpoint.name:
            return
        if self._members is not None and peer not in self._members | self._provisional.keys():
            return
        send, receive = trio.open_memory_channel[bytes](QUEUE_SIZE)
        link = self._links[peer] = _Link(send)
        link.scope = trio.CancelScope()
        self._nursery.start_soon(self._connector, peer, link, receive)

    async def _connector(
        self, peer: str, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        assert link.scope is not None
        backoff = BACKOFF[0]
        with link.scope:
            while self._endpoint is not None and self._links.get(peer) is link:
                try:
                    await self._run_outgoing(peer, link, frames)
                    backoff = BACKOFF[0]
                except trio.EndOfChannel:
                    return
                except _CONNECTION_ERRORS as exc:
                    logger.debug("connection to %r: %s", peer, exc)
                except Exception:  # nothing a remote end does may stop the server
                    logger.exception("connection to %r failed", peer)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF[1])

    async def _dial(self, peer: str, name: str) -> FrameStream:
        address = self._address_of(peer)
        if address is None:
            raise trio.EndOfChannel  # forgotten meanwhile
        host, port = parse_address(address)
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        try:
            self._counts["connects"] += 1
            _keepalive(stream)  # type: ignore[arg-type]
            if self._client_ssl is not None:
                stream = trio.SSLStream(stream, self._client_ssl, server_hostname=host)
            framed = FrameStream(stream, self.max_frame)
            await client_handshake(
                framed, self._secret, "peer", name, self.listen, to=peer, records=self._records
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return framed

    async def _run_outgoing(
        self, peer: str, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        name = endpoint.name  # read now: the endpoint may close while we connect
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            framed = await self._dial(peer, name)
        self._counts["connections"] += 1
        try:
            async with framed.stream:
                link.attach(framed.stream, framed.sealer)
                try:
                    await _pump_until_closed(framed, link, frames)
                finally:
                    link.detach()
        finally:
            self._counts["connections"] -= 1

    # ------------------------------------------------- incoming connections
    async def _accept_connections(
        self, listener: trio.SocketListener, handlers: trio.Nursery
    ) -> None:
        """Accept connections, each served by a task of its own (as
        ``trio.serve_listeners`` does), but one over the cap of unauthenticated
        connections is closed here at once, with no task: a stream of connections the
        cap refuses costs the server about 100 us each, not 200-300 (500 idle
        connections, each opened again a second after it is closed, took a tenth of a
        CPU). The accepted one counts as unauthenticated from now on."""
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    # Out of file descriptors or memory: a passing condition.
                    logger.error("accept failed: %s; retrying", os.strerror(exc.errno))
                    await trio.sleep(ACCEPT_RETRY)
                    continue
                if self._unauthenticated >= self._max_unauthenticated:
                    self._counts["refused"] += 1  # refused at once: no file kept open for it
                    stream.socket.close()
                    continue
                self._unauthenticated += 1
                handlers.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection (counted as unauthenticated until it is)."""
        wrapped: trio.abc.Stream = stream
        if self._server_ssl is not None:
            wrapped = trio.SSLStream(stream, self._server_ssl, server_side=True)
        framed = FrameStream(wrapped, MAX_HANDSHAKE_FRAME)
        self._counts["connections"] += 1
        authenticating = True
        deadline = trio.current_time() + HANDSHAKE_TIMEOUT
        try:
            async with wrapped:
                intro, refused = await self._authenticate(framed, deadline)
                if intro is None:
                    if refused:  # the refusal must reach it: see _linger
                        await _linger(wrapped, deadline)
                    return
                self._unauthenticated -= 1
                authenticating = False
                # Only now: the handshake's deadline closes a connection before this.
                _keepalive(stream)
                framed.max_frame = self.max_frame
                await self._serve_authenticated(framed, intro)
        except Exception as exc:  # whatever a connection does, the server goes on
            logger.debug("connection closed: %r", exc)
        finally:
            self._unauthenticated -= authenticating
            self._counts["connections"] -= 1

    async def _authenticate(
        self, framed: FrameStream, deadline: float
    ) -> tuple[Intro | None, bool]:
        """The dialler's intro once the handshake succeeded, else ``None`` (counted,
        logged); and whether it was refused with a message (a handshake that failed its
        checks), not merely dropped (bytes that are no handshake, a deadline passed)."""
        endpoint = self._endpoint
        if endpoint is None:
            return None, False
        try:
            with trio.fail_at(deadline):
                return await self._accept(framed, endpoint.name), False
        except _CONNECTION_ERRORS as exc:
            self._counts["auth_failures"] += 1
            self._log_refusal(exc)
            return None, isinstance(exc, HandshakeError)

    async def _accept(self, framed: FrameStream, name: str) -> Intro:
        nonce_s, hello = handshake.make_hello()
        await framed.stream.send_all(hello)
        intro = handshake.parse_intro(handshake.parse_control(await framed.receive()))
        try:
            secret = handshake.check_intro(intro, nonce_s, self._secrets[intro.role])
            self._check_claim(intro, name, framed.stream)
        except HandshakeError as exc:
            reason = "authentication failed" if exc.refused else str(exc)
            with suppress(*_CONNECTION_ERRORS):
                await framed.stream.send_all(handshake.refusal(reason))
            raise
        await framed.stream.send_all(handshake.make_answer(secret, nonce_s, intro, name))
        if secret is not None and self._records:
            _secure(framed, handshake.traffic_keys(secret, nonce_s, intro, name, dialler=False))
        return intro

    def _check_claim(self, intro: Intro, name: str, stream: trio.abc.Stream) -> None:
        """Whether an authenticated dialler may be what it says it is."""
        if intro.to and intro.to != name:
            raise HandshakeError(f"this is {name!r}, not {intro.to!r}")  # relayed, or lost
        if intro.role != "peer":
            return
        if intro.name == name:
            raise HandshakeError(f"a peer cannot be named {name!r}: that is this server")
        names = _certificate_names(stream)
        if names is None:
            return
        # Mutual TLS: the certificate must name the server it claims to be, or the host
        # the cluster knows it at (as etcd checks its peers' certificates).
        address = self._address_of(intro.name) or intro.listen
        host = parse_address(address)[0] if address else None
        if intro.name not in names and host not in names:
            raise HandshakeError(f"the certificate of {intro.name!r} does not name it")

    def _log_refusal(self, exc: BaseException) -> None:
        # At most one line a second: a flood of bad handshakes must not flood the log.
        now = trio.current_time()
        if now - self._refusals_logged_at >= 1.0:
            self._refusals_logged_at = now
            logger.warning(
                "refused a connection: %s (%d handshakes failed so far)",
                exc or type(exc).__name__,
                self._counts["auth_failures"],
            )

    async def _serve_authenticated(self, framed: FrameStream, intro: Intro) -> None:
        if intro.role == "client":
            await self._serve_client(framed, intro.name)
        else:
            await self._serve_peer(framed, intro)

    async def _serve_peer(self, framed: FrameStream, intro: Intro) -> None:
        peer = intro.name
        older = self._incoming.get(peer)
        if older is not None:
            older.cancel()  # the peer dialled again: the older connection is dead
        with trio.CancelScope() as scope:
            self._incoming[peer] = scope
            try:
                self._answer_there(peer, intro.listen, scope)
                await self._read_messages(framed, peer, None)
            finally:
                if self._incoming.get(peer) is scope:
                    del self._incoming[peer]
                self._forget_provisional(peer, scope)

    def _answer_there(self, peer: str, listen: str, scope: trio.CancelScope) -> None:
        """A peer the configuration does not name yet (it added us, or we were just
        added) is answered at the address it gave, while this connection lasts."""
        if not listen or (self._address_of(peer) is not None and peer not in self._provisional):
            return
        if len(self._provisional) >= MAX_PROVISIONAL and peer not in self._provisional:
            logger.warning("not answering %r: too many peers outside the configuration", peer)
            return
        try:
            parse_address(listen)
        except ValueError:
            return
        self._provisional[peer] = (listen, scope)
        self._connect(peer)

    def _forget_provisional(self, peer: str, scope: trio.CancelScope) -> None:
        entry = self._provisional.get(peer)
        if entry is not None and entry[1] is scope:
            del self._provisional[peer]
            link = self._links.get(peer)
            if link is not None and peer not in self._addresses:
                del self._links[peer]
                link.close()

    async def _serve_client(self, framed: FrameStream, name: str) -> None:
        older = self._clients.get(name)
        if older is not None:
            # The same client again (another address of ours, a reconnection): the
            # newest connection gets the answers.
            older.close()
        send, receive = trio.open_memory_channel[bytes](QUEUE_SIZE)
        link = self._clients[name] = _Link(send)
        link.attach(framed.stream, framed.sealer)
        try:
            async with trio.open_nursery() as nursery:
                link.scope = nursery.cancel_scope
                nursery.start_soon(_pump_quietly, framed, link, receive)
                await self._read_messages(framed, name, link)
                nursery.cancel_scope.cancel()
        finally:
            link.detach()
            if self._clients.get(name) is link:
                del self._clients[name]
            send.close()

    async def _read_messages(self, framed: FrameStream, peer: str, client: _Link | None) -> None:
        batch: list[Message] = []
        try:
            while True:
                if client is not None and len(client.pending) >= MAX_CLIENT_REQUESTS:
                    self._dispatch(batch)  # what is read is served, then read on
                    batch = []
                    await client.wait_room(MAX_CLIENT_REQUESTS)
                message = await self._read_message(framed, peer, client=client is not None)
                if message is None:
                    return
                if client is not None:
                    if not self._admissions.try_take():  # this pass is full: serve what
                        self._dispatch(batch)  # is read, let this one in at a later pass
                        batch = []
                        assert self._nursery is not None
                        await self._admissions.take(self._nursery)
                    client.pending.add(message.request_id)  # type: ignore[attr-defined]
                batch.append(message)
                if not framed.has_frame():  # the rest of what arrived together, if any
                    self._dispatch(batch)
                    batch = []
        finally:
            self._dispatch(batch)  # what came before a bad frame or the end is good

    async def _read_message(
        self, framed: FrameStream, peer: str, *, client: bool
    ) -> Message | None:
        """The connection's next message; ``None`` once it must close (logged, counted)."""
        try:
            body = await framed.receive()
            if body is None:
                return None
            if len(body) > LARGE_FRAME:
                message = await wire.decode_gradually(body)
            else:
                message = wire.decode(body)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        except OversizedFrame as exc:
            self._counts["oversized"] += 1
            logger.warning("closed the connection of %r: %s", peer, exc)
            return None
        except MalformedMessage as exc:
            self._counts["malformed"] += 1
            logger.warning("closed the connection of %r: malformed frame: %s", peer, exc)
            return None
        endpoint = self._endpoint
        if (
            message.src != peer
            or (not client and endpoint is not None and message.dst != endpoint.name)
            or (
                type(message) is not ClientRequest
                if client
                else isinstance(message, (ClientRequest, ClientResponse))
            )
        ):
            self._counts["forged"] += 1
            logger.warning(
                "closed the connection of %r: it sent a %s from %r to %r",
                peer,
                type(message).__name__,
                message.src,
                message.dst,
            )
            return None
        return message

    def _dispatch(self, batch: list[Message]) -> None:
        if not batch:
            return
        handler = self._handler
        if handler is None:
            for message in batch:
                self._deliver(message)
        else:
            self._counts["received"] += len(batch)
            handler(batch)

    async def _serve(self, task_status: trio.TaskStatus[list[trio.SocketListener]]) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        except OSError as exc:  # a name that does not resolve, a port in use...
            raise OSError(exc.errno, f"cannot listen on {self.listen!r}: {exc}") from None
        self._port = listeners[0].socket.getsockname()[1]
        if self._host not in ("0.0.0.0", "::", ""):
            self.listen = f"{self._host}:{self._port}" if ":" not in self._host else (
                f"[{self._host}]:{self._port}"
            )  # fmt: skip
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_connections, listener, nursery)
            task_status.started(listeners)


async def _linger(stream: trio.abc.Stream, deadline: float) -> None:
    """Read and drop what a refused connection still sends, until it closes or the
    handshake's deadline passes (a "lingering close", as web servers do): closing with
    bytes unread would reset the connection and destroy the refusal sent to it. Nothing
    is kept, so this costs no memory."""
    with trio.move_on_at(deadline), suppress(*_CONNECTION_ERRORS):
        while await stream.receive_some(1 << 16):
            pass


def _check_protection(
    listen: str, host: str, secret: bytes | None, server_ssl: ssl.SSLContext | None
) -> None:
    """Off loopback, someone must authenticate every connection: a secret, or TLS that
    requires a certificate of every client."""
    if _is_loopback(host) or secret is not None:
        return
    if server_ssl is None:
        raise ValueError(
            f"listen address {listen!r} is not a loopback address: give a secret (or an "
            "ssl_context that requires client certificates) so that only the cluster's "
            "members and clients can talk to it"
        )
    if server_ssl.verify_mode != ssl.CERT_REQUIRED:
        raise ValueError(
            f"listen address {listen!r} is not a loopback address and the ssl_context does "
            "not require client certificates (verify_mode is not ssl.CERT_REQUIRED): anyone "
            "could connect; require client certificates, or give a secret as well"
        )


async def _pump(framed: FrameStream, link: _Link, frames: trio.MemoryReceiveChannel[bytes]) -> None:
    """Send queued frames, several at a time (one record, with a secret); a send that
    blocks too long ends it. Once the queue is empty, the link's senders may write to the
    socket themselves again."""
    batch = [await frames.receive()]
    while True:
        while len(batch) < 256:
            try:
                batch.append(frames.receive_nowait())
            except trio.WouldBlock:
                break
        data = link.take_tail() + framed.seal_batch([frame for frame in batch if frame])
        if data:
            with trio.fail_after(SEND_TIMEOUT):
                await framed.stream.send_all(data)
        try:
            batch = [frames.receive_nowait()]
        except trio.WouldBlock:
            link.backlog = False  # everything queued has left, in order
            batch = [await frames.receive()]


async def _pump_until_closed(
    framed: FrameStream, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
) -> None:
    """Pump an outgoing connection while watching it: the peer never sends on it, so a
    read that ends means the peer closed it (it stopped, or restarted). Without the
    watch, a link that carries nothing for a while (one follower to another, between
    elections) would stay dead until its next message was lost on it."""
    ended: list[BaseException] = []

    async def pump(cancel_scope: trio.CancelScope) -> None:
        try:
            await _pump(framed, link, frames)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, trio.EndOfChannel,
                ssl.SSLError) as exc:  # fmt: skip
            ended.append(exc)
        cancel_scope.cancel()

    async def watch(cancel_scope: trio.CancelScope) -> None:
        try:
            data = await framed.stream.receive_some(1)
            ended.append(trio.BrokenResourceError(
                "the peer sent on an outgoing connection" if data else "the peer closed it"
            ))  # fmt: skip
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                ssl.SSLError) as exc:  # fmt: skip
            ended.append(exc)
        cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, nursery.cancel_scope)
        nursery.start_soon(watch, nursery.cancel_scope)
    if ended:
        raise ended[0]


async def _pump_quietly(
    framed: FrameStream, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
) -> None:
    with suppress(OSError, trio.BrokenResourceError, trio.TooSlowError, trio.EndOfChannel):
        await _pump(framed, link, frames)


def _contexts(ssl_context: Any) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    if ssl_context is None:
        return None, None
    if isinstance(ssl_context, ssl.SSLContext):
        return ssl_context, ssl_context
    if (
        isinstance(ssl_context, tuple)
        and len(ssl_context) == 2
        and all(isinstance(c, ssl.SSLContext) for c in ssl_context)
    ):
        return ssl_context[0], ssl_context[1]
    raise ValueError(
        "ssl_context must be an ssl.SSLContext, or a (server context, client context) pair"
    )


@asynccontextmanager
async def open_tcp_network(
    *,
    listen: str,
    peers: Mapping[str, str],
    secret: bytes | None = None,
    ssl_context: Any = None,
    max_frame: int = 64 << 20,
    client_secret: bytes | None = None,
    _records: bool = True,
) -> AsyncIterator[TcpNetwork]:
    """A :class:`TcpNetwork` listening on ``listen`` (``"host:port"``) while the block
    runs. Servers registered on it reach the others at ``peers`` (name → ``"host:port"``).

    With ``secret`` (bytes), both ends of every connection prove knowledge of it (an
    HMAC-SHA256 handshake bound to both names and fresh nonces) before any message is
    read, and every frame after it is sealed (AES-256-GCM, a key per connection and
    direction): see docs/network.rst. ``client_secret`` (bytes) is what clients prove
    instead; a client's key then cannot authenticate a peer (without it, ``secret``
    serves both). With ``ssl_context`` (an :class:`ssl.SSLContext`, or a ``(server
    context, client context)`` pair), the connections are TLS, mutual if the server
    context requires client certificates; a peer's certificate must then name the server
    it claims to be (or the host the cluster knows it at). Off loopback, either a secret
    or TLS that requires client certificates is needed, else :class:`ValueError`.
    Frames over ``max_frame`` bytes (64 MiB) close their connection.
    """
    network = TcpNetwork(
        listen, peers, secret, ssl_context, max_frame, client_secret, records=_records
    )
    async with trio.open_nursery() as nursery:
        network._nursery = nursery
        await nursery.start(network._serve)
        try:
            yield network
        finally:
            nursery.cancel_scope.cancel()
