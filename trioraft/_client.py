"""Clients: writes applied exactly once whatever happens to leaders, linearizable reads.

:func:`open_client` connects to a cluster, over a :class:`~trioraft.MemoryNetwork` (the
client attaches under a name of its own, so it meets the network's faults as servers
do) or over TCP (``"host:port"`` addresses). The client opens a session (dissertation
§6.3) and numbers its writes; it follows redirects and retries through leader changes,
lost connections and unknown outcomes, and the cluster applies each numbered write at
most once and keeps its reply, so a retry gets the first reply.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import anyio.abc
import sniffio
import trio
from anyio.streams.tls import TLSStream

from ._codec import encode_value
from ._errors import (
    AuthenticationFailed,
    CatchUpFailed,
    ChangeInProgress,
    NameInUse,
    NotVoter,
    RaftError,
    ReplyNotEncodable,
    SessionExpired,
    TransferFailed,
    UnknownServer,
    WriteNumberReused,
    WrongCluster,
)
from ._network.frames import FrameStream
from ._network.handshake import HandshakeError
from ._network.limits import HANDSHAKE_TIMEOUT
from ._network.memory import MemoryNetwork
from ._network.trust import _contexts, check_secret, client_handshake, parse_address
from ._network.wire import decode, encode
from ._protocol import ClientRequest, ClientResponse
from ._sessions import error_from

__all__ = ["Client", "open_client"]

#: How long one attempt waits for an answer before trying again (seconds).
ATTEMPT_TIMEOUT = 1.0
#: Pause before retrying when no leader is known.
RETRY_PAUSE = 0.05


class _Transport(Protocol):
    async def request(self, target: str, request: ClientRequest) -> ClientResponse | None: ...

    def resolve(self, leader: str) -> str | None: ...

    def learn(self, leader: str, address: str) -> None: ...

    def refused_by_all(self, targets: Sequence[str]) -> bool: ...

    async def aclose(self) -> None: ...


class _Waiting:
    __slots__ = ("event", "response")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.response: ClientResponse | None = None


class _MemoryTransport:
    """Requests over a MemoryNetwork, as the client ``name``."""

    def __init__(self, network: MemoryNetwork, name: str, nursery: anyio.abc.TaskGroup) -> None:
        self.name = name
        self._endpoint = network.register(name)
        self._waiting: dict[int, _Waiting] = {}
        nursery.start_soon(self._receive)

    async def _receive(self) -> None:
        try:
            while True:
                for message in await self._endpoint.receive_batch():
                    if isinstance(message, ClientResponse):
                        waiting = self._waiting.get(message.request_id)
                        if waiting is not None:
                            waiting.response = message
                            waiting.event.set()
        except trio.ClosedResourceError:
            return

    async def request(self, target: str, request: ClientRequest) -> ClientResponse | None:
        waiting = self._waiting[request.request_id] = _Waiting()
        try:
            self._endpoint.send(request)
            with anyio.move_on_after(ATTEMPT_TIMEOUT):
                await waiting.event.wait()
            return waiting.response
        finally:
            del self._waiting[request.request_id]

    def resolve(self, leader: str) -> str | None:
        return leader

    def learn(self, leader: str, address: str) -> None:
        pass

    def refused_by_all(self, targets: Sequence[str]) -> bool:
        return False  # no authentication on a MemoryNetwork

    async def aclose(self) -> None:
        self._endpoint.close()


async def _close_now(stream: trio.abc.Stream) -> None:
    """Close ``stream`` without waiting on the other end (what Trio's and AnyIO's
    ``aclose_forcefully`` do), whichever library runs."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await stream.aclose()


