"""TCP: one server per process, across machines.

:func:`open_tcp_network` listens on an address while it is open, and carries the messages
of the server registered on it to its peers, one outgoing connection per peer (opened
with ``trio.open_tcp_stream``, reconnected with backoff), and those of clients that
connect to it. Every connection starts with a handshake: with a shared ``secret``, both
ends prove they know it (HMAC-SHA256 over fresh nonces) before any message is read;
with an ``ssl_context``, the stream is TLS (mutual TLS if the context asks for client
certificates); with neither, the network only listens on a loopback address.

Frames are those of :mod:`trioraft._network.wire`. A malformed, oversized (over
``max_frame``) or wrongly-typed frame, a message whose sender is not the peer that
authenticated, or a failed handshake closes that one connection, is counted in
:meth:`TcpNetwork.statistics` and logged; the server never stops for it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import trio

from .._codec import check_value as _check_value
from .._codec import decode_value, encode_value
from .._core.messages import Message
from .._errors import MalformedMessage, NameInUse
from .._protocol import ClientRequest, ClientResponse
from . import wire

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

#: Seconds a handshake may take.
HANDSHAKE_TIMEOUT = 5.0
#: Seconds one send may block before the connection is presumed dead.
SEND_TIMEOUT = 5.0
#: Frames queued for one peer or client; beyond, new ones are dropped (Raft resends).
QUEUE_SIZE = 4096
#: Reconnection backoff: first wait, and the longest.
BACKOFF = (0.02, 1.0)
_NONCE = 32


class HandshakeError(Exception):
    """A connection's handshake failed (wrong secret, bad hello, ...); ``refused``: the
    other end does not share our secret (it refused ours, or failed to prove its own)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@attrs.frozen
class TcpStatistics:
    """Counters of a :class:`TcpNetwork` since it was opened."""

    sent: int
    received: int
    #: Messages dropped because their peer or client could not take them.
    dropped: int
    #: Connections closed for a frame that is not a well-formed message.
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


