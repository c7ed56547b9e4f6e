"""TCP: the wire format, authentication, bad input, and a cluster over loopback.

The promises checked (API, "TCP"): every message survives a round trip through a frame;
the decoder answers any bytes at all with MalformedMessage and nothing else; a peer or
client that fails authentication (wrong secret, no secret) is disconnected and changes
nothing; garbage, a frame over ``max_frame``, a well-formed message of the wrong type or
with a forged sender closes that one connection, is counted, and the server keeps
serving; TLS and mutual TLS; without a secret or TLS the network listens only on
loopback; frames written straight to a socket or queued for its pump arrive whole and in
order; commands and queries that are not msgpack values raise TypeError at the call. Real
sockets on 127.0.0.1 and free ports, real clock, every wait bounded.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_helpers import (
    SECRET,
    assert_still_serves,
    authenticated,
    expect_closed,
    raw_connection,
    tcp_cluster,
)

import trioraft
from trioraft._client import _Connection, _TcpTransport
from trioraft._codec import MAX_TUPLE_DEPTH, decode_value, encode_value
from trioraft._core import (
    AppendEntries,
    AppendResponse,
    ClusterMismatch,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from trioraft._network import wire
from trioraft._network.frames import FrameStream
from trioraft._network.limits import QUEUE_SIZE
from trioraft._network.links import _Link, _pump
from trioraft._network.tcp import TcpEndpoint, TcpNetwork, client_handshake, parse_address
from trioraft._protocol import ClientRequest, ClientResponse
from trioraft.testing import free_tcp_ports

from machines import Counter

MESSAGES: list[Message] = [
    RequestVote("a", "b", 3, 10, 2, pre_vote=True, force=False, cluster="c0ffee"),
    VoteResponse("b", "a", 3, True, True),
    AppendEntries(
        "a",
        "b",
        3,
        9,
        2,
        (
            Entry(3, 10, EntryKind.COMMAND, ("set", "k", [1, 2.5, None, b"\x00"])),
            Entry(3, 11, EntryKind.CONFIG, Config(["a", "b"], ["c"], {"c": "127.0.0.1:9"})),
            Entry(3, 12, EntryKind.NOOP, None),
            Entry(3, 13, EntryKind.SESSION, [12.5]),
            Entry(3, 14, EntryKind.CLIENT, [13, 1, 1, 12.75, {"x": (1, 2)}]),
        ),
        8,
        4,
    ),
    AppendResponse("b", "a", 3, False, 0, 9, 7, 2, 4, 8),
    AppendResponse("b", "a", 3, True, 14, conflict_term=None),
    Heartbeat("a", "b", 3, 8, 5),
    HeartbeatResponse("b", "a", 3, 5, 8),
    TimeoutNow("a", "b", 3),
    ClusterMismatch("d", "a", 1, cluster="dead"),
    InstallSnapshot("a", "b", 3, 100, 2, Config(["a", "b", "c"]), 1024, 4096, b"\x01" * 64),
    InstallSnapshotResponse("b", "a", 3, 100, 2048, False, True),
    ClientRequest("client-1", "a", 0, 7, "write", 3, 2, 1, ("inc", 5)),
    ClientResponse("a", "client-1", 0, 7, "not_leader", None, "b", "go there", "1.2.3.4:5"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_a_frame(message: Message) -> None:
    frame = wire.encode(message)
    assert wire.frame_length(frame[:4]) == len(frame) - 4
    assert frame[4] == wire.VERSION
    decoded = wire.decode(frame[4:])
    assert decoded == message and type(decoded) is type(message)


def test_a_batch_of_entries_is_encoded_once_and_never_confused_with_another() -> None:
    """The entries of an AppendEntries are packed once for all followers: sent again
    (the same entry objects) they give the same bytes; a batch with equal values but
    other objects, or another batch of the same length, is packed afresh."""
    batch = tuple(Entry(4, i, EntryKind.COMMAND, ("add", i)) for i in range(1, 9))
    to_b = AppendEntries("a", "b", 4, 0, 0, batch, 8, 3)
    to_c = AppendEntries("a", "c", 4, 0, 0, batch, 8, 3)
    assert wire.decode(wire.encode(to_b)[4:]) == to_b
    assert wire.decode(wire.encode(to_c)[4:]) == to_c
    assert wire.encode(to_c)[-60:] == wire.encode(to_b)[-60:]  # the same packed entries
    for other in (
        tuple(Entry(4, i, EntryKind.COMMAND, ("add", i)) for i in range(1, 9)),  # equal
        tuple(Entry(5, i, EntryKind.COMMAND, ("sub", i)) for i in range(1, 9)),
        (*batch[:7], Entry(5, 8, EntryKind.NOOP, None)),  # only the last one differs
        (*batch[:3], Entry(5, 4, EntryKind.NOOP, None), *batch[4:]),  # only a middle one
    ):
        message = AppendEntries("a", "b", 5, 0, 0, other, 8, 4)
        assert wire.decode(wire.encode(message)[4:]) == message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ([True, 2, 1, None], "non-negative integer"),  # a bool is not a term
        ([3, 2**63, 1, None], "non-negative integer"),  # beyond a signed 64-bit field
        ([3, -1, 1, None], "non-negative integer"),
        ([3.0, 2, 1, None], "non-negative integer"),
        ([3, 2, 9, None], "unknown entry kind 9"),
        ([3, 2, False, None], "unknown entry kind False"),
        ([3, 4, 1, None], "not consecutive"),  # the batch's first entry is index 1
        ([3, 2, 1], r"an entry \[term, index, kind, data\]"),
        ("entry", r"an entry \[term, index, kind, data\]"),
        ([3, 2, 2, ["a"]], "configuration"),
    ],
)
def test_every_field_of_an_entry_is_checked(entry: Any, words: str) -> None:
    """Decoding names what is wrong with an entry (the plain checks of the common case
    refuse exactly what the general ones do) and raises MalformedMessage, nothing else."""
    good = AppendEntries("a", "b", 3, 0, 0, (Entry(3, 1, EntryKind.COMMAND, 1),), 0)
    fields = msgpack.unpackb(wire.encode(good)[5:])
    position = 1 + wire._FIELDS[AppendEntries].index("entries")
    fields[position] = [fields[position][0], entry]
    body = bytes((wire.VERSION,)) + msgpack.packb(fields)
    with pytest.raises(trioraft.MalformedMessage, match=words):
        wire.decode(body)


def test_commands_that_are_not_msgpack_values_are_refused() -> None:
    with pytest.raises(TypeError, match=r"builtins\.set"):
        wire.encode(AppendEntries("a", "b", 1, 0, 0, (Entry(1, 1, EntryKind.COMMAND, {1}),), 0))
    network = TcpNetwork("127.0.0.1:1", {}, None, None, 1 << 20)
    endpoint = TcpEndpoint(network, "a")
    for fine in (0, -(1 << 63), (1 << 64) - 1, 1.5, True, None, "x", [1, {"k": b"v"}]):
        endpoint.check_value(fine)  # the ints at msgpack's limits too
    for bad in (1 << 64, -(1 << 63) - 1, {1}, object(), "\ud800"):
        with pytest.raises(TypeError):
            endpoint.check_value(bad)


def _nested_tuples(levels: int) -> tuple[Any, ...]:
    value: tuple[Any, ...] = ()
    for _ in range(levels - 1):
        value = (value,)
    return value


def test_tuples_nest_up_to_the_limit_and_deeper_ones_are_refused_at_the_call() -> None:
    """A tuple level is decoded by a call of msgpack's C decoder from the level above, so
    a few hundred levels would crash the decoding process: the codec refuses them."""
    deepest = _nested_tuples(MAX_TUPLE_DEPTH)
    assert decode_value(encode_value(deepest)) == deepest
    too_deep = _nested_tuples(MAX_TUPLE_DEPTH + 1)
    endpoint = TcpEndpoint(TcpNetwork("127.0.0.1:1", {}, None, None, 1 << 20), "a")
    for value in (too_deep, [1, {"k": too_deep}], _nested_tuples(300)):
        with pytest.raises(TypeError, match=f"tuples nested at most {MAX_TUPLE_DEPTH} deep"):
            endpoint.check_value(value)
    deep_list: list[Any] = []
    for _ in range(3000):
        deep_list = [deep_list]
    with pytest.raises(TypeError, match="nested this deep"):
        endpoint.check_value(deep_list)
    assert decode_value(encode_value(deepest)) == deepest  # the depth count is back at 0


def test_a_frame_of_tuples_nested_hundreds_deep_is_malformed_not_a_crash() -> None:
    """Hostile bytes that a trioraft encoder never makes: 300 nested tuple extensions in
    an AppendEntries. Decoded in a child process, which a crash would kill (exit -11)."""
    code = """if True:
        import msgpack, trioraft
        from trioraft._network import wire
        ext = msgpack.ExtType(1, msgpack.packb([]))
        for _ in range(300):
            ext = msgpack.ExtType(1, msgpack.packb([ext]))
        good = wire.encode(trioraft._core.AppendEntries("a", "b", 1, 0, 0, (), 0))
        fields = msgpack.unpackb(good[5:])
        fields[-1] = ext
        try:
            wire.decode(bytes((wire.VERSION,)) + msgpack.packb(fields))
        except trioraft.MalformedMessage as exc:
            print("malformed:", exc)
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"tuples nested more than {MAX_TUPLE_DEPTH} deep" in done.stdout


