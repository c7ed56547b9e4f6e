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

import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._codec import check_value as _check_value
from .._core.messages import Message
from .._errors import MalformedMessage, NameInUse
from .._protocol import ClientResponse
from . import limits, wire
from .frames import FrameStream
from .handshake import HandshakeError
from .incoming import IncomingConnections
from .links import (
    _Admissions,
    _keepalive,
    _Link,
    _pump_until_closed,
)
from .trust import (
    _check_protection,
    _contexts,
    _max_unauthenticated,
    _secrets_by_role,
    check_secret,
    client_handshake,
    parse_address,
)

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


class TcpNetwork(IncomingConnections):
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
        #: connection that vouches for each (see limits.MAX_PROVISIONAL).
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
        self._inbox_send, self._inbox = trio.open_memory_channel[Message](limits.QUEUE_SIZE)
        #: Where messages go when the server takes them by call (:meth:`TcpEndpoint.deliver_to`).
        self._handler: Callable[[list[Message]], None] | None = None
        #: Outgoing links to peers, and clients' connections: two name spaces.
        self._links: dict[str, _Link] = {}
        self._clients: dict[str, _Link] = {}
        #: Each peer's incoming connection (the newest wins: an older one is half-open).
        self._incoming: dict[str, trio.CancelScope] = {}
        self._unauthenticated = 0
        self._admissions = _Admissions(limits.CLIENT_REQUESTS_PER_PASS)
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
            link.answered(message.request_id, limits.MAX_CLIENT_REQUESTS)  # type: ignore[attr-defined]
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
        send, receive = trio.open_memory_channel[bytes](limits.QUEUE_SIZE)
        link = self._links[peer] = _Link(send)
        link.scope = trio.CancelScope()
        self._nursery.start_soon(self._connector, peer, link, receive)

    async def _connector(
        self, peer: str, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        assert link.scope is not None
        backoff = limits.BACKOFF[0]
        with link.scope:
            while self._endpoint is not None and self._links.get(peer) is link:
                try:
                    await self._run_outgoing(peer, link, frames)
                    backoff = limits.BACKOFF[0]
                except trio.EndOfChannel:
                    return
                except limits._CONNECTION_ERRORS as exc:
                    logger.debug("connection to %r: %s", peer, exc)
                except Exception:  # nothing a remote end does may stop the server
                    logger.exception("connection to %r failed", peer)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, limits.BACKOFF[1])

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
        with trio.fail_after(limits.HANDSHAKE_TIMEOUT):
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
