"""The ways out: a link to one peer or client (a queue, a pump that sends it, and direct
writes to the socket while nothing waits), the pump that watches an outgoing
connection, keep-alive, and the admission of client requests per scheduler pass.

Owns: each link's queue, its connection's sealer and the tail of a record cut short, a
client's requests in flight. May not touch: authentication, the network's maps.
"""

from __future__ import annotations

import os
import socket
import ssl
from contextlib import suppress

import trio

from . import limits
from .frames import FrameStream, RecordSealer

__all__: list[str] = []

#: Whether a frame may be written to a socket's file descriptor with ``os.write``.
_DIRECT_WRITES = os.name == "posix"


def _keepalive(stream: trio.SocketStream) -> None:
    """Have the kernel probe an idle connection, so a half-open one (its host gone, a
    cable pulled) is noticed and closed."""
    sock = stream.socket
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in zip(
            ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"), limits.KEEPALIVE, strict=True
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


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
            with trio.fail_after(limits.SEND_TIMEOUT):
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