def _decode_cleanly(body: bytes) -> None:
    try:
        message = wire.decode(body)
    except trioraft.MalformedMessage:
        return
    assert isinstance(message, Message)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decoder_answers_random_bytes_with_malformed_message(data: bytes) -> None:
    _decode_cleanly(data)
    _decode_cleanly(bytes((wire.VERSION,)) + data)


@settings(max_examples=500)
@given(st.data())
def test_decoder_answers_mutated_frames_with_malformed_message(data: st.DataObject) -> None:
    body = bytearray(wire.encode(data.draw(st.sampled_from(MESSAGES)))[4:])
    for _ in range(data.draw(st.integers(1, 4))):
        if not body:
            break
        i = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            body[i] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del body[i:]
        else:
            body[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    _decode_cleanly(bytes(body))


@settings(max_examples=300)
@given(
    st.lists(
        st.one_of(
            st.integers(-(2**63), 2**64 - 1), st.text(), st.none(), st.booleans(), st.binary()
        )
    )
)
def test_decoder_answers_wrongly_typed_fields_with_malformed_message(fields: list[Any]) -> None:
    for code in (1, 3, 4, 9, 20, 21):
        _decode_cleanly(bytes((wire.VERSION,)) + msgpack.packb([code, *fields]))


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("[::1", "unbalanced brackets"),  # was taken for host '[:' port 1, and stored
        ("a]:1", "unbalanced brackets"),
        ("::1:7000", r"goes in brackets, as '\[::1\]:7000'"),
        ("[zz]:1", "bad IPv6 address"),
        ("host", "expected a 'host:port' address"),
        ("host:7_000", "bad port"),
        ("host:+1", "bad port"),
        (":0", "bad address"),
        ("host:65536", "bad address"),
    ],
)
def test_a_malformed_address_is_refused_naming_it(address: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_address(address)


def test_well_formed_addresses_parse() -> None:
    assert parse_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert parse_address("[::1]:7001") == ("::1", 7001)
    assert parse_address("db-1.example.com:0") == ("db-1.example.com", 0)


async def test_open_client_checks_its_arguments_before_it_starts() -> None:
    """Plain exceptions at the call (not inside an exception group), naming the problem."""
    with pytest.raises(ValueError, match="unbalanced brackets"):
        async with trioraft.open_client(["127.0.0.1:7001", "[::1"]):
            pass
    with pytest.raises(ValueError, match="secret must be non-empty bytes, got str"):
        async with trioraft.open_client(["127.0.0.1:7001"], secret="text"):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match=r"network must be a trioraft\.MemoryNetwork"):
        async with trioraft.open_client(["a"], network="net"):  # type: ignore[arg-type]
            pass


