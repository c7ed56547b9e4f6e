"""What keeps a TCP server's own work going under the ``hostile`` benchmark's attacks:
client requests are let in a few per pass of the scheduler, all client connections
together (a client flood once deposed a leader); a connection over the cap of
unauthenticated ones is closed by the accept loop itself, with no task; running out of
file descriptors while accepting passes."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from tcp_helpers import SECRET, authenticated, raw_connection

import trioraft
from trioraft._network import limits, links, tcp, wire
from trioraft._protocol import ClientRequest
from trioraft.testing import free_tcp_ports


@asynccontextmanager
async def lone_server() -> AsyncIterator[tuple[tcp.TcpNetwork, tcp.TcpEndpoint, str]]:
    """A network with a server "a" registered on it, and its address."""
    (port,) = free_tcp_ports(1)
    address = f"127.0.0.1:{port}"
    async with trioraft.open_tcp_network(listen=address, peers={}, secret=SECRET) as network:
        yield network, network.register("a"), address


class Passes:
    """Counts the passes of Trio's scheduler while :meth:`count` runs (it takes one turn
    a pass)."""

    def __init__(self) -> None:
        self.n = 0

    async def count(self) -> None:
        while True:
            self.n += 1
            await trio.sleep(0)


async def test_the_share_of_a_pass_is_given_anew_in_a_later_pass() -> None:
    admissions = links._Admissions(3)
    assert [admissions.try_take() for _ in range(4)] == [True, True, True, False]
    passes = Passes()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(passes.count)
        await trio.sleep(0)
        before = passes.n
        await admissions.take(nursery)  # the share ran out: a later pass
        assert passes.n > before
        assert admissions.left == 2
        nursery.cancel_scope.cancel()


async def test_a_flood_of_client_requests_is_let_in_a_few_per_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two clients pipeline 60 requests each: every one is delivered, and never more than
    the share of a pass between two turns of a task that runs once a pass."""
    monkeypatch.setattr(limits, "CLIENT_REQUESTS_PER_PASS", 4)
    passes = Passes()
    delivered: list[tuple[int, int]] = []  # (pass, request id) in the order delivered

    def take(batch: list[Any]) -> None:
        delivered.extend((passes.n, m.request_id) for m in batch)

    async with lone_server() as (_, endpoint, address), trio.open_nursery() as nursery:
        endpoint.deliver_to(take)  # never answers: the 1024 in flight are not reached
        clients = [await authenticated(address, "client", n) for n in "xy"]
        nursery.start_soon(passes.count)
        for k, frames in enumerate(clients):
            requests = [ClientRequest("xy"[k], "a", 0, 100 * k + i, "read") for i in range(60)]
            await frames.send(b"".join(wire.encode(r) for r in requests))
        with trio.fail_after(10):
            while len(delivered) < 120:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert sorted(i for _, i in delivered) == [*range(60), *range(100, 160)]
    per_pass: dict[int, int] = {}
    for seen, _ in delivered:
        per_pass[seen] = per_pass.get(seen, 0) + 1
    # The counter runs somewhere in each pass: one of its values spans the end of a
    # pass and the start of the next, so at most two shares.
    assert max(per_pass.values()) <= 2 * 4
    assert len(per_pass) >= 120 // 8


async def test_a_connection_over_the_cap_is_closed_with_no_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handled: list[object] = []
    handle = tcp.TcpNetwork._handle

    async def counting(self: tcp.TcpNetwork, stream: trio.SocketStream) -> None:
        handled.append(stream)
        await handle(self, stream)

    monkeypatch.setattr(tcp.TcpNetwork, "_handle", counting)
    monkeypatch.setattr(limits, "HANDSHAKE_TIMEOUT", 60.0)  # the two accepted ones stay
    async with lone_server() as (network, _, address):
        network._max_unauthenticated = 2
        silent = [await raw_connection(address) for _ in range(10)]
        with trio.fail_after(5):
            while network.statistics().refused < 8:
                await trio.sleep(0.01)
        assert len(handled) == 2 and network._unauthenticated == 2
        for stream in silent:
            await stream.aclose()


async def test_running_out_of_file_descriptors_while_accepting_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "ACCEPT_RETRY", 0.01)
    accept = trio.SocketListener.accept
    failures = [OSError(errno.EMFILE, "Too many open files")] * 3

    async def scarce(self: trio.SocketListener) -> trio.SocketStream:
        if failures:
            raise failures.pop()
        return await accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", scarce)
    async with lone_server() as (_, _, address):
        with trio.fail_after(5):
            frames = await authenticated(address, "client", "patient")
        assert not failures
        await frames.stream.aclose()
