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

#: Seconds a server has to answer a status before the probe looks at its address more
#: closely (a running server answers in milliseconds).
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
        causes = _causes(exc)
        if all(isinstance(c, ConnectionRefusedError) for c in causes):
            return "connection refused (no server listening there)", True
        reason = causes[0].strerror or str(causes[0])
        return f"cannot connect ({reason[:1].lower() + reason[1:]})", True
    await trio.aclose_forcefully(stream)
    return (
        "connected, but got no trioraft answer (another program on that port, or TLS "
        "settings unlike the server's?)",
        False,
    )


def _causes(exc: OSError) -> list[OSError]:
    """What made each attempt to connect fail (Trio tries every address of a host, and
    raises "all attempts to connect ... failed" from a group of their errors)."""
    group = exc.__cause__
    inner = getattr(group, "exceptions", None)
    if isinstance(inner, tuple) and inner and all(isinstance(e, OSError) for e in inner):
        return list(inner)
    return [exc]


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
    try:
        async with open_client([target.address], **reach) as client:
            with trio.move_on_after(PROBE_FIRST):
                target.status = await client.status()
            if target.status is None:
                target.problem, target.final = await _connect_problem(host, port)
                if not target.final:
                    target.status = await client.status()
                    target.problem = None
    except AuthenticationFailed:
        target.problem = "it refused this command's secret (or TLS certificate)"
        target.final = True
    on_done(target)