def test_listening_off_loopback_needs_a_secret_or_tls() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        trioraft.TcpNetwork("0.0.0.0:0", {}, None, None, 1 << 20)


# ------------------------------------------------------------------- live sockets


def test_free_tcp_ports_are_distinct_free_and_never_a_source_port() -> None:
    """The ports tests give their servers are distinct, free, and outside the kernel's
    ephemeral range, so an outgoing connection (one server dialling another that does
    not listen yet) can never take one before its server binds it."""
    from trioraft.testing._ports import ephemeral_port_range

    low, high = ephemeral_port_range()
    ports = free_tcp_ports(6)
    assert len(set(ports)) == 6
    assert not any(low <= p <= high for p in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    assert free_tcp_ports(0) == []
    with pytest.raises(ValueError, match="count"):
        free_tcp_ports(-1)


async def test_cluster_over_loopback_with_a_client() -> None:
    async with tcp_cluster() as (servers, networks, addresses):
        async with trioraft.open_client(list(addresses.values()), secret=SECRET) as client:
            for i in range(1, 21):
                assert await client.write(1) == i
            assert await client.read(None) == 20
            with pytest.raises(TypeError, match=r"builtins\.set"):
                await client.write({1, 2})
            with pytest.raises(TypeError, match="tuples nested at most"):
                await client.write(_nested_tuples(300))  # crashed the server it reached
            with pytest.raises(ValueError, match="boom"):
                await client.write("boom")
        # A query must be a msgpack value on TCP too, when given to a server directly
        # (API, "Wire format": TypeError naming the type, at the call).
        leader = servers[await servers["a"].await_leader()]
        with pytest.raises(TypeError, match=r"builtins\.set"):
            await leader.read({1})
        with pytest.raises(TypeError, match=r"builtins\.object"):
            await leader.read_dirty(object())
        with pytest.raises(TypeError, match="tuples nested at most"):
            await leader.write(_nested_tuples(300))
        assert await leader.read(None) == 20
        assert all(net.statistics().malformed == 0 for net in networks.values())


async def test_a_client_shared_by_many_tasks_over_tcp() -> None:
    """``Client``: several tasks may use one client at once. Over TCP they sent on one
    socket at once, and trio refused (BusyResourceError reached the callers)."""
    async with (
        tcp_cluster() as (_, _, addresses),
        trioraft.open_client(list(addresses.values()), secret=SECRET) as client,
    ):
        replies: list[int] = []

        async def writer() -> None:
            for _ in range(5):
                replies.append(await client.write(1))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(writer)
        assert sorted(replies) == list(range(1, 51))  # each applied once, each answered


async def test_a_send_cut_by_cancellation_drops_the_connection() -> None:
    """A request cancelled in the middle of its frame left the rest of the frame owed on
    the client's connection: the next request was read as that rest, and every later
    write hung. The connection is now marked broken, and the next request opens another
    (a lockstep stream makes the cut exact: its sender waits for each byte taken)."""
    client_end, server_end = trio.testing.lockstep_stream_pair()
    async with trio.open_nursery() as nursery:
        transport = _TcpTransport("c", nursery, None, None)
        connection = _Connection(FrameStream(client_end, 1 << 20), "a")
        transport._connections["127.0.0.1:1"] = connection
        request = ClientRequest("c", "a", 0, 1, "write", 1, 1, 1, b"x" * 1000)
        with trio.CancelScope() as scope:

            async def take_a_little() -> None:
                assert len(await server_end.receive_some(10)) <= 10
                scope.cancel()  # the sender is now in the middle of the frame

            nursery.start_soon(take_a_little)
            await transport.request("127.0.0.1:1", request)
        assert scope.cancelled_caught
        assert connection.broken
        nursery.cancel_scope.cancel()


async def test_wrong_or_missing_secret_is_disconnected_and_changes_nothing() -> None:
    async with tcp_cluster() as (servers, networks, addresses):
        leader = servers[await servers["a"].await_leader()]
        target = addresses[leader.name]
        for secret in (b"not the secret", None):
            stream = await raw_connection(target)
            frames = FrameStream(stream, 1 << 20)
            with pytest.raises(trioraft._network.handshake.HandshakeError):
                await client_handshake(frames, secret, "client", "intruder")
            await stream.aclose()
        # A client refused by every server it knows is told so, instead of retrying
        # forever; a server that refuses it once does not stop it from trying the rest.
        everyone = list(addresses.values())
        async with trioraft.open_client(everyone, secret=b"wrong") as client:
            with trio.fail_after(5), pytest.raises(trioraft.AuthenticationFailed, match="every"):
                await client.write(100)
        assert networks[leader.name].statistics().auth_failures >= 3
        assert leader.machine.value == 0
        await assert_still_serves(servers, addresses)


BadInput = Callable[[], bytes]


@pytest.mark.parametrize(
    ("role", "make", "counter"),
    [
        ("peer", lambda: b"\x00\x00\x00\x05garbage", "malformed"),
        ("peer", lambda: (1 << 21).to_bytes(4, "big") + b"\x01", "oversized"),
        ("peer", lambda: wire.encode(Heartbeat("b", "a", 99, 0)), "forged"),
        ("peer", lambda: wire.encode(ClientRequest("x", "a", 0, 1, "write", payload=5)), "forged"),
        ("client", lambda: wire.encode(Heartbeat("x", "a", 99, 0)), "forged"),
        ("client", lambda: wire.encode(ClientRequest("b", "a", 0, 1, "read")), "forged"),
    ],
    ids=["garbage", "oversized", "forged-sender", "wrong-type-peer", "raft-from-client", "spoof"],
)
async def test_bad_input_closes_one_connection_and_is_counted(
    role: str, make: BadInput, counter: str
) -> None:
    async with tcp_cluster(max_frame=1 << 20) as (servers, networks, addresses):
        target = servers["c"]
        network = networks["c"]
        term = target.status().term
        before = getattr(network.statistics(), counter)
        frames = await authenticated(addresses["c"], role, "x")
        await frames.send(make())
        await expect_closed(frames)
        assert getattr(network.statistics(), counter) == before + 1
        # Nothing changed: the server runs, and no forged term (99) was taken. (An election
        # of its own, after a stall of the machine longer than a timeout, may still move
        # the term by one or two; these exchanges take real time.)
        assert not target.stopped and term <= target.status().term < 99
        await assert_still_serves(servers, addresses)


async def test_tls_and_mutual_tls() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mutual: clients show a certificate
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    cert.configure_cert(client_ctx)
    async with tcp_cluster(secret=None, ssl_context=(server_ctx, client_ctx)) as (
        servers,
        _networks,
        addresses,
    ):
        async with trioraft.open_client(
            list(addresses.values()), ssl_context=(server_ctx, client_ctx)
        ) as client:
            assert await client.write(5) == 5
        stranger = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(stranger)  # trusts the servers, but has no certificate
        async with trioraft.open_client([addresses["a"]], ssl_context=stranger) as client:
            with trio.move_on_after(2):
                await client.write(100)
                pytest.fail("a client without a certificate got a write through")
        assert servers["a"].machine.value == 5


async def test_an_idle_outgoing_link_notices_its_peer_restart() -> None:
    """An outgoing connection that carries nothing (one follower to another between
    elections) notices at once when its peer stops, so the first message after the
    peer restarts on the same address arrives instead of being lost on a dead link."""
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip("ab", free_tcp_ports(2), strict=True)}

    @asynccontextmanager
    async def node(name: str) -> AsyncIterator[tuple[Any, Any]]:
        peers = {m: a for m, a in addresses.items() if m != name}
        async with trioraft.open_tcp_network(
            listen=addresses[name], peers=peers, secret=SECRET
        ) as network:
            yield network, network.register(name)

    with trio.fail_after(20):
        async with node("a") as (net_a, a):
            async with node("b") as (_, b):
                a.send(TimeoutNow("a", "b", 1))
                assert [type(m) for m in await b.receive_batch()] == [TimeoutNow]
                assert net_a.statistics().connections >= 1
            while net_a.statistics().connections:  # b is gone: a's link to it ends
                await trio.sleep(0.01)
            async with node("b") as (_, b):
                a.send(TimeoutNow("a", "b", 2))  # the first message after the restart
                (message,) = await b.receive_batch()
                assert isinstance(message, TimeoutNow) and message.term == 2