def check_secret(secret: object) -> None:
    """``ValueError`` unless ``secret`` is ``None`` or non-empty bytes."""
    if secret is not None and (not isinstance(secret, bytes) or not secret):
        raise ValueError(f"secret must be non-empty bytes, got {type(secret).__qualname__}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FrameStream:
    """Frames over a byte stream: ``send`` one, ``receive`` the next (``None`` at EOF)."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self._buffer = bytearray()

    async def _read(self, n: int) -> bytes | None:
        while len(self._buffer) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self._buffer)))
            if not chunk:
                if self._buffer:
                    raise MalformedMessage("the connection closed in the middle of a frame")
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def has_frame(self) -> bool:
        """Whether a whole frame is already buffered (``receive`` returns it at once)."""
        buffer = self._buffer
        if len(buffer) < wire.HEADER:
            return False
        return len(buffer) >= wire.HEADER + wire.frame_length(bytes(buffer[: wire.HEADER]))

    async def receive(self) -> bytes | None:
        """The next frame's body; ``None`` at a clean end of stream. Raises
        :class:`OversizedFrame` or :class:`~trioraft.MalformedMessage`."""
        header = await self._read(wire.HEADER)
        if header is None:
            return None
        length = wire.frame_length(header)
        if length > self.max_frame:
            raise OversizedFrame(f"a frame of {length} bytes is over max_frame={self.max_frame}")
        body = await self._read(length)
        if body is None:
            raise MalformedMessage("the connection closed in the middle of a frame")
        return body

    async def send(self, frame: bytes) -> None:
        """Send whole frames (length prefixes included)."""
        await self.stream.send_all(frame)


class OversizedFrame(MalformedMessage):
    """A frame longer than ``max_frame``."""


#: Whether a frame may be written to a socket's file descriptor with ``os.write``.
_DIRECT_WRITES = os.name == "posix"


class _Link:
    """The way out to one peer or client: a queue of frames that a pump task sends; and,
    while a plain TCP connection is up and nothing waits in that queue, a write straight
    to the socket from the sender's task (one task switch and one Trio send fewer per
    message). Frames leave in the order they were put, either way."""

    __slots__ = ("backlog", "fd", "queue")

    def __init__(self, queue: trio.MemorySendChannel[bytes]) -> None:
        self.queue = queue
        #: The connection's socket while a pump serves it (plain TCP on POSIX only). It
        #: is cleared before the socket is closed, so it never names a reused descriptor.
        self.fd: int | None = None
        #: Frames were queued that the pump has not finished sending: put() queues too.
        self.backlog = False

    def put(self, frame: bytes) -> None:
        """Send ``frame``; raises ``trio.WouldBlock`` if the queue is full, or
        ``trio.ClosedResourceError`` if the link was closed."""
        fd = self.fd
        if fd is not None and not self.backlog:
            try:
                written = os.write(fd, frame)
            except BlockingIOError:
                written = 0
            except OSError:
                written = 0  # the pump meets the error too, and ends the connection
                self.fd = None
            if written == len(frame):
                return
            # The rest goes first in the (empty) queue: a frame is never cut in two.
            frame = frame[written:]
        self.queue.send_nowait(frame)
        self.backlog = True

    def attach(self, stream: trio.abc.Stream) -> None:
        """A pump now serves ``stream``: direct writes may go to it if it is plain TCP."""
        if _DIRECT_WRITES and isinstance(stream, trio.SocketStream):
            self.fd = stream.socket.fileno()

    def detach(self) -> None:
        """The pump stops (its socket is about to close): queue everything from now on."""
        self.fd = None


def _control(fields: dict[str, Any]) -> bytes:
    body = bytes((wire.VERSION,)) + encode_value(fields)
    return len(body).to_bytes(4, "big") + body


async def _read_control(frames: FrameStream) -> dict[str, Any]:
    body = await frames.receive()
    if body is None or not body or body[0] != wire.VERSION:
        raise HandshakeError("no handshake")
    try:
        fields = decode_value(body[1:])
    except ValueError as exc:
        raise HandshakeError(f"bad handshake: {exc}") from None
    if not isinstance(fields, dict):
        raise HandshakeError("bad handshake")
    return fields


def _mac(secret: bytes | None, *parts: bytes) -> bytes:
    if secret is None:
        return b""
    return hmac.new(secret, b"\0".join(parts), hashlib.sha256).digest()


async def client_handshake(
    frames: FrameStream, secret: bytes | None, role: str, name: str, listen: str = ""
) -> str:
    """The connecting side's handshake: prove knowledge of ``secret`` and check that the
    other end knows it too (a peer also says where it listens). Returns the other end's
    server name."""
    hello = await _read_control(frames)
    theirs = hello.get("nonce")
    if hello.get("hello") != "trioraft" or not isinstance(theirs, bytes):
        raise HandshakeError("not a trioraft server")
    mine = os.urandom(_NONCE)
    mac = _mac(secret, b"connect", theirs, mine, role.encode(), name.encode(), listen.encode())
    hello_back = {"role": role, "name": name, "nonce": mine, "mac": mac, "listen": listen}
    await frames.send(_control(hello_back))
    answer = await _read_control(frames)
    if answer.get("ok") is not True:
        error = answer.get("error", "no reason given")
        raise HandshakeError(f"refused: {error}", refused=error == "authentication failed")
    server = answer.get("name")
    if not isinstance(server, str):
        raise HandshakeError("bad handshake answer")
    expected = _mac(secret, b"accept", mine, theirs, server.encode())
    if not hmac.compare_digest(expected, answer.get("mac", b"")):
        raise HandshakeError("the server does not know the shared secret", refused=True)
    return server


async def _server_handshake(
    frames: FrameStream, secret: bytes | None, name: str
) -> tuple[str, str, str]:
    mine = os.urandom(_NONCE)
    await frames.send(_control({"hello": "trioraft", "nonce": mine}))
    hello = await _read_control(frames)
    role, peer, theirs = hello.get("role"), hello.get("name"), hello.get("nonce")
    if role not in ("peer", "client") or not isinstance(peer, str) or not peer:
        raise HandshakeError("bad hello")
    listen = hello.get("listen", "")
    if not isinstance(theirs, bytes) or not isinstance(listen, str):
        raise HandshakeError("bad hello")
    expected = _mac(secret, b"connect", mine, theirs, role.encode(), peer.encode(), listen.encode())
    if not hmac.compare_digest(expected, hello.get("mac", b"")):
        await frames.send(_control({"ok": False, "error": "authentication failed"}))
        raise HandshakeError(f"{peer!r} failed authentication")
    reply = _mac(secret, b"accept", theirs, mine, name.encode())
    await frames.send(_control({"ok": True, "name": name, "mac": reply}))
    return role, peer, listen


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

    def address_of(self, name: str) -> str | None:
        """Where the server ``name`` listens, if known (this server's own address too)."""
        if name == self._name:
            return self._network.listen
        return self._network._addresses.get(name)

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


class TcpNetwork:
    """A transport over TCP for one server per process. Made by :func:`open_tcp_network`."""

    def __init__(
        self,
        listen: str,
        peers: Mapping[str, str],
        secret: bytes | None,
        ssl_context: Any,
        max_frame: int,
    ) -> None:
        host, port = parse_address(listen)
        if secret is None and ssl_context is None and not _is_loopback(host):
            raise ValueError(
                f"listen address {listen!r} is not a loopback address: give a secret (or an "
                "ssl_context) so that only the cluster's members can talk to it"
            )
        check_secret(secret)
        if isinstance(max_frame, bool) or not isinstance(max_frame, int) or max_frame < 1024:
            raise ValueError(f"max_frame must be an integer >= 1024, got {max_frame!r}")
        self.listen = listen
        self._host, self._port = host, port
        if not isinstance(peers, Mapping):
            raise TypeError(
                "peers must be a mapping of server names to 'host:port' addresses, got "
                f"{type(peers).__qualname__}"
            )
        self._addresses = {name: address for name, address in peers.items()}
        for address in self._addresses.values():
            parse_address(address)
        self._secret = secret
        self._server_ssl, self._client_ssl = _contexts(ssl_context)
        self.max_frame = max_frame
        self._endpoint: TcpEndpoint | None = None
        self._inbox_send, self._inbox = trio.open_memory_channel[Message](QUEUE_SIZE)
        #: Where messages go when the server takes them by call (:meth:`TcpEndpoint.deliver_to`).
        self._handler: Callable[[list[Message]], None] | None = None
        self._links: dict[str, _Link] = {}
        self._clients: dict[str, _Link] = {}
        self._nursery: trio.Nursery | None = None
        self._counts = dict.fromkeys(
            ("sent", "received", "dropped", "malformed", "oversized", "forged", "auth_failures",
             "connections", "connects"),
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
                link.detach()
                link.queue.close()
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
                if self._endpoint is not None:
                    self._connect(name)

    # ------------------------------------------------------------- sending
    def _send(self, message: Message) -> None:
        link = self._clients.get(message.dst) or self._links.get(message.dst)
        if link is None:
            self._counts["dropped"] += 1
            return
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

    # --------------------------------------------------------- connections
    def _connect(self, peer: str) -> None:
        if peer in self._links or self._nursery is None:
            return
        send, receive = trio.open_memory_channel[bytes](QUEUE_SIZE)
        link = self._links[peer] = _Link(send)
        self._nursery.start_soon(self._connector, peer, link, receive)

    async def _connector(
        self, peer: str, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        backoff = BACKOFF[0]
        while self._endpoint is not None:
            try:
                await self._run_outgoing(peer, link, frames)
                backoff = BACKOFF[0]
            except trio.EndOfChannel:
                return
            except (OSError, trio.BrokenResourceError, trio.TooSlowError, HandshakeError,
                    MalformedMessage, ssl.SSLError) as exc:  # fmt: skip
                logger.debug("connection to %r: %s", peer, exc)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF[1])

    async def _run_outgoing(
        self, peer: str, link: _Link, frames: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        assert self._endpoint is not None
        host, port = parse_address(self._addresses[peer])
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            self._counts["connects"] += 1
            if self._client_ssl is not None:
                stream = trio.SSLStream(stream, self._client_ssl, server_hostname=host)
            framed = FrameStream(stream, self.max_frame)
            await client_handshake(framed, self._secret, "peer", self._endpoint.name, self.listen)
        self._counts["connections"] += 1
        try:
            async with stream:
                link.attach(stream)
                try:
                    await _pump_until_closed(framed, link, frames)
                finally:
                    link.detach()
        finally:
            self._counts["connections"] -= 1

    async def _handle(self, stream: trio.SocketStream) -> None:
        framed_stream: trio.abc.Stream = stream
        if self._server_ssl is not None:
            framed_stream = trio.SSLStream(stream, self._server_ssl, server_side=True)
        framed = FrameStream(framed_stream, self.max_frame)
        self._counts["connections"] += 1
        try:
            async with framed_stream:
                await self._serve_connection(framed)
        except Exception as exc:  # whatever a connection does, the server goes on
            logger.debug("connection closed: %r", exc)
        finally:
            self._counts["connections"] -= 1

    async def _serve_connection(self, framed: FrameStream) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                role, peer, listen = await _server_handshake(framed, self._secret, endpoint.name)
        except (HandshakeError, trio.TooSlowError, MalformedMessage) as exc:
            self._counts["auth_failures"] += 1
            logger.warning("refused a connection: %s", exc)
            return
        if role == "client":
            await self._serve_client(framed, peer)
            return
        if listen:
            # A peer we may not know yet (it added us, or we were added): answer it there.
            with suppress(ValueError):
                self.learn_addresses({peer: listen})
        await self._read_messages(framed, peer, client=False)

    async def _serve_client(self, framed: FrameStream, name: str) -> None:
        if name in self._clients or (self._endpoint and name == self._endpoint.name):
            self._counts["auth_failures"] += 1
            return
        send, receive = trio.open_memory_channel[bytes](QUEUE_SIZE)
        link = self._clients[name] = _Link(send)
        link.attach(framed.stream)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump_quietly, framed, link, receive)
                await self._read_messages(framed, name, client=True)
                nursery.cancel_scope.cancel()
        finally:
            link.detach()
            self._clients.pop(name, None)
            send.close()

    async def _read_messages(self, framed: FrameStream, peer: str, *, client: bool) -> None:
        batch: list[Message] = []
        try:
            while True:
                message = await self._read_message(framed, peer, client=client)
                if message is None:
                    return
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
        if message.src != peer or (
            type(message) is not ClientRequest
            if client
            else isinstance(message, (ClientRequest, ClientResponse))
        ):
            self._counts["forged"] += 1
            logger.warning(
                "closed the connection of %r: it sent a %s from %r",
                peer,
                type(message).__name__,
                message.src,
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
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)


async def _pump(framed: FrameStream, link: _Link, frames: trio.MemoryReceiveChannel[bytes]) -> None:
    """Send queued frames, several at a time; a send that blocks too long ends it. Once
    the queue is empty, the link's senders may write to the socket themselves again."""
    batch = [await frames.receive()]
    while True:
        while len(batch) < 256:
            try:
                batch.append(frames.receive_nowait())
            except trio.WouldBlock:
                break
        with trio.fail_after(SEND_TIMEOUT):
            await framed.send(b"".join(batch))
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
) -> AsyncIterator[TcpNetwork]:
    """A :class:`TcpNetwork` listening on ``listen`` (``"host:port"``) while the block
    runs. Servers registered on it reach the others at ``peers`` (name → ``"host:port"``).

    With ``secret`` (bytes), both ends of every connection prove knowledge of it
    (HMAC-SHA256 challenge-response) before any message is read. With ``ssl_context``
    (an :class:`ssl.SSLContext`, or a ``(server context, client context)`` pair), the
    connections are TLS, mutual if the server context requires client certificates.
    With neither, ``listen`` must be a loopback address, else :class:`ValueError`.
    Frames over ``max_frame`` bytes (64 MiB) close their connection.
    """
    network = TcpNetwork(listen, peers, secret, ssl_context, max_frame)
    async with trio.open_nursery() as nursery:
        network._nursery = nursery
        await nursery.start(network._serve)
        try:
            yield network
        finally:
            nursery.cancel_scope.cancel()
