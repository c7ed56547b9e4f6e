"""``serve``: one server on TCP and DiskStorage, until SIGINT or SIGTERM, or until the
server fails (then it says why, in one line, and exits 1)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from .._core.node import Role
from .._errors import ServerFailed
from .._network.tcp import open_tcp_network
from .._options import ServerOptions
from .._runtime import Server, start_server
from .._storage import DiskStorage
from . import logs, machine, metrics_http
from .common import (
    CommandError,
    UsageError,
    address,
    json_value,
    leaf,
    listen_error,
    say,
    secret,
    tls,
)
from .datadir import check_data_dir, record_machine

__all__ = ["SERVE_GC_THRESHOLD", "serve", "tune_collector"]

#: ``gc.set_threshold`` of a ``serve`` process: collect the youngest generation after
#: 20,000 allocations (Python's default: 700), the older ones 20 times rarer each. A
#: server allocates a few objects per write (an entry, its waiter, its outcome) and keeps
#: the entries until the next snapshot: at 4,096 writes in flight these thresholds cut
#: the leader's CPU per write from 9.4-10.5 us to 7.9 (the performance page).
SERVE_GC_THRESHOLD = (20_000, 20, 20)

#: How often ``serve`` looks whether its server was added to or removed from the
#: configuration (seconds).
MEMBERSHIP_POLL = 0.5

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def tune_collector() -> None:
    """What importing and starting made (modules, classes, functions) lives as long as
    the process: move it out of the garbage collector's sight (``gc.freeze``), so that a
    full collection walks only what came after, and pauses the server for less (at
    4,096 writes in flight: 70-95 ms a full collection before, 25 ms after, on the
    machine of the performance page). Then collect less often
    (:data:`SERVE_GC_THRESHOLD`). A choice of the ``serve`` program: the library leaves
    the collector to the application."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVE_GC_THRESHOLD)


@attrs.frozen
class _Plan:
    """Everything ``serve`` checked before starting anything."""

    factory: Callable[..., Any]
    init_args: tuple[Any, ...]
    peers: dict[str, str]
    options: dict[str, Any]
    secret: bytes | None
    client_secret: bytes | None
    tls: Any
    config: list[str]
    metrics: str | None


#: Server options ``serve`` sets itself (from its other flags), not given by ``--option``.
SERVE_SETS = frozenset({"initial_config", "storage", "tracer"})


def _peers(args: argparse.Namespace) -> dict[str, str]:
    peers: dict[str, str] = {}
    for text in args.peer or ():
        name, sep, where = text.partition("=")
        if not sep or not name:
            raise UsageError(f"--peer takes NAME=HOST:PORT, got {text!r}")
        if name == args.name:
            raise UsageError(
                f"--peer {text} names this server itself (--name {args.name}): "
                "list only the other servers"
            )
        if name in peers:
            raise UsageError(f"--peer {name} is given twice")
        peers[name] = address(where, f"--peer {name}=")
    return peers


def _options(texts: list[str] | None) -> dict[str, Any]:
    """``--option NAME=JSON`` (repeatable): server options, checked."""
    options: dict[str, Any] = {}
    settable = sorted(f.name for f in attrs.fields(ServerOptions) if f.name not in SERVE_SETS)
    for text in texts or ():
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--option takes NAME=JSON, got {text!r}")
        if name in SERVE_SETS:
            raise UsageError(f"--option {name} is not an option of serve: it sets {name} itself")
        if name not in settable:
            raise UsageError(
                f"unknown server option(s) {name!r}; --option takes {', '.join(settable)}"
            )
        options[name] = json_value(value, f"the value of --option {name}")
    try:
        ServerOptions.from_kwargs(dict(options))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--option: {exc}") from None
    return options


def _plan(args: argparse.Namespace) -> _Plan:
    address(args.listen, "--listen")
    factory = machine.load(args.machine)
    init_args = () if args.init_arg is None else (json_value(args.init_arg, "--init-arg"),)
    peers = _peers(args)
    options = _options(args.option)
    metrics = None
    if args.metrics is not None:
        metrics = address(args.metrics, "--metrics")
        metrics_http.require()
    check_data_dir(args.data_dir, args.machine)
    return _Plan(
        factory=machine.checked(factory, args.machine),
        init_args=init_args,
        peers=peers,
        options=options,
        secret=secret(args.secret_file),
        client_secret=secret(args.client_secret_file),
        tls=tls(args.tls_ca, args.tls_cert, args.tls_key, serving=True),
        config=[] if args.learner else [args.name, *peers],
        metrics=metrics,
    )


@contextmanager
def _signals() -> Iterator[AsyncIterator[int]]:
    """SIGINT and SIGTERM as a stream of signal numbers. What arrives after the last one
    read is dropped, not delivered again once the receiver closes (Trio's default, which
    turned a second Ctrl-C during shutdown into a KeyboardInterrupt before "stopped")."""
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)  # what the receiver puts back, and redelivers to
    try:
        with trio.open_signal_receiver(*_SIGNALS) as signals:
            yield signals
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