@pytest.mark.skipif(not hasattr(socket, "socketpair"), reason="needs socket.socketpair")
async def test_frames_written_directly_or_queued_arrive_whole_and_in_order() -> None:
    """A link writes a frame straight to its socket only while nothing waits in its
    queue; a frame the socket cannot take whole is finished by the pump, and frames put
    meanwhile queue behind it. The peer reads every byte, in the order put."""
    a, b = trio.socket.socketpair()
    near, far = trio.SocketStream(a), trio.SocketStream(b)
    send, receive = trio.open_memory_channel[bytes](QUEUE_SIZE)
    link = _Link(send)
    link.attach(near)
    expected = bytearray()

    def put(frame: bytes) -> None:
        link.put(frame)
        expected.extend(frame)

    put(b"first")  # straight to the socket: readable before any pump runs
    with trio.fail_after(5):
        assert await far.receive_some(100) == b"first"
    assert receive.statistics().current_buffer_used == 0
    big = bytes(range(256)) * 40_000  # 10 MB: more than any socket buffer takes at once
    put(big)
    assert link.backlog  # the rest of it waits for the pump ...
    got = bytearray()
    with trio.fail_after(5):
        got += await far.receive_some(1 << 16)  # room in the socket again, yet
    for i in range(50):
        put(f"after-{i};".encode())  # ... and so does everything after it
    assert receive.statistics().current_buffer_used == 51
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, FrameStream(near, 1 << 30), link, receive)
            while len(got) < len(expected) - 5:
                got += await far.receive_some(1 << 20)
            while link.backlog:
                await trio.sleep(0.001)
            put(b"direct-again")  # the queue is empty: straight to the socket again
            assert receive.statistics().current_buffer_used == 0
            while len(got) < len(expected) - 5:
                got += await far.receive_some(1 << 20)
            nursery.cancel_scope.cancel()
    assert got == expected[5:]
    link.detach()
    link.put(b"queued")  # no socket attached: the frame waits for the next pump
    assert receive.receive_nowait() == b"queued"
    near.socket.close()
    far.socket.close()