class _AnyioStream(trio.abc.Stream):
    """An AnyIO byte stream (TCP, or TLS over it) as the Trio stream that
    :class:`FrameStream` and the handshake read and write: the client runs under asyncio
    as well as under Trio. AnyIO's end of stream is an empty read, its broken and closed
    resources Trio's."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self.inner.receive(max_bytes or 65536)
        except anyio.EndOfStream:
            return b""
        except anyio.BrokenResourceError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        except anyio.ClosedResourceError as exc:
            raise trio.ClosedResourceError(str(exc)) from exc

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.inner.send(bytes(data))
        except anyio.BrokenResourceError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        except anyio.ClosedResourceError as exc:
            raise trio.ClosedResourceError(str(exc)) from exc

    async def wait_send_all_might_not_block(self) -> None:
        """Not used by the client (part of Trio's stream interface)."""

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Connection:
    def __init__(self, frames: FrameStream, server: str) -> None:
        self.frames = frames
        self.server = server
        self.waiting: dict[int, _Waiting] = {}
        self.broken = False
        #: One frame at a time on the stream: tasks sharing the client take turns.
        self.sending = anyio.Lock()


class _TcpTransport:
    """Requests over TCP connections, one per server address, opened when needed."""

    def __init__(
        self,
        name: str,
        nursery: anyio.abc.TaskGroup,
        secret: bytes | None,
        ssl_context: Any,
        max_frame: int = 64 << 20,
    ) -> None:
        self.name = name
        self._nursery = nursery
        self._secret = secret
        self._ssl = _contexts(ssl_context)[1]
        self._max_frame = max_frame
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, anyio.Lock] = {}
        #: Server name -> address, learnt from the handshakes.
        self._addresses: dict[str, str] = {}
        #: Addresses whose last handshake refused our authentication.
        self._refused: set[str] = set()
        #: Told of each connection that could not be made: ``(address, error)``.
        self.connect_failed: Callable[[str, OSError], None] | None = None
        #: Requests awaiting an answer, by id: a server answers on the client's newest
        #: connection to it, which may not be the one a request went out on.
        self._waiting: dict[int, _Waiting] = {}

    def resolve(self, leader: str) -> str | None:
        return self._addresses.get(leader)

    def learn(self, leader: str, address: str) -> None:
        try:
            parse_address(address)
        except ValueError:
            return
        self._addresses.setdefault(leader, address)

    async def _connect(self, address: str) -> _Connection:
        lock = self._locks.get(address) or self._locks.setdefault(address, anyio.Lock())
        async with lock:
            connection = self._connections.get(address)
            if connection is not None and not connection.broken:
                return connection
            if connection is not None:  # its reader may still wait on it: close it
                await _close_now(connection.frames.stream)
            host, port = parse_address(address)
            with anyio.fail_after(HANDSHAKE_TIMEOUT):
                try:
                    stream = _AnyioStream(await anyio.connect_tcp(host, port))
                except OSError as exc:
                    if self.connect_failed is not None:
                        self.connect_failed(address, exc)
                    raise
                try:
                    if self._ssl is not None:
                        stream = _AnyioStream(
                            await TLSStream.wrap(stream.inner, hostname=host, ssl_context=self._ssl)
                        )
                    frames = FrameStream(stream, self._max_frame)
                    server = await client_handshake(frames, self._secret, "client", self.name)
                except BaseException:
                    await _close_now(stream)
                    raise
            self._refused.discard(address)
            self._addresses[server] = address
            connection = _Connection(frames, server)
            self._connections[address] = connection
            self._nursery.start_soon(self._read, connection)
            return connection

    async def _read(self, connection: _Connection) -> None:
        try:
            while True:
                body = await connection.frames.receive()
                if body is None:
                    break
                message = decode(body)
                if isinstance(message, ClientResponse):
                    waiting = self._waiting.get(message.request_id)
                    if waiting is not None:
                        waiting.response = message
                        waiting.event.set()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, RaftError):
            pass
        finally:
            connection.broken = True
            for waiting in connection.waiting.values():
                waiting.event.set()
            await _close_now(connection.frames.stream)

    async def request(self, target: str, request: ClientRequest) -> ClientResponse | None:
        try:
            connection = await self._connect(target)
        except HandshakeError as exc:
            if exc.refused:
                self._refused.add(target)
            return None
        except (OSError, trio.BrokenResourceError, RaftError):
            return None  # ssl.SSLError and TimeoutError are OSErrors
        waiting = connection.waiting[request.request_id] = _Waiting()
        self._waiting[request.request_id] = waiting
        frame = encode(request)
        try:
            with anyio.move_on_after(ATTEMPT_TIMEOUT):
                async with connection.sending:
                    try:
                        await connection.frames.send(frame)
                    except BaseException:
                        # Cancelled or failed in the middle of the frame, maybe: what is
                        # left of it would swallow the next request. A new connection.
                        connection.broken = True
                        raise
                await waiting.event.wait()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            connection.broken = True
        finally:
            del connection.waiting[request.request_id]
            del self._waiting[request.request_id]
        return waiting.response

    def refused_by_all(self, targets: Sequence[str]) -> bool:
        return self._refused.issuperset(targets)

    async def aclose(self) -> None:
        for connection in self._connections.values():
            await _close_now(connection.frames.stream)


