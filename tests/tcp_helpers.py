"""Helpers of the TCP tests: a three-server cluster over loopback, raw and authenticated
connections to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

import trioraft
from trioraft._network.tcp import FrameStream, client_handshake
from trioraft.testing import free_tcp_ports

from machines import Counter

SECRET = b"the cluster's shared secret"


@asynccontextmanager
async def tcp_cluster(
    secret: bytes | None = SECRET,
    ssl_context: Any = None,
    max_frame: int = 64 << 20,
    **network_options: Any,
) -> AsyncIterator[tuple[dict[str, trioraft.Server], dict[str, Any], dict[str, str]]]:
    names = ["a", "b", "c"]
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip(names, free_tcp_ports(3), strict=True)}
    servers: dict[str, trioraft.Server] = {}
    networks: dict[str, Any] = {}

    async def run_one(name: str, task_status: trio.TaskStatus[None]) -> None:
        peers = {m: a for m, a in addresses.items() if m != name}
        async with trioraft.open_tcp_network(
            listen=addresses[name],
            peers=peers,
            secret=secret,
            ssl_context=ssl_context,
            max_frame=max_frame,
            **network_options,
        ) as network, trio.open_nursery() as nursery:  # fmt: skip
            networks[name] = network
            servers[name] = await trioraft.start_server(
                nursery, Counter, name=name, network=network, initial_config=names
            )
            task_status.started()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for name in names:
                await nursery.start(run_one, name)
            await servers["a"].await_leader()
            yield servers, networks, addresses
            nursery.cancel_scope.cancel()


async def raw_connection(address: str) -> trio.SocketStream:
    host, port = address.split(":")
    return await trio.open_tcp_stream(host, int(port))


async def assert_still_serves(
    servers: dict[str, trioraft.Server], addresses: dict[str, str]
) -> None:
    async with trioraft.open_client(list(addresses.values()), secret=SECRET) as client:
        before = await client.read(None)
        assert await client.write(1) == before + 1


async def authenticated(
    address: str, role: str, name: str, secret: bytes | None = SECRET, listen: str = ""
) -> FrameStream:
    stream = await raw_connection(address)
    frames = FrameStream(stream, 1 << 30)
    await client_handshake(frames, secret, role, name, listen)
    return frames


async def expect_closed(frames: FrameStream) -> None:
    with trio.fail_after(5):
        while True:
            try:
                if await frames.receive() is None:
                    return
            except (trio.BrokenResourceError, OSError):
                return