async def test_messages_that_arrive_together_are_delivered_together_in_order() -> None:
    """A server takes its messages by call, from the task that read them: the frames
    one connection brought together come as one batch, in order; frames before a bad one
    are still delivered, then the connection closes and is counted."""
    (port,) = free_tcp_ports(1)
    batches: list[list[Message]] = []
    with trio.fail_after(10):
        async with trioraft.open_tcp_network(
            listen=f"127.0.0.1:{port}", peers={"b": "127.0.0.1:1"}, secret=SECRET
        ) as network:
            endpoint = network.register("a")
            endpoint.deliver_to(batches.append)
            frames = await authenticated(f"127.0.0.1:{port}", "peer", "b")
            beats = [Heartbeat("b", "a", 1, 0, round) for round in range(1, 6)]
            await frames.send(b"".join(wire.encode(m) for m in beats))
            while sum(map(len, batches)) < len(beats):
                await trio.sleep(0.01)
            assert [m for batch in batches for m in batch] == beats
            assert len(batches) <= 2  # together (a read may split them, rarely)
            batches.clear()
            good = Heartbeat("b", "a", 1, 0, 9)
            await frames.send(wire.encode(good) + b"\x00" * 12)  # then garbage
            await expect_closed(frames)
            assert batches == [[good]]
            assert network.statistics().malformed == 1
            endpoint.close()


