"""Starting a server: :func:`serve` (``nursery.start`` form), :func:`start_server` and
:func:`open_server`.

Owns: checking what a server is started with (its name, machine, network, storage and
options), loading its storage and registering it on the network, and handing the
:class:`~trioraft.Server` handle back once its tasks run. May not touch: the server's
workings (its rooms), the node.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._network.base import Transport
from .._options import ServerOptions
from .._storage import DiskStorage, MemoryStorage, Storage
from .clients import take_request
from .machine import check_machine
from .server import Server

__all__ = ["open_server", "serve", "start_server"]

_MISSING: Any = object()


def _check_storage(storage: Any) -> Storage:
    if not isinstance(storage, (MemoryStorage, DiskStorage)):
        raise ValueError(
            f"storage must be a trioraft.MemoryStorage or trioraft.DiskStorage, got {storage!r}"
        )
    return storage


async def serve(
    machine: Callable[..., Any],
    init_arg: Any = _MISSING,
    *,
    name: str,
    network: Transport,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run a trioraft server until it is stopped or cancelled (``nursery.start`` form).

    ``machine`` is a state machine class or factory, called as ``machine()`` when
    ``init_arg`` is omitted and ``machine(init_arg)`` otherwise. The :class:`Server`
    handle is passed to ``task_status.started()`` once the server is on the network.
    Options are those of :class:`~trioraft.ServerOptions`; an unknown or invalid one
    raises :class:`ValueError` before anything starts.
    """
    opts = ServerOptions.from_kwargs(options)
    if not isinstance(name, str) or not name:
        raise ValueError(f"server name must be a non-empty string, got {name!r}")
    storage = _check_storage(opts.storage if opts.storage is not None else MemoryStorage())
    if not callable(machine):
        raise TypeError(f"machine must be a state machine class or factory, got {machine!r}")
    if not callable(getattr(network, "register", None)):
        raise TypeError(
            "network must be a Transport (a MemoryNetwork, or the network of "
            f"open_tcp_network), got {type(network).__qualname__}"
        )
    instance = machine() if init_arg is _MISSING else machine(init_arg)
    check_machine(instance)
    await storage.acquire(name)
    try:
        state = await storage.load()
        endpoint = network.register(name)
    except BaseException:
        storage.release()
        raise
    try:
        server = Server(name, instance, endpoint, storage=storage, options=opts, state=state)
    except BaseException:
        endpoint.close()
        storage.release()
        raise
    await server._run(task_status, take_request)


async def start_server(
    nursery: trio.Nursery,
    machine: Callable[..., Any],
    init_arg: Any = _MISSING,
    *,
    name: str,
    network: Transport,
    **options: Any,
) -> Server:
    """Start a server's tasks inside ``nursery`` and return its :class:`Server` handle
    once it is registered on ``network``. See :func:`serve` for the arguments."""
    if not isinstance(nursery, trio.Nursery):
        raise TypeError(
            f"start_server() takes the nursery to run the server in as its first argument, "
            f"got {nursery!r}: write start_server(nursery, {_name_of(nursery)}, ...) inside "
            "'async with trio.open_nursery() as nursery:', or use trioraft.serve with "
            "nursery.start"
        )
    server: Server = await nursery.start(
        functools.partial(serve, machine, init_arg, name=name, network=network, **options)
    )
    return server


def _name_of(obj: Any) -> str:
    return getattr(obj, "__name__", None) or repr(obj)


@asynccontextmanager
async def open_server(
    machine: Callable[..., Any],
    init_arg: Any = _MISSING,
    *,
    name: str,
    network: Transport,
    **options: Any,
) -> AsyncIterator[Server]:
    """``async with open_server(...) as server:``: :func:`start_server` with a nursery
    of its own; the server stops when the block exits. Arguments as for :func:`serve`."""
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, machine, init_arg, name=name, network=network, **options
        )
        try:
            yield server
        finally:
            await server.stop()
