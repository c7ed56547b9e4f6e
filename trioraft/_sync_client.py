"""A client for code without an event loop: threads, scripts, WSGI applications.

:class:`SyncClient` runs an :func:`~trioraft.open_client` client of a TCP cluster on an
event loop of its own, in a thread of its own (an AnyIO blocking portal), and hands each
call to it: any number of threads may share one :class:`SyncClient`, and their calls
proceed at once, as tasks sharing one :class:`~trioraft.Client` do.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import trio

from ._client import Client, open_client

__all__ = ["SyncClient"]

T = TypeVar("T")


class SyncClient:
    """A client of a TCP cluster for code without an event loop (threads, scripts, WSGI).

    ``servers`` are ``"host:port"`` addresses; ``secret``, ``ssl_context`` and ``name``
    are as for :func:`~trioraft.open_client`, and so are the semantics of each call:
    :meth:`write` applies a command exactly once whatever happens to leaders, :meth:`read`
    is linearizable. Each call blocks its thread until it has an answer, or until
    ``timeout`` seconds have passed (then :class:`TimeoutError`: like any write cut
    short, that write may or may not have been applied). Safe to share between threads.
    Use it as a context manager, or call :meth:`close`.

    ``backend`` is the event loop the client runs on in its thread: ``"asyncio"`` (the
    default: its hand-over from other threads costs least) or ``"trio"``.
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        secret: bytes | None = None,
        ssl_context: Any = None,
        name: str | None = None,
        backend: str = "asyncio",
    ) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
        self._lock = threading.Lock()
        self._closed = False
        self._portal_cm = anyio.from_thread.start_blocking_portal(backend)
        self._portal = self._portal_cm.__enter__()
        try:
            self._client_cm = self._portal.wrap_async_context_manager(
                open_client(servers, secret=secret, ssl_context=ssl_context, name=name)
            )
            self._client: Client = self._client_cm.__enter__()
        except BaseException as exc:
            self._portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise

    @property
    def leader(self) -> str | None:
        """The leader the client last used (its name), or ``None``."""
        return self._client.leader

    def write(self, command: Any, *, timeout: float | None = None) -> Any:
        """Apply ``command`` once; the state machine's reply (see :meth:`Client.write`)."""
        return self._call(self._client.write, command, timeout)

    def read(self, query: Any, *, timeout: float | None = None) -> Any:
        """A linearizable read (see :meth:`Client.read`)."""
        return self._call(self._client.read, query, timeout)

    def status(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The status of the server the client reaches (see :meth:`Client.status`)."""
        result: dict[str, Any] = self._call(lambda _: self._client.status(), None, timeout)
        return result

    def _call(self, call: Callable[[Any], Awaitable[T]], arg: Any, timeout: float | None) -> T:
        if self._closed:
            raise trio.ClosedResourceError("this SyncClient is closed")
        if timeout is None:
            return self._portal.call(call, arg)

        async def bounded() -> T:
            with anyio.fail_after(timeout):
                return await call(arg)

        return self._portal.call(bounded)

    def close(self) -> None:
        """Close the client's connections and stop its thread (once; later calls raise
        ``trio.ClosedResourceError``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._client_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