async def test_a_tracer_report_over_tcp_reaches_the_servers_nursery() -> None:
    """A tracer that raises (the testing toolkit's invariant checks do) is a report for
    the program: over TCP too, where messages are taken by call from the network's
    tasks, it is raised in the nursery the server runs in, not swallowed there."""

    class Report(Exception):
        pass

    def tracer(event: trioraft.TraceEvent) -> None:
        if event.kind == "apply":
            raise Report(f"{event.server} applied an entry")

    port_a, port_b = free_tcp_ports(2)
    addresses = {"a": f"127.0.0.1:{port_a}", "b": f"127.0.0.1:{port_b}"}
    with pytest.raises(BaseException) as info, trio.fail_after(20):
        async with trio.open_nursery() as outer:
            for name in ("a", "b"):
                peers = {m: a for m, a in addresses.items() if m != name}
                network = await outer.start(_serve_network, addresses[name], peers)
                await trioraft.start_server(
                    outer,
                    Counter,
                    name=name,
                    network=network,
                    initial_config=["a", "b"],
                    tracer=tracer if name == "b" else None,
                )
            await trio.sleep_forever()  # a's no-op is applied on b: b's tracer raises
    assert _holds(info.value, Report), repr(info.value)


def _holds(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` is a ``kind`` or an exception group holding one."""
    nested = getattr(error, "exceptions", ())
    return isinstance(error, kind) or any(_holds(e, kind) for e in nested)


async def _serve_network(
    listen: str, peers: dict[str, str], task_status: trio.TaskStatus[Any]
) -> None:
    async with trioraft.open_tcp_network(listen=listen, peers=peers) as network:
        task_status.started(network)
        await trio.sleep_forever()
