"""TCP on a hostile network (API, "Hostile networks"): each protection, against an
attacker who does not know the secret, a client who knows the client key, and a peer.

Each scenario of ../shared/repros' "Hostile network" scripts is here in a form of its
own: the record layer and the handshake's parsers without sockets; a byte relay of a
member's handshake; clients named after peers; connections that never authenticate;
peers outside the configuration; a term no election can follow; mutual TLS with a
certificate that names another server. Real sockets on 127.0.0.1 and free ports, every
wait bounded.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

import pytest
import trio
from hypothesis import given
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
from trioraft._client import _TcpTransport
from trioraft._core import AppendEntries, Entry, EntryKind, Heartbeat, RequestVote
from trioraft._core.types import MAX_TERM_GAP
from trioraft._errors import MalformedMessage
from trioraft._network import handshake, limits, links, tcp, wire
from trioraft._network.frames import (
    FrameStream,
    OversizedFrame,
    RecordOpener,
    RecordSealer,
    split_frames,
)
from trioraft._network.handshake import HandshakeError
from trioraft._network.tcp import client_handshake
from trioraft._protocol import ClientRequest, ClientResponse
from trioraft.testing import free_tcp_ports
from trioraft.testing._pure import make_node

from machines import Counter


# ------------------------------------------------------------ records, no sockets
def _pair(key: bytes = b"k" * 32, iv: bytes = b"i" * 12) -> tuple[RecordSealer, RecordOpener]:
    return RecordSealer(key, iv), RecordOpener(key, iv)


def _open(opener: RecordOpener, record: bytes) -> bytes:
    return opener.open(record[:4], record[4:])


def test_a_record_opens_once_in_order_and_only_unaltered() -> None:
    """Forged, altered, replayed, reordered, cut or reflected records fail to open."""
    sealer, opener = _pair()
    first, second = sealer.seal(b"frame one"), sealer.seal(b"frame two")
    assert b"frame" not in first  # sealed, not only signed
    with pytest.raises(MalformedMessage, match="authentication"):
        _open(opener, second)  # out of order
    assert _open(opener, first) == b"frame one"
    with pytest.raises(MalformedMessage):
        _open(opener, first)  # replayed
    altered = bytearray(second)
    altered[10] ^= 1
    with pytest.raises(MalformedMessage):
        _open(opener, bytes(altered))
    with pytest.raises(MalformedMessage):
        _open(opener, second[:4] + second[4:-1])  # cut short
    assert _open(opener, second) == b"frame two"  # a failure consumed nothing
    other_key, _ = _pair(key=b"o" * 32)
    with pytest.raises(MalformedMessage):
        _open(opener, other_key.seal(b"spliced from another connection"))
    back, _ = _pair(iv=b"j" * 12)  # the other direction: another IV (and key)
    with pytest.raises(MalformedMessage):
        _open(opener, back.seal(b"reflected"))


def test_a_record_holds_whole_frames_only() -> None:
    frames = wire.encode(Heartbeat("a", "b", 1, 0)) + wire.encode(Heartbeat("a", "b", 1, 0, 2))
    assert [wire.decode(b) for b in split_frames(frames, 1 << 20)][1].round == 2
    with pytest.raises(MalformedMessage, match="inside a frame"):
        split_frames(frames[:-1], 1 << 20)
    with pytest.raises(OversizedFrame):
        split_frames(frames, 8)


def test_the_handshake_binds_the_server_meant_and_each_direction() -> None:
    nonce_s, _ = handshake.make_hello()
    intro, _ = handshake.make_intro(SECRET, nonce_s, "peer", "a", "b", "127.0.0.1:1")
    assert handshake.check_intro(intro, nonce_s, (SECRET,)) == SECRET
    for wrong in (b"wrong secret", None):
        with pytest.raises(HandshakeError, match="failed authentication"):
            handshake.check_intro(intro, nonce_s, (wrong or b"",))
    other_nonce, _ = handshake.make_hello()
    with pytest.raises(HandshakeError):  # a replayed intro meets a fresh nonce
        handshake.check_intro(intro, other_nonce, (SECRET,))
    answer = handshake.parse_control(handshake.make_answer(SECRET, nonce_s, intro, "c")[4:])
    with pytest.raises(HandshakeError, match="reached 'c', not 'b'"):
        handshake.parse_answer(answer, SECRET, nonce_s, intro)  # relayed to c
    dialler = handshake.traffic_keys(SECRET, nonce_s, intro, "b", dialler=True)
    listener = handshake.traffic_keys(SECRET, nonce_s, intro, "b", dialler=False)
    assert dialler.outbound_key == listener.inbound_key != listener.outbound_key
    assert dialler.outbound_iv == listener.inbound_iv


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=300),
    st.binary(max_size=40), st.lists(st.integers(), max_size=3),
)  # fmt: skip
_FIELDS = st.dictionaries(
    st.sampled_from(["hello", "version", "nonce", "role", "name", "to", "listen", "mac", "ok",
                     "error"]) | st.text(max_size=5),
    _VALUES,
)  # fmt: skip


@given(fields=_FIELDS)
def test_a_handshake_field_of_any_type_is_a_handshake_error(fields: dict[str, Any]) -> None:
    """Whatever the other end sends, parsing a handshake raises HandshakeError or
    succeeds (a ``mac`` of 1 raised TypeError, and took a server down)."""
    nonce_s, _ = handshake.make_hello()
    intro, _ = handshake.make_intro(SECRET, nonce_s, "client", "c", "", "")
    for parse in (
        handshake.parse_hello,
        handshake.parse_intro,
        lambda f: handshake.parse_answer(f, SECRET, nonce_s, intro),
    ):
        with contextlib.suppress(HandshakeError):
            parse(fields)


# --------------------------------------------------------- values in range, no sockets
def test_a_term_that_cannot_be_followed_is_malformed() -> None:
    last = 2**63 - 2
    assert wire.decode(wire.encode(Heartbeat("a", "b", last, 0))[4:]).term == last
    with pytest.raises(MalformedMessage, match="non-negative integer"):
        wire.decode(wire.encode(Heartbeat("a", "b", last + 1, 0))[4:])


def test_no_message_moves_a_server_more_than_the_gap_in_terms() -> None:
    node = make_node("a")
    term = node.term
    with pytest.raises(MalformedMessage, match="over"):
        node.step(RequestVote("b", "a", term + MAX_TERM_GAP + 1, 0, 0, cluster=""), 0.0)
    assert node.term == term
    node.step(Heartbeat("b", "a", term + MAX_TERM_GAP, 0), 0.0)  # within the gap: taken
    assert node.term == term + MAX_TERM_GAP


async def test_a_large_frame_is_decoded_a_piece_at_a_time() -> None:
    entries = tuple(Entry(1, i, EntryKind.COMMAND, ("x", i, b"y" * 40)) for i in range(1, 20001))
    message = AppendEntries("a", "b", 1, 0, 0, entries, 0, 0)
    body = wire.encode(message)[4:]
    assert len(body) > limits.LARGE_FRAME
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        start = turns
        assert await wire.decode_gradually(body) == message
        assert turns - start >= len(entries) // 512  # others ran while it decoded
        nursery.cancel_scope.cancel()
    spliced = wire.encode(AppendEntries("a", "b", 1, 0, 0, entries[:600] + entries[601:], 0, 0))
    with pytest.raises(MalformedMessage, match="consecutive"):
        await wire.decode_gradually(spliced[4:])
    huge = bytes((wire.VERSION,)) + b"\xdd" + (48 << 20).to_bytes(4, "big")
    with pytest.raises(MalformedMessage, match="fields"):  # its shape, before its items
        await wire.decode_gradually(huge + b"\x03" * 64)


def test_keepalive_is_set_on_connections() -> None:
    a, b = socket.socketpair()
    with a, b:
        links._keepalive(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


# ----------------------------------------------------------------- over sockets
async def test_a_relayed_handshake_is_refused() -> None:
    """An attacker without the secret takes a down member's port and relays, byte for
    byte, what a member dials there to another member: the intro names the member it
    was meant for, so the other member refuses it and nothing reaches its server."""
    async with tcp_cluster() as (servers, networks, addresses):
        victim = networks["c"]
        before = victim.statistics().auth_failures
        host, port = addresses["c"].split(":")
        attempts = 0

        async def relay(dialled: trio.SocketStream) -> None:
            nonlocal attempts
            attempts += 1
            async with dialled, await trio.open_tcp_stream(host, int(port)) as onward:

                async def copy(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                    with trio.move_on_after(2):
                        while data := await src.receive_some():
                            await dst.send_all(data)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(copy, dialled, onward)
                    nursery.start_soon(copy, onward, dialled)

        (squat,) = free_tcp_ports(1)
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(squat, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, relay, listeners)
            # a learns (as from a configuration) that a new member "d" listens there
            networks["a"].learn_addresses({"d": f"127.0.0.1:{squat}"})
            networks["a"].keep_only(["a", "b", "c", "d"])
            with trio.fail_after(10):
                while victim.statistics().auth_failures == before:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert attempts >= 1
        assert servers["c"].status().term < 10
        await assert_still_serves(servers, addresses)


async def test_a_client_named_after_a_peer_gets_no_raft_traffic() -> None:
    async with tcp_cluster() as (servers, networks, addresses):
        leader = await servers["a"].await_leader()
        follower = next(n for n in addresses if n != leader)
        impostor = await authenticated(addresses[leader], "client", follower)
        with trio.move_on_after(0.5):  # ten heartbeats to the follower in that time
            assert await impostor.receive() is None, "a client received Raft traffic"
        assert follower in networks[leader]._clients and follower in networks[leader]._links
        assert servers[leader].status().role is trioraft.Role.LEADER
        await assert_still_serves(servers, addresses)
        await impostor.stream.aclose()


async def test_a_client_key_cannot_authenticate_a_peer() -> None:
    client_key = b"the clients' key"
    async with tcp_cluster(client_secret=client_key) as (_servers, _networks, addresses):
        everyone = list(addresses.values())
        for secret in (client_key, SECRET):  # the cluster's key may act as a client
            async with trioraft.open_client(everyone, secret=secret) as client:
                with trio.fail_after(10):
                    assert await client.write(1) >= 1
        stream = await raw_connection(addresses["a"])
        with pytest.raises(HandshakeError, match="refused"):
            await client_handshake(FrameStream(stream, 1 << 20), client_key, "peer", "z")
        await stream.aclose()
        with pytest.raises(ValueError, match="client_secret must be non-empty bytes"):
            tcp.TcpNetwork("127.0.0.1:0", {}, SECRET, None, 1 << 20, client_secret="x")  # type: ignore[arg-type]


async def test_before_authentication_a_connection_is_small_brief_and_one_of_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "HANDSHAKE_TIMEOUT", 0.5)
    async with tcp_cluster() as (servers, networks, addresses):
        network = networks["a"]
        network._max_unauthenticated = 3
        # A handshake frame over the limit is refused on its length, unread.
        stream = await raw_connection(addresses["a"])
        await stream.receive_some()  # the hello
        await stream.send_all((64 << 20).to_bytes(4, "big") + b"\x01" * 1000)
        with trio.fail_after(5):
            while await stream.receive_some():  # the refusal, then the end
                pass
        assert network.statistics().auth_failures >= 1
        # Connections that never authenticate: a few wait out the deadline, the rest
        # are closed as soon as accepted.
        silent = [await raw_connection(addresses["a"]) for _ in range(6)]
        with trio.fail_after(5):
            while network.statistics().refused < 3:
                await trio.sleep(0.01)
        assert network._unauthenticated <= 3
        with trio.fail_after(5):  # the deadline closes the others
            while network._unauthenticated:
                await trio.sleep(0.01)
        for s in silent:
            await s.aclose()
        await assert_still_serves(servers, addresses)


async def test_a_hostile_answer_is_a_handshake_error_for_servers_and_clients() -> None:
    """A fake server answers every handshake with a MAC that is not bytes: the server
    dialling it and a client talking to it go on (a TypeError took them down)."""
    (port,) = free_tcp_ports(1)

    async def impostor(stream: trio.SocketStream) -> None:
        _, hello = handshake.make_hello()
        await stream.send_all(hello)
        await stream.receive_some()
        await stream.send_all(handshake.control_frame({"ok": True, "name": "b", "mac": 1}))

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, impostor, listeners)
        stream = await raw_connection(f"127.0.0.1:{port}")
        with pytest.raises(HandshakeError, match="bad handshake: field 'mac'"):
            await client_handshake(FrameStream(stream, 1 << 20), SECRET, "peer", "a", to="b")
        async with trioraft.open_tcp_network(
            listen="127.0.0.1:0", peers={"b": f"127.0.0.1:{port}"}, secret=SECRET
        ) as network:
            endpoint = network.register("a")
            with trio.fail_after(10):
                while network.statistics().connects < 2:  # dialled, failed, dialled again
                    await trio.sleep(0.01)
            endpoint.close()
        async with trioraft.open_client([f"127.0.0.1:{port}"], secret=SECRET) as client:
            with trio.move_on_after(1.5):
                await client.write(1)  # retried, never a TypeError
        nursery.cancel_scope.cancel()


async def test_a_term_no_election_can_follow_closes_the_connection() -> None:
    async with tcp_cluster() as (servers, networks, addresses):
        terms = {n: s.status().term for n, s in servers.items()}
        frames = await authenticated(addresses["b"], "peer", "a")
        await frames.send(wire.encode(Heartbeat("a", "b", 2**63 - 1, 0)))
        await expect_closed(frames)
        assert networks["b"].statistics().malformed == 1
        assert servers["b"].status().term < terms["b"] + 5
        await assert_still_serves(servers, addresses)


async def test_peers_outside_the_configuration_are_answered_only_while_connected() -> None:
    async with tcp_cluster() as (servers, networks, addresses):
        network = networks["a"]
        ghosts = [
            await authenticated(addresses["a"], "peer", f"ghost-{i}", listen="127.0.0.1:9")
            for i in range(limits.MAX_PROVISIONAL + 4)
        ]
        with trio.fail_after(5):
            while len(network._provisional) < limits.MAX_PROVISIONAL:
                await trio.sleep(0.01)
        assert len(network._provisional) == limits.MAX_PROVISIONAL  # no more than that
        for ghost in ghosts:
            await ghost.stream.aclose()
        with trio.fail_after(5):
            while network._provisional or set(network._links) - {"b", "c"}:
                await trio.sleep(0.01)
        await assert_still_serves(servers, addresses)


async def test_a_peer_removed_from_the_configuration_loses_its_link() -> None:
    async with tcp_cluster() as (servers, networks, addresses):
        leader = servers[await servers["a"].await_leader()]
        gone = next(n for n in addresses if n != leader.name)
        with trio.fail_after(10):
            await leader.remove_server(gone)
        assert gone not in networks[leader.name]._links
        assert gone in networks[leader.name]._addresses  # reachable again if re-added


async def test_a_peer_that_dials_again_replaces_its_older_connection() -> None:
    async with tcp_cluster() as (_, _, addresses):
        first = await authenticated(addresses["a"], "peer", "b")
        await authenticated(addresses["a"], "peer", "b")
        await expect_closed(first)


async def test_two_clients_of_one_name_both_get_answers() -> None:
    async with tcp_cluster() as (_, _, addresses):
        everyone = list(addresses.values())
        with trio.fail_after(20):
            async with trioraft.open_client(everyone, secret=SECRET, name="fixed") as one:
                await one.write(1)
                async with trioraft.open_client(everyone, secret=SECRET, name="fixed") as two:
                    await two.write(1)
                    await one.write(1)
                    assert await two.write(1) == 4


async def test_a_client_that_reaches_a_server_under_two_addresses_gets_its_answers() -> None:
    async with tcp_cluster() as (servers, _, addresses):
        leader = await servers["a"].await_leader()
        port = addresses[leader].split(":")[1]
        async with trio.open_nursery() as nursery:
            transport = _TcpTransport("twice", nursery, SECRET, None)
            for i, address in enumerate((f"127.0.0.1:{port}", f"localhost:{port}", "")):
                target = address or f"127.0.0.1:{port}"  # the first connection, again
                request = ClientRequest("twice", target, 0, i + 1, "status")
                with trio.fail_after(5):
                    response = await transport.request(target, request)
                assert response is not None and response.request_id == i + 1
            await transport.aclose()
            nursery.cancel_scope.cancel()


async def test_stopping_while_a_link_connects_raises_nothing() -> None:
    (port,) = free_tcp_ports(1)
    mute = socket.socket()
    mute.bind(("127.0.0.1", port))
    mute.listen(64)  # accepted by the kernel, never answered: the link waits for a hello
    with mute, trio.fail_after(10):
        for steps in range(6):
            async with trioraft.open_tcp_network(
                listen="127.0.0.1:0", peers={"b": f"127.0.0.1:{port}"}
            ) as network:
                endpoint = network.register("a")
                for _ in range(steps):
                    await trio.sleep(0)
                endpoint.close()
                await trio.sleep(0.05)


async def test_a_client_connection_has_a_bounded_number_of_requests_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "MAX_CLIENT_REQUESTS", 4)
    (port,) = free_tcp_ports(1)
    taken: list[Any] = []
    async with trioraft.open_tcp_network(
        listen=f"127.0.0.1:{port}", peers={}, secret=SECRET
    ) as network:
        endpoint = network.register("a")
        endpoint.deliver_to(taken.extend)  # never answers by itself
        frames = await authenticated(f"127.0.0.1:{port}", "client", "greedy")
        requests = [ClientRequest("greedy", "a", 0, i, "read") for i in range(10)]
        await frames.send(b"".join(wire.encode(r) for r in requests))
        with trio.fail_after(5):
            while len(taken) < 4:
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        assert [r.request_id for r in taken] == [0, 1, 2, 3]  # the rest wait unread
        endpoint.send(ClientResponse("a", "greedy", 0, 0))
        with trio.fail_after(5):
            while len(taken) < 5:
                await trio.sleep(0.01)
        assert taken[4].request_id == 4


@pytest.fixture
def certificates() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


def _contexts(ca: Any, *names: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert = ca.issue_cert(*names)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client)
    cert.configure_cert(client)
    return server, client


async def test_tls_off_loopback_must_authenticate_clients(certificates: Any) -> None:
    server, client = _contexts(certificates, "127.0.0.1")
    lax = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # asks no certificate
    with pytest.raises(ValueError, match="does not require client certificates"):
        tcp.TcpNetwork("0.0.0.0:0", {}, None, (lax, client), 1 << 20)
    with pytest.raises(ValueError, match="not a loopback address"):
        tcp.TcpNetwork("0.0.0.0:0", {}, None, None, 1 << 20)
    tcp.TcpNetwork("0.0.0.0:0", {}, None, (server, client), 1 << 20)  # mutual: fine
    tcp.TcpNetwork("0.0.0.0:0", {}, SECRET, (lax, client), 1 << 20)  # a secret: fine


async def test_a_peer_certificate_must_name_the_server_it_claims(certificates: Any) -> None:
    server_ctx, _ = _contexts(certificates, "127.0.0.1", "a")
    (port,) = free_tcp_ports(1)
    async with trioraft.open_tcp_network(
        listen=f"127.0.0.1:{port}", peers={"b": "192.0.2.7:1"}, ssl_context=server_ctx
    ) as network:
        network.register("a")
        for holder, claims, accepted in (("mallory", "b", False), ("b", "b", True)):
            _, client_ctx = _contexts(certificates, holder)
            stream = trio.SSLStream(
                await raw_connection(f"127.0.0.1:{port}"), client_ctx, server_hostname="127.0.0.1"
            )
            frames = FrameStream(stream, 1 << 20)
            if accepted:
                assert await client_handshake(frames, None, "peer", claims, to="a") == "a"
            else:
                with pytest.raises(HandshakeError, match="does not name it"):
                    await client_handshake(frames, None, "peer", claims, to="a")
            await trio.aclose_forcefully(stream)
        assert network.statistics().auth_failures == 1


async def test_a_cluster_with_mutual_tls_and_named_certificates(certificates: Any) -> None:
    contexts = {name: _contexts(certificates, "127.0.0.1", name) for name in "abc"}
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip("abc", free_tcp_ports(3), strict=True)}
    servers: dict[str, trioraft.Server] = {}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for name in "abc":
                peers = {m: a for m, a in addresses.items() if m != name}
                network = await nursery.start(_network, addresses[name], peers, contexts[name])
                servers[name] = await trioraft.start_server(
                    nursery, Counter, name=name, network=network, initial_config=list("abc")
                )
            leader = servers[await servers["a"].await_leader()]
            assert await leader.write(3) == 3
            nursery.cancel_scope.cancel()


async def _network(
    listen: str, peers: dict[str, str], context: Any, task_status: trio.TaskStatus[Any]
) -> None:
    async with trioraft.open_tcp_network(listen=listen, peers=peers, ssl_context=context) as net:
        task_status.started(net)
        await trio.sleep_forever()


def test_tcp_clients_number_their_requests_apart() -> None:
    """Answers go to a client's name: two clients given one name (two processes) must
    not number their requests alike, or one could take the other's answer for its own.
    A MemoryNetwork client still counts from 1 (seeded runs repeat)."""
    from trioraft._client import Client

    remote = [next(Client(["x:1"], None, remote=True)._requests) for _ in range(2)]  # type: ignore[arg-type]
    assert remote[0] != remote[1] and min(remote) >= 1
    assert next(Client(["a"], None, remote=False)._requests) == 1  # type: ignore[arg-type]


async def test_a_refused_sender_still_sending_is_drained_not_reset() -> None:
    """A handshake frame over the limit is refused on its length; the server then reads
    and drops what its sender still sends (a lingering close) rather than closing under
    it, which would reset the connection: the sender's writes all go through, and the
    server holds none of it (closed without a frame read)."""
    async with tcp_cluster() as (servers, networks, addresses):
        stream = await raw_connection(addresses["a"])
        await stream.receive_some()  # the hello
        await stream.send_all((48 << 20).to_bytes(4, "big"))
        with trio.fail_after(10):
            for _ in range(32):  # 2 MiB more of the announced frame: never reset
                await stream.send_all(b"\x01" * (64 << 10))
        await stream.aclose()
        assert networks["a"].statistics().auth_failures >= 1
        await assert_still_serves(servers, addresses)