class Client:
    """A client of a trioraft cluster (made by :func:`open_client`).

    ``write`` applies a command exactly once; ``read`` is linearizable. Both retry
    (following redirects, through leader changes, lost connections and unknown
    outcomes) until they have an answer or the caller's cancel scope ends. Several
    tasks may use one client at once.
    """

    def __init__(self, targets: Sequence[str], transport: _Transport, remote: bool) -> None:
        self._targets = list(targets)
        self._transport = transport
        self._remote = remote
        self._rotation = 0
        self._hint: str | None = None
        #: The leader the client last used (its name; a status from a follower does not
        #: change it).
        self.leader: str | None = None
        # Over TCP, request ids start at random: answers go to a client's name, and two
        # clients given the same name= (two processes) must not take each other's
        # answers for their own. On a MemoryNetwork, from 1 (seeded runs repeat).
        first = int.from_bytes(os.urandom(6), "big") if remote else 0
        self._requests = itertools.count(first + 1)
        self._session = 0
        self._session_lock = anyio.Lock()
        self._seqs = itertools.count(1)
        self._outstanding: set[int] = set()
        #: Set when the ``open_client`` block ends: every call raises from then on.
        self._closed = False

    @property
    def name(self) -> str:
        """The name the client attaches under: on a :class:`~trioraft.MemoryNetwork`, the
        name a partition group must list to include it."""
        return str(getattr(self._transport, "name", "client"))

    @property
    def session(self) -> int:
        """The client's session id (0 before its first write)."""
        return self._session

    async def open_session(self) -> int:
        """Open the client's session now if it has none (writes open it when needed);
        return its id."""
        return await self._open_session()

    async def write(self, command: Any) -> Any:
        """Apply ``command`` once, whatever happens to leaders; return the state machine's
        reply. An exception raised by the state machine's ``write`` is raised here (over
        TCP, as the built-in exception of that name, else :exc:`~trioraft.MachineError`).
        Raises :exc:`~trioraft.SessionExpired` if the session expired (the command is
        not applied; later writes open a new session), and, over TCP,
        :exc:`~trioraft.ReplyNotEncodable` if the command was applied but its reply is
        not a msgpack value (do not retry it as if refused)."""
        if self._remote:
            encode_value(command)  # TypeError naming the type, here
        session = await self._open_session()
        seq = next(self._seqs)
        self._outstanding.add(seq)
        try:
            lowest = min(self._outstanding)
            return await self._call("write", command, session=session, seq=seq, lowest=lowest)
        except SessionExpired:
            if self._session == session:
                self._session = 0
            raise
        finally:
            self._outstanding.discard(seq)

    async def read(self, query: Any) -> Any:
        """A linearizable read of the state machine (``machine.read(query)``)."""
        if self._remote:
            encode_value(query)
        return await self._call("read", query)

    def _watch_connections(self, failed: Callable[[str, OSError], None]) -> None:
        """Call ``failed(address, error)`` each time a connection to a server cannot be
        made (over TCP; the command line's probes say why a server does not answer)."""
        if isinstance(self._transport, _TcpTransport):
            self._transport.connect_failed = failed

    async def status(self) -> dict[str, Any]:
        """The status of the server the client reaches (a dict of ``Status``'s fields)."""
        result: dict[str, Any] = await self._call("status", None, any_server=True)
        return result

    async def add_server(
        self, name: str, *, voter: bool = True, address: str | None = None
    ) -> None:
        """Ask the leader to add ``name`` (see :meth:`Server.add_server`)."""
        await self._call("add", [name, address, voter])

    async def set_members(
        self,
        voters: Sequence[str],
        *,
        learners: Sequence[str] = (),
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        """Ask the leader to make the configuration exactly ``voters`` and ``learners``
        (see :meth:`Server.set_members`; ``addresses`` of new servers on TCP)."""
        await self._call("members", [list(voters), list(learners), dict(addresses or {})])

    async def remove_server(self, name: str) -> None:
        """Ask the leader to remove ``name``."""
        await self._call("remove", name)

    async def transfer_leadership(self, name: str | None = None) -> str:
        """Ask the leader to hand over to ``name`` (or the best voter); the new leader."""
        result: str = await self._call("transfer", name)
        return result

    async def _open_session(self) -> int:
        async with self._session_lock:
            if not self._session:
                self._session = int(await self._call("open", None))
            return self._session

    def _target(self) -> str:
        if self._hint is not None:
            resolved = self._transport.resolve(self._hint)
            if resolved is not None:
                return resolved
        target = self._targets[self._rotation % len(self._targets)]
        return target

    def _rotate(self, failed: str | None = None) -> None:
        """Drop the leader hint and move to the next server in the list, past
        ``failed`` (the server that just did not answer) so that a dead server is
        not waited on twice in a row."""
        self._hint = None
        self._rotation += 1
        upcoming = self._targets[self._rotation % len(self._targets)]
        if failed is not None and upcoming == failed and len(self._targets) > 1:
            self._rotation += 1

    async def _call(
        self,
        op: str,
        payload: Any,
        *,
        session: int = 0,
        seq: int = 0,
        lowest: int = 0,
        any_server: bool = False,
    ) -> Any:
        name = self.name
        while True:
            if self._closed:
                raise trio.ClosedResourceError(
                    f"client {name!r} is closed: its open_client block has ended"
                )
            target = self._target()
            request = ClientRequest(
                name, target, 0, next(self._requests), op, session, seq, lowest, payload
            )
            response = await self._transport.request(target, request)
            if response is None:  # no answer in time, or no connection: another server
                if self._transport.refused_by_all(self._targets):
                    raise AuthenticationFailed(
                        f"every server ({', '.join(self._targets)}) refused the "
                        "authentication of this client: its secret (or TLS certificate) is "
                        "not the cluster's"
                    )
                self._rotate(failed=target)
                await anyio.sleep(RETRY_PAUSE)
                continue
            if not response.error:
                if not any_server:  # not a status, which any server may answer
                    self.leader = response.leader or response.src
                    self._hint = response.src
                return response.value
            if any_server and response.error == "not_leader":
                continue
            self._raise_or_redirect(response)
            await anyio.sleep(0 if self._hint is not None else RETRY_PAUSE)

    def _raise_or_redirect(self, response: ClientResponse) -> None:
        error = response.error
        if error == "not_leader":
            if response.leader is not None and response.leader != response.src:
                self._hint = response.leader
                if response.leader_address:
                    self._transport.learn(response.leader, response.leader_address)
            else:
                self._rotate()
        elif error in ("unknown", "unavailable"):
            self._rotate()  # the same numbered write is retried: applied at most once
        elif error == "session_expired":
            raise SessionExpired(response.message)
        elif error == "machine":
            value = response.value
            exc = value if isinstance(value, BaseException) else error_from(value)
            assert exc is not None
            raise exc
        elif error == "type":
            raise TypeError(response.message)
        elif error == "invalid":
            raise ValueError(response.message)
        elif error == "raft":
            raise _raft_error(response.message)
        else:
            raise RaftError(response.message or f"the server answered {error!r}")


#: The server's errors a client raises as themselves (the server sends "Name: text").
_TYPED: tuple[type[RaftError], ...] = (UnknownServer, NameInUse, NotVoter, TransferFailed)
_TYPED += (ChangeInProgress, CatchUpFailed, WrongCluster)  # never OutcomeUnknown
_TYPED += (ReplyNotEncodable, WriteNumberReused)
_RAFT_ERRORS = {cls.__name__: cls for cls in _TYPED}


def _raft_error(message: str) -> RaftError:
    """The exception a server's ``"Name: text"`` describes: that trioraft error itself
    (``except trioraft.UnknownServer`` works through a client), or a RaftError."""
    name, sep, text = message.partition(": ")
    cls = _RAFT_ERRORS.get(name) if sep else None
    return cls(text) if cls is not None else RaftError(message)


@asynccontextmanager
async def open_client(
    servers: Sequence[str],
    *,
    network: MemoryNetwork | None = None,
    secret: bytes | None = None,
    ssl_context: Any = None,
    name: str | None = None,
) -> AsyncIterator[Client]:
    """A :class:`Client` of the cluster whose servers are ``servers``.

    With ``network`` (a :class:`~trioraft.MemoryNetwork`), ``servers`` are the servers'
    names on it, and the client attaches to it under ``name`` (default ``client-1``,
    ``client-2``... counted per network; :attr:`Client.name` says which), the name a
    partition group must list to include the client. Without, ``servers`` are
    ``"host:port"`` addresses of a TCP cluster; ``secret`` and ``ssl_context`` are as for
    :func:`~trioraft.open_tcp_network`.
    """
    if isinstance(servers, (str, bytes)):
        raise ValueError(
            "open_client takes a list of server names or addresses, not the single string "
            f"{servers!r} (write [{servers!r}])"
        )
    targets = list(servers)
    if not targets:
        raise ValueError("open_client needs at least one server")
    # Arguments are checked before the nursery opens: a plain exception, not a group.
    if network is not None:
        if not isinstance(network, MemoryNetwork):
            raise TypeError(
                f"network must be a trioraft.MemoryNetwork (or None, for TCP addresses), "
                f"got {type(network).__qualname__}"
            )
        if sniffio.current_async_library() != "trio":
            raise RuntimeError(
                "a client of a MemoryNetwork runs under Trio only (a MemoryNetwork is made of "
                "Trio memory channels); TCP clients run under asyncio too"
            )
    else:
        for address in targets:
            parse_address(address)
        check_secret(secret)
    async with anyio.create_task_group() as nursery:
        transport: _Transport
        if network is not None:
            transport = _MemoryTransport(network, name or network._client_name(), nursery)
        else:
            client_name = name or f"client-{os.urandom(8).hex()}"
            transport = _TcpTransport(client_name, nursery, secret, ssl_context)
        client = Client(targets, transport, remote=network is None)
        try:
            yield client
        finally:
            client._closed = True
            await transport.aclose()
            nursery.cancel_scope.cancel()
