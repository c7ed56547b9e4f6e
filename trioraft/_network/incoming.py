"""Incoming connections: accepting them (within the cap on unauthenticated ones),
the listener's side of the handshake, then serving a peer (its messages to the server)
or a client (its requests, a bounded number in flight, admitted per scheduler pass).

Owns: the count of unauthenticated connections, each peer's incoming connection, the
log of refusals. May not touch: outgoing links but to answer a peer outside the
configuration (:meth:`_answer_there`), the server's state.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

import trio

from .._core.messages import Message
from .._errors import MalformedMessage
from .._protocol import ClientRequest, ClientResponse
from . import handshake, limits, wire
from .frames import FrameStream, OversizedFrame
from .handshake import MAX_HANDSHAKE_FRAME, HandshakeError, Intro
from .links import _Admissions, _keepalive, _Link, _pump_quietly
from .trust import _certificate_names, _linger, _secure, parse_address

__all__ = ["IncomingConnections"]

logger = logging.getLogger("trioraft.tcp")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class IncomingConnections:
    """The network's incoming side (a base of :class:`~trioraft._network.tcp.TcpNetwork`,
    which sets the state declared here)."""

    _endpoint: _Named | None
    _secrets: dict[str, tuple[bytes | None, ...]]
    _server_ssl: ssl.SSLContext | None
    max_frame: int
    _counts: dict[str, int]
    _unauthenticated: int
    _max_unauthenticated: int
    _refusals_logged_at: float
    _incoming: dict[str, trio.CancelScope]
    _clients: dict[str, _Link]
    _provisional: dict[str, tuple[str, trio.CancelScope]]
    _links: dict[str, _Link]
    _addresses: dict[str, str]
    _admissions: _Admissions
    _handler: Callable[[list[Message]], None] | None
    _records: bool
    _nursery: trio.Nursery | None

    def _connect(self, peer: str) -> None:
        raise NotImplementedError

    def _address_of(self, name: str) -> str | None:
        raise NotImplementedError

    def _deliver(self, message: Message) -> None:
        raise NotImplementedError

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
                    if exc.errno not in limits._ACCEPT_CAPACITY_ERRNOS:
                        raise
                    # Out of file descriptors or memory: a passing condition.
                    logger.error("accept failed: %s; retrying", os.strerror(exc.errno))
                    await trio.sleep(limits.ACCEPT_RETRY)
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
        deadline = trio.current_time() + limits.HANDSHAKE_TIMEOUT
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
        logged); and whether to linger before closing: a handshake refused with a
        message (it must arrive), or a frame over the handshake's limit (its sender is
        still sending it: closing now would reset the connection under it). Bytes that
        are no handshake and a deadline passed are closed at once."""
        endpoint = self._endpoint
        if endpoint is None:
            return None, False
        try:
            with trio.fail_at(deadline):
                return await self._accept(framed, endpoint.name), False
        except limits._CONNECTION_ERRORS as exc:
            self._counts["auth_failures"] += 1
            self._log_refusal(exc)
            return None, isinstance(exc, (HandshakeError, OversizedFrame))

    async def _accept(self, framed: FrameStream, name: str) -> Intro:
        nonce_s, hello = handshake.make_hello()
        await framed.stream.send_all(hello)
        intro = handshake.parse_intro(handshake.parse_control(await framed.receive()))
        try:
            secret = handshake.check_intro(intro, nonce_s, self._secrets[intro.role])
            self._check_claim(intro, name, framed.stream)
        except HandshakeError as exc:
            reason = "authentication failed" if exc.refused else str(exc)
            with suppress(*limits._CONNECTION_ERRORS):
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
        if len(self._provisional) >= limits.MAX_PROVISIONAL and peer not in self._provisional:
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
        send, receive = trio.open_memory_channel[bytes](limits.QUEUE_SIZE)
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
                if client is not None and len(client.pending) >= limits.MAX_CLIENT_REQUESTS:
                    self._dispatch(batch)  # what is read is served, then read on
                    batch = []
                    await client.wait_room(limits.MAX_CLIENT_REQUESTS)
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
            if len(body) > limits.LARGE_FRAME:
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
