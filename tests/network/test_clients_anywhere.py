"""Clients from any Python (API, "Clients from anywhere"): ``open_client`` over TCP under
asyncio as well as Trio (AnyIO's pytest plugin runs each test on both), ``SyncClient``
from threads, and the FastAPI example.

The cluster (three servers over TCP on loopback, with a secret) runs under Trio in a
thread of its own for the whole module; the clients run in the test's thread, on the
test's event loop (or none, for ``SyncClient``). Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio

import trioraft
from trioraft.testing import free_tcp_ports

from machines import Counter

SECRET = b"the secret of the cluster in a thread"
NAMES = ("a", "b", "c")


class _Cluster:
    """Three servers in a Trio run of their own thread."""

    def __init__(self) -> None:
        ports = free_tcp_ports(len(NAMES))
        self.addresses = {n: f"127.0.0.1:{p}" for n, p in zip(NAMES, ports, strict=True)}
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self._stop: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=self._run, name="trio-cluster", daemon=True)

    def __enter__(self) -> _Cluster:
        self._thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the cluster did not start: {self.failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None and self._token is not None
        trio.from_thread.run_sync(self._stop.cancel, trio_token=self._token)
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __enter__
            self.failure = exc
            self.ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._stop:
            async with trio.open_nursery() as nursery:
                servers = [await nursery.start(self._one, name) for name in NAMES]
                with trio.fail_after(20):
                    await servers[0].await_leader()
                self.ready.set()
                await trio.sleep_forever()

    async def _one(self, name: str, task_status: trio.TaskStatus[trioraft.Server]) -> None:
        peers = {m: a for m, a in self.addresses.items() if m != name}
        async with (
            trioraft.open_tcp_network(
                listen=self.addresses[name], peers=peers, secret=SECRET
            ) as network,
            trio.open_nursery() as nursery,
        ):
            server = await trioraft.start_server(
                nursery, Counter, name=name, network=network, initial_config=list(NAMES)
            )
            task_status.started(server)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[str]]:
    with _Cluster() as running:
        yield list(running.addresses.values())


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_a_client_writes_and_reads_under_either_library(
    cluster: list[str], anyio_backend: str
) -> None:
    import sniffio

    assert sniffio.current_async_library() == anyio_backend
    with anyio.fail_after(20):
        async with trioraft.open_client(cluster, secret=SECRET) as client:
            before = await client.read(None)
            replies: list[int] = []

            async def writer() -> None:
                for _ in range(5):
                    replies.append(await client.write(1))

            async with anyio.create_task_group() as group:
                for _ in range(8):
                    group.start_soon(writer)
            assert sorted(replies) == list(range(before + 1, before + 41))  # once each
            assert await client.read(None) == before + 40
            assert client.leader in NAMES
            assert (await client.status())["name"] in NAMES


@pytest.mark.anyio
async def test_errors_reach_a_client_under_either_library(
    cluster: list[str], anyio_backend: str
) -> None:
    with anyio.fail_after(20):
        async with trioraft.open_client(cluster, secret=SECRET) as client:
            with pytest.raises(TypeError, match="msgpack"):
                await client.write(object())
            with pytest.raises(trioraft.UnknownServer):
                await client.remove_server("nobody")
        async with trioraft.open_client(cluster, secret=b"not the secret") as stranger:
            with pytest.raises(trioraft.AuthenticationFailed):
                await stranger.write(1)
    with pytest.raises(trio.ClosedResourceError):
        await client.write(1)


@pytest.mark.anyio
async def test_a_memory_network_client_is_trios_only(anyio_backend: str) -> None:
    network = trioraft.MemoryNetwork(seed=0)
    if anyio_backend == "asyncio":
        with pytest.raises(RuntimeError, match="runs under Trio only"):
            async with trioraft.open_client(["a"], network=network):
                pass
    else:
        async with trioraft.open_client(["a"], network=network) as client:
            assert client.name == "client-1"


def test_a_sync_client_shared_by_threads(cluster: list[str]) -> None:
    with trioraft.SyncClient(cluster, secret=SECRET) as client:
        before = client.read(None, timeout=20)
        replies: list[int] = []
        lock = threading.Lock()

        def writer() -> None:
            for _ in range(10):
                reply = client.write(1, timeout=20)
                with lock:
                    replies.append(reply)

        threads = [threading.Thread(target=writer) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(replies) == list(range(before + 1, before + 161))
        assert client.status(timeout=20)["name"] in NAMES
        assert client.leader in NAMES
    with pytest.raises(trio.ClosedResourceError):
        client.write(1)
    client.close()  # closing again does nothing


def test_a_sync_client_call_can_be_bounded_and_its_arguments_are_checked(
    cluster: list[str],
) -> None:
    (dead,) = free_tcp_ports(1)
    with (
        trioraft.SyncClient([f"127.0.0.1:{dead}"], backend="trio") as client,
        pytest.raises(TimeoutError),
    ):
        client.write(1, timeout=0.3)  # nobody listens there
    with pytest.raises(ValueError, match="single string"):
        trioraft.SyncClient(cluster[0])
    with pytest.raises(ValueError, match="backend"):
        trioraft.SyncClient(cluster, backend="curio")


def _load_example() -> Any:
    path = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"
    spec = importlib.util.spec_from_file_location("fastapi_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fastapi_example_writes_to_the_cluster(cluster: list[str]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    app = _load_example().create_app(cluster, SECRET)
    with TestClient(app) as http:  # runs the app (and its client) under asyncio
        before = http.get("/counter").json()["value"]
        assert http.post("/counter/add/5").json() == {"value": before + 5}
        assert http.get("/counter").json() == {"value": before + 5}
