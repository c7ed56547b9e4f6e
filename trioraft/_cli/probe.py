"""Why a server does not answer: each address a command uses is asked for its status on
the side, so that a command that gets nowhere can say why in the user's words
(connection refused, unknown host, not a trioraft server, no leader), and give up at
once when no address can ever answer."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from .._client import open_client
from .._errors import AuthenticationFailed
from .._network.tcp import parse_address

__all__ = ["PROBE_FIRST", "Probe", "probe"]

#: Seconds a server has to answer a status before the probe connects to its address
#: itself to say why not (a running server answers in milliseconds). A connection the
#: status request itself could not make (refused, say) is reported at once.
PROBE_FIRST = 0.5


@attrs.define
class Probe:
    """What one address said: its status, or why it did not answer."""

    address: str
    #: The status it answered (``None``: none yet).
    status: dict[str, Any] | None = None
    #: Why it has not answered (``None``: nothing known yet).
    problem: str | None = None
    #: The problem will not go away while the command runs (refused, unknown host).
    final: bool = False

    @property
    def done(self) -> bool:
        """It answered, or never will."""
        return self.status is not None or self.final


async def _connect_problem(host: str, port: int) -> tuple[str, bool]:
    """Why a server at ``host:port`` does not answer, as far as connecting tells:
    (problem, final)."""
    try:
        with trio.fail_after(PROBE_FIRST):
            stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        return "no answer to a connection attempt (a firewall, or a host that is down?)", False
    except OSError as exc:
        return _cannot_connect(exc), True
    await trio.aclose_forcefully(stream)
    return (
        "connected, but got no trioraft answer (another program on that port, or TLS "
        "settings unlike the server's?)",
        False,
    )


def _cannot_connect(exc: OSError) -> str:
    """Why a connection could not be made, in the user's words (it will not change
    while a command runs)."""
    causes = _causes(exc)
    if all(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused (no server listening there)"
    reason = causes[0].strerror or str(causes[0])
    return f"cannot connect ({reason[:1].lower() + reason[1:]})"


def _causes(exc: OSError) -> list[OSError]:
    """What made each attempt to connect fail (Trio and AnyIO try every address of a
    host, and raise "all attempts to connect ... failed" from a group of their errors,
    or from the one error)."""
    cause = exc.__cause__
    inner = getattr(cause, "exceptions", None)
    if isinstance(inner, tuple) and inner and all(isinstance(e, OSError) for e in inner):
        return list(inner)
    if isinstance(cause, OSError):
        return [cause]
    return [exc]


async def _look_closely(target: Probe, host: str, port: int, done: trio.CancelScope) -> None:
    """Once a running server would have answered (:data:`PROBE_FIRST`), record why
    ``target`` has not, as far as connecting tells; end the probe if that will not
    change."""
    await trio.sleep(PROBE_FIRST)
    target.problem, target.final = await _connect_problem(host, port)
    if target.final:
        done.cancel()


async def probe(target: Probe, reach: Mapping[str, Any], on_done: Callable[[Probe], None]) -> None:
    """Ask ``target.address`` for its status until it answers (or the caller gives up),
    recording in ``target`` why it has not; call ``on_done`` once it answered or never
    will."""
    host, port = parse_address(target.address)
    try:
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        target.problem, target.final = f"unknown host {host!r}", True
        on_done(target)
        return
    # The client connects only when asked: only its status request can be refused.
    async with open_client([target.address], **reach) as client, trio.open_nursery() as nursery:

        def failed(_: str, exc: OSError) -> None:
            # The client's own attempt to connect failed (refused, say): said at once,
            # however late in the caller's timeout this probe started.
            target.problem, target.final = _cannot_connect(exc), True
            nursery.cancel_scope.cancel()

        client._watch_connections(failed)
        nursery.start_soon(_look_closely, target, host, port, nursery.cancel_scope)
        try:
            target.status = await client.status()
            target.problem = None
        except AuthenticationFailed:
            target.problem = "it refused this command's secret (or TLS certificate)"
            target.final = True
        nursery.cancel_scope.cancel()
    on_done(target)