async def serve(args: argparse.Namespace) -> int:
    """Run ``serve``: the exit status (0 after a signal, 1 if the server failed)."""
    plan = _plan(args)
    logs.setup(args.log_level)
    with _signals() as signals, metrics_http.serving(plan.metrics) as registry:
        async with contextlib.AsyncExitStack() as stack:
            network = await _open_network(stack, args, plan)
            failure = await _run(args, plan, network, signals, registry)
    if failure is not None:
        raise CommandError(f"{args.name}: the server stopped: {failure}")
    say(f"{args.name}: stopped")
    return 0


async def _open_network(
    stack: contextlib.AsyncExitStack, args: argparse.Namespace, plan: _Plan
) -> Any:
    try:
        return await stack.enter_async_context(
            open_tcp_network(
                listen=args.listen,
                peers=plan.peers,
                secret=plan.secret,
                client_secret=plan.client_secret,
                ssl_context=plan.tls,
            )
        )
    except BaseException as exc:
        problem = leaf(exc)
        if isinstance(problem, OSError):
            raise CommandError(listen_error(args.listen, problem)) from None
        if isinstance(problem, ValueError):  # listening off loopback with no protection
            raise UsageError(str(problem)) from None
        raise


async def _run(
    args: argparse.Namespace, plan: _Plan, network: Any, signals: Any, registry: Any
) -> str | None:
    """Start the server, report on it until a signal or its failure; ``None``, or why it
    failed."""
    async with trio.open_nursery() as nursery:
        server = await _start(args, plan, network, nursery)
        record_machine(args.data_dir, args.machine)
        metrics_http.register(registry, server)
        _say_started(args, plan, network)
        tune_collector()
        with trio.CancelScope() as waiting:
            nursery.start_soon(_print_roles, server, waiting)
            nursery.start_soon(_print_membership, server)
            async for signum in signals:
                say(f"{args.name}: {signal.Signals(signum).name}, stopping")
                nursery.start_soon(_stopping_already, args.name, signals)
                break
        await server.stop()
        nursery.cancel_scope.cancel()
    return _failure(server)


async def _start(args: argparse.Namespace, plan: _Plan, network: Any, nursery: Any) -> Server:
    return await start_server(
        nursery,
        plan.factory,
        *plan.init_args,
        name=args.name,
        network=network,
        initial_config=plan.config,
        storage=DiskStorage(args.data_dir),
        **plan.options,
    )


def _say_started(args: argparse.Namespace, plan: _Plan, network: Any) -> None:
    say(f"{args.name}: listening on {network.listen} (data in {args.data_dir})")
    if plan.metrics is not None:
        say(f"{args.name}: metrics at http://{plan.metrics}/metrics")
    if args.learner:
        say(
            f"{args.name}: started as a learner, in no configuration: it waits until a "
            f"leader adds it (trioraft add --cluster ... {args.name} {args.listen})"
        )


def _failure(server: Server) -> str | None:
    """Why the server stopped by itself (``None`` if it was stopped)."""
    failure = server.failure
    if failure is None:
        return None
    cause = failure.__cause__
    if cause is None or isinstance(cause, ServerFailed):
        return str(failure)
    return f"{type(cause).__name__}: {cause}"


async def _stopping_already(name: str, signals: Any) -> None:
    """Further signals while stopping: say so (the stop goes on, and ends in "stopped")."""
    async for _ in signals:
        say(f"{name}: stopping already; wait, or kill -9 to stop at once")


async def _print_roles(server: Server, waiting: trio.CancelScope) -> None:
    """A line for each change of the server's role (not a tracer: that costs every
    write). When the server stops, stop ``waiting`` for a signal."""
    async for status in server.role_changes():
        name, role, term, leader = status.name, status.role, status.term, status.leader
        if role is Role.LEADER:
            say(f"{name}: leader (term {term})")
        elif role is Role.FOLLOWER:
            say(f"{name}: follower of {leader} (term {term})" if leader else
                f"{name}: follower, no leader known (term {term})")  # fmt: skip
        else:
            say(f"{name}: {role.value.replace('_', '-')} (term {term})")
    waiting.cancel()


async def _print_membership(server: Server) -> None:
    """A line when the server joins or leaves the configuration (a removed server keeps
    running, and would otherwise say nothing)."""
    member = None
    while True:
        status = server.status()
        now = not status.waiting_to_be_added
        if member is not None and now != member:
            if now:
                kind = "voter" if server.name in status.voters else "learner"
                say(f"{server.name}: added to the configuration as a {kind}")
            else:
                say(
                    f"{server.name}: removed from the configuration (voters "
                    f"{','.join(sorted(status.voters))}): it takes no part until added "
                    "again; stop it with Ctrl-C"
                )
        member = now
        await trio.sleep(MEMBERSHIP_POLL)
