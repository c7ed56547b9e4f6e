"""A replicated lock with fencing tokens, held by a client session.

Each acquisition returns a *fencing token*, a number that grows with every acquisition
of any lock. A resource that remembers the highest token it has seen
(:class:`FencedResource`) refuses a holder whose lock has meanwhile passed to someone
else: a holder that was paused, cut off or whose session expired cannot act on stale
authority. A lock is released when its holder releases it or when the holder's client
session expires (the cluster's sessions, dissertation §6.3), at the same log position
on every server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._client import Client
from .._errors import RaftError
from .._state_machine import StateMachine
from ._recording import Recorder

if TYPE_CHECKING:
    from ..testing import History

__all__ = ["FencedResource", "LockMachine", "ReplicatedLock", "StaleToken"]


class StaleToken(RaftError):
    """A fencing token older than one the resource has already seen."""


class LockMachine(StateMachine):
    """The state machine of :class:`ReplicatedLock`. Commands:
    ``("acquire", name, session)`` (the token, or None if another session holds it),
    ``("release", name, token)`` and ``("touch", name, token)`` (whether that token holds
    it). Query: ``("holder", name)`` (``[session, token]`` or None)."""

    def __init__(self) -> None:
        self.locks: dict[str, tuple[int, int]] = {}  # name -> (session, token)
        self.last_token = 0

    def write(self, command: Any) -> Any:
        """Apply a command."""
        op, name, arg = command
        held = self.locks.get(name)
        if op == "acquire":
            if held is not None:
                return held[1] if held[0] == arg else None
            self.last_token += 1
            self.locks[name] = (arg, self.last_token)
            return self.last_token
        if op == "release":
            if held is not None and held[1] == arg:
                del self.locks[name]
                return True
            return False
        if op == "touch":
            return held is not None and held[1] == arg
        raise ValueError(f"unknown lock command {command!r}")

    def read(self, query: Any) -> Any:
        """``("holder", name)``: ``[session, token]`` or None."""
        held = self.locks.get(query[1])
        return None if held is None else list(held)

    def on_session_expired(self, client_id: int) -> None:
        """A session expired: the locks it held are free."""
        for name in [n for n, (session, _) in self.locks.items() if session == client_id]:
            del self.locks[name]

    def snapshot(self) -> Any:
        """The locks and the last token."""
        return [self.last_token, [[n, s, t] for n, (s, t) in sorted(self.locks.items())]]

    def restore(self, snapshot: Any) -> None:
        """Replace the state."""
        self.last_token, locks = snapshot
        self.locks = {n: (s, t) for n, s, t in locks}


class ReplicatedLock:
    """Named locks of a cluster running :class:`LockMachine`, through a client.

    ``async with lock.hold("name") as token:`` waits until it holds the lock, keeps its
    session alive meanwhile (every ``keepalive`` seconds: keep it well below the
    servers' ``session_timeout``), and releases it on exit.

    ``history`` (a :class:`trioraft.testing.History`), if given, records each command
    and query as :class:`LockMachine` sees it (under ``client_id``, by default the
    client's name), so that a test checks them with
    ``Model.from_state_machine(LockMachine)``.
    """

    def __init__(
        self,
        client: Client,
        *,
        keepalive: float = 60.0,
        poll: float = 0.05,
        history: History | None = None,
        client_id: Hashable = None,
    ) -> None:
        self._client = client
        self._ops = Recorder(client, history, client_id)
        self._keepalive = keepalive
        self._poll = poll

    async def acquire(self, name: str) -> int | None:
        """Try once: the fencing token if this client now holds ``name``, else None."""
        session = await self._client.open_session()
        token = await self._ops.write(("acquire", name, session))
        return None if token is None else int(token)

    async def release(self, name: str, token: int) -> bool:
        """Release ``name`` if ``token`` still holds it; whether it did."""
        return bool(await self._ops.write(("release", name, token)))

    async def holder(self, name: str) -> tuple[int, int] | None:
        """``(session, token)`` of the holder of ``name``, or None (linearizable)."""
        held = await self._ops.read(("holder", name))
        return None if held is None else (int(held[0]), int(held[1]))

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[int]:
        """Wait until this client holds ``name``; yield the fencing token; release it on
        exit (even when the body fails or is cancelled)."""
        while True:
            token = await self.acquire(name)
            if token is not None:
                break
            await trio.sleep(self._poll)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_alive, name, token)
                try:
                    yield token
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._keepalive):
                await self.release(name, token)

    async def _keep_alive(self, name: str, token: int) -> None:
        while True:
            await trio.sleep(self._keepalive)
            await self._ops.write(("touch", name, token))


class FencedResource:
    """Something a lock protects, which refuses stale holders: it remembers the highest
    fencing token it has seen, and :meth:`check` raises :class:`StaleToken` for an older
    one."""

    def __init__(self) -> None:
        self.highest = 0

    def check(self, token: int) -> None:
        """Accept ``token`` (and remember it) or raise :class:`StaleToken`."""
        if token < self.highest:
            raise StaleToken(f"token {token} is older than {self.highest}: the lock has moved on")
        self.highest = token
