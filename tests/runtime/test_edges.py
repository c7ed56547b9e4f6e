"""Never stale, never early (issue 22): messages of another term, leader, transfer or
incarnation are never taken for current ones, and the protections of the contract's
"Integrity of snapshots, sessions and reads" hold at their edges.

Core tests drive the pure core by hand (``trioraft.testing._pure``); runtime tests run
servers under the autojump clock (virtual time, no real sleeps).
"""

from __future__ import annotations

import errno
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

import pytest
import trio
import trio.testing

import trioraft
from trioraft._codec import decode_value, encode_value
from trioraft._core import (
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    InstallSnapshot,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    Role,
    TimeoutNow,
)
from trioraft._core.ready import HardState, PersistedState, Snapshot, snapshot_checksum
from trioraft._core.record import evolve
from trioraft._network import wire
from trioraft._runtime.machine import decode_snapshot
from trioraft._sessions import Sessions
from trioraft.testing import free_tcp_ports, open_cluster
from trioraft.testing._pure import PureCluster, make_node, persist_state, pump, take

from machines import Counter

ABC = ("a", "b", "c")
MIN_ET, MAX_ET = 0.15, 0.30  # CoreOptions' default election timeouts


# ------------------------------------------------- leases after a leadership transfer
def _run_rounds(c: PureCluster, seconds: float, hold: type) -> None:
    """Let ``seconds`` pass in heartbeat steps, every node ticking when due; messages of
    type ``hold`` stay in flight."""
    until = c.now + seconds
    while c.now < until:
        c.now = min(until, c.now + 0.05)
        for node in c.nodes.values():
            if node.deadline <= c.now:
                node.tick(c.now)
        c.deliver(hold=lambda m: isinstance(m, hold))


def test_no_lease_for_the_rest_of_the_term_once_timeout_now_was_sent() -> None:
    """§3.10 / §6.4.1: TimeoutNow lets its target win a forced election, which voters
    grant whatever lease they gave: the old leader's lease ends for good in that term,
    even when the transfer is abandoned and quorum rounds keep being acknowledged."""
    c = PureCluster(ABC, lease_reads=True)
    a = c.elect("a")
    c.deliver(heartbeat=True)
    assert a.lease_read_index(c.now) == a.commit_index  # a lease to lose
    a.transfer_leadership("b", c.now)
    c.deliver(hold=lambda m: isinstance(m, TimeoutNow))  # sent at once: b is caught up
    assert [m for m in c.inflight if isinstance(m, TimeoutNow)]
    _run_rounds(c, MAX_ET + 0.05, TimeoutNow)  # rounds acknowledged; the transfer expires
    assert a.role is Role.LEADER and a.transfer_target is None
    for _ in range(5):  # for the rest of the term: no lease, however many rounds
        _run_rounds(c, 0.1, TimeoutNow)
        assert a.lease_read_index(c.now) is None and a.lease_until == float("-inf")
    ticket = a.request_read(c.now)  # a read needs a round of its own (ReadIndex, §6.4)
    assert [m.dst for m in take(a) if isinstance(m, Heartbeat)] == ["b", "c"]
    assert all(t != ticket for t, _ in c.reads["a"])
    c.inflight = [m for m in c.inflight if not isinstance(m, TimeoutNow)]
    c.now += 1.0  # in a later term of its own, a leader has a lease again
    a.trigger_election(c.now)
    c.deliver(heartbeat=True)
    assert a.role is Role.LEADER and a.lease_read_index(c.now) == a.commit_index


async def test_leadership_bodies_stay_cancelled_after_an_abandoned_transfer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``leadership()``: once the leader sent TimeoutNow, its bodies are cancelled, and
    no new body starts in that term, even though the transfer was abandoned (its target
    never heard of it) and the server still leads."""
    async with open_cluster(Counter, 3, seed=5) as cluster:
        with trio.fail_after(20):
            leader = await cluster.wait_for_leader()
        target = next(n for n in cluster.servers if n != leader.name)
        term = leader.status().term
        entered: list[int] = []

        async def body() -> None:
            async with leader.leadership() as t:
                entered.append(t)
                await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(body)
            await trio.sleep(0.5)
            assert entered == [term]
            cluster.isolate(target)  # TimeoutNow is lost: the transfer is abandoned
            with trio.fail_after(5), pytest.raises(trioraft.TransferFailed):
                await leader.transfer_leadership(target)
            status = leader.status()
            assert status.role is Role.LEADER and status.term == term
            assert status.transfer_target is None
            second: list[int] = []

            async def again() -> None:
                async with leader.leadership() as t:
                    second.append(t)

            with trio.move_on_after(2.0):
                await again()
            # The first body was cancelled; no body ran again in the same term.
            assert entered == [term] and all(t != term for t in second)
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------- snapshot transfers
SMALL = {"snapshot_threshold": 10, "snapshot_trailing": 3, "snapshot_chunk_size": 16}


def _behind_a_snapshot() -> PureCluster:
    """a leads, has compacted its log, and c (cut off meanwhile) needs its snapshot."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    for i in range(40):
        a.propose(("x", i), c.now)
        c.deliver(lambda m: "c" in (m.src, m.dst))
    assert a.log.first_index > 2
    return c


def test_a_transfer_whose_bytes_do_not_match_the_checksum_is_fetched_again() -> None:
    """Integrity: a chunk changed on its way (same length) makes the reassembled bytes
    miss the snapshot's checksum: the follower discards them, the leader sends the
    snapshot again from the first byte, and what is installed is the leader's."""
    c = _behind_a_snapshot()
    for _ in range(3):  # the first window of chunks, held in flight
        if not any(isinstance(m, InstallSnapshot) for m in c.inflight):
            c.deliver(hold=lambda m: isinstance(m, InstallSnapshot), heartbeat=True)
    (i,) = [
        i for i, m in enumerate(c.inflight) if isinstance(m, InstallSnapshot) and m.offset == 16
    ]
    good = c.inflight[i]
    assert isinstance(good, InstallSnapshot)
    c.inflight[i] = evolve(good, data=bytes([good.data[0] ^ 0xFF]) + good.data[1:])
    c.run(2.0)
    offsets = [m.offset for m in c.delivered if isinstance(m, InstallSnapshot)]
    assert offsets.count(0) >= 2  # fetched again, from its first byte
    assert any(isinstance(m, InstallSnapshotResponse) and m.gap and m.offset == 0
               for m in c.delivered)  # fmt: skip
    assert c["c"].snapshot is not None
    assert c["c"].snapshot.data == c["a"].snapshot.data
    assert c.machines["c"] == c.machines["a"]


def test_chunks_of_two_transfers_are_never_joined() -> None:
    """InstallSnapshot chunks of another leader, term or transfer never continue what a
    follower holds, even for the same index, term and size: a chunk that does not start
    a transfer at offset 0 is answered with a gap at 0, and only a whole transfer of one
    sender is installed."""
    cfg = Config(voters=ABC)
    snap_a, snap_b = b"A" * 20, b"B" * 20

    def chunk(src: str, term: int, data: bytes, offset: int, transfer: int) -> InstallSnapshot:
        whole = snap_a if data[:1] == b"A" else snap_b
        return InstallSnapshot(
            src, "c", term, 100, 4, cfg, offset, 20, data, snapshot_checksum(whole), transfer
        )

    f = make_node("c")
    f.step(chunk("a", 5, snap_a[:10], 0, 1), 0.0)
    take(f)
    for other in (
        chunk("b", 6, snap_b[10:], 10, 1),  # another leader (a newer term)
        chunk("a", 6, snap_a[10:], 10, 1),  # the same sender in another term
    ):
        f.step(other, 0.1)
        (reply,) = take(f)
        assert isinstance(reply, InstallSnapshotResponse)
        assert (reply.offset, reply.gap, reply.done) == (0, True, False)
        assert f.snapshot is None
    f.step(chunk("a", 6, snap_a[:10], 0, 2), 0.2)  # a transfer of term 6 ...
    f.step(chunk("a", 6, snap_a[10:], 10, 3), 0.2)  # ... is not continued by another
    assert f.snapshot is None
    f.step(chunk("a", 6, snap_a[10:], 10, 2), 0.2)
    take(f)
    assert f.snapshot is not None and f.snapshot.data == snap_a
    assert f.snapshot.checksum == snapshot_checksum(snap_a)


def test_a_chunk_past_the_declared_size_is_refused() -> None:
    """§5.3: a chunk whose bytes run past the size it declares is malformed: it changes
    nothing (not even the term), is noted, and is refused by the wire decoder too."""
    f = make_node("c")
    data = b"\x93\x01\xc0\x80EXTRA"
    big = InstallSnapshot(
        "a", "c", 5, 100, 4, Config(voters=ABC), 0, 4, data, snapshot_checksum(data)
    )
    f.step(big, 0.0)
    (rd,) = pump(f)
    assert f.snapshot is None and f.term == 0 and not rd.messages
    assert any("of a snapshot of 4 bytes" in n for n in rd.notices)
    frame = wire.encode(big)
    with pytest.raises(trioraft.MalformedMessage, match="past the size"):
        wire.decode(frame[wire.HEADER :])


def test_answers_about_an_abandoned_transfer_do_not_move_the_current_one() -> None:
    """A leader that started a snapshot transfer over counts only the answers about the
    transfer under way: a late acknowledgement of the one it gave up on (same index)
    does not make it skip bytes the follower does not hold."""
    c = _behind_a_snapshot()
    a = c["a"]
    for _ in range(3):
        c.deliver(hold=lambda m: isinstance(m, InstallSnapshot), heartbeat=True)
    first = [m for m in c.inflight if isinstance(m, InstallSnapshot)]
    assert first and first[0].offset == 0
    c.inflight = []  # lost
    old = first[0].transfer
    pr = a.progress["c"]
    c.now += 2 * MAX_ET  # no progress for an election timeout: it starts over
    a.tick(c.now)
    a.tick(max(c.now, a.deadline))
    c.inflight.extend(take(a))
    assert pr.snapshot_transfer != old
    late = InstallSnapshotResponse("c", "a", a.term, pr.snapshot_index, 48, transfer=old)
    a.step(late, c.now)
    assert pr.snapshot_acked == 0
    c.run(1.0)
    assert c["c"].snapshot_index == a.snapshot_index
    assert c.machines["c"] == c.machines["a"]


# ----------------------------------------------------------------- follower reads
def test_a_late_answer_to_an_earlier_life_never_resolves_a_read() -> None:
    """§6.4: a follower numbers its read tickets from 1 in every life; an answer to a
    request of its previous life (same ticket, same leader and term, delayed) is not
    taken for the new life's, even when it restarts with the same random seed. The new
    read gets an index from an answer to its own request."""
    c = PureCluster(ABC, follower_reads=True)
    a = c.elect("a")
    c.deliver(heartbeat=True)
    c["b"].request_read(c.now)
    c.deliver(hold=lambda m: isinstance(m, ReadIndexResponse))
    (late,) = [m for m in c.inflight if isinstance(m, ReadIndexResponse)]
    c.inflight.remove(late)
    lives = c.storages["b"].hard_state.incarnation
    assert lives >= 1
    b = c.restart("b", seed=1)  # the seed its first life had
    entry = a.propose(("x", 1), c.now)
    c.deliver(heartbeat=True)
    assert a.commit_index >= entry.index > late.index
    ticket = b.request_read(c.now)
    (request,) = [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    assert request.ticket == late.ticket  # numbered alike: only the life tells them apart
    assert c.storages["b"].hard_state.incarnation == lives + 1  # durable before it left
    b.step(late, c.now)
    take(b)
    assert c.reads["b"] == []
    a.step(request, c.now)
    c.deliver(heartbeat=True)
    assert c.reads["b"] == [(ticket, a.commit_index)]
    assert a.commit_index >= entry.index


def test_a_read_index_is_taken_only_from_the_leader_asked_in_its_term() -> None:
    """§6.4: an answer naming the right ticket and life but sent by another server (not
    the leader the follower asked) is not taken; the leader's own answer is."""
    c = PureCluster(ABC, follower_reads=True)
    a = c.elect("a")
    c.deliver(heartbeat=True)
    b = c["b"]
    ticket = b.request_read(c.now)
    (request,) = [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    forged = ReadIndexResponse("c", "b", b.term, request.ticket, 0, True, request.incarnation)
    b.step(forged, c.now)
    take(b)
    assert c.reads["b"] == [] and c.failed_reads["b"] == []
    a.step(request, c.now)
    c.deliver(heartbeat=True)
    assert c.reads["b"] == [(ticket, a.commit_index)]


# ----------------------------------------------------------------------- sessions
class _NoScan(dict):  # type: ignore[type-arg]
    """A session table that fails the test if an entry reads all of it."""

    def _scan(self, *args: object) -> NoReturn:
        raise AssertionError("the whole session table was read for one entry")

    items = keys = values = __iter__ = _scan  # type: ignore[assignment]


def test_expiry_reads_no_more_than_the_sessions_it_expires() -> None:
    """§6.3, O(log n) per entry: applying a session's entries, opening sessions and
    expiring them never reads the whole table; what expires is exactly what has been
    idle for longer than the timeout."""
    sessions = Sessions(100.0)
    for client in range(1, 1001):
        sessions.open(client, float(client) / 100)  # stamps 0.01 .. 10.0
    sessions._table = _NoScan(sessions._table)
    for seq in range(1, 50):
        reply = sessions.apply(7, seq, seq, 50.0 + seq, lambda seq=seq: (seq, None), ("x", seq))
        assert reply == (seq, None)
    expired = sessions.expire(105.0)  # idle since before 5.0: 1 to 499, but 7
    assert expired == [c for c in range(1, 500) if c != 7]
    assert 7 in sessions and 500 in sessions and 1000 in sessions
    assert sessions.expire(105.0) == []


@pytest.mark.parametrize("seed", range(20))
def test_expiry_is_exactly_idle_time_past_the_latest_entry(seed: int) -> None:
    """§6.3: a session expires at the first entry stamped more than the timeout after
    the *latest* stamp of its own entries (a maximum: a lower stamp never takes it
    back), as a scan of the table computes it. Random stamps, some out of order."""
    print("seed", seed)
    rng = random.Random(seed)
    sessions = Sessions(10.0)
    model: dict[int, float] = {}
    now = 0.0
    for index in range(1, 400):
        now = max(0.0, now + rng.uniform(-2.0, 3.0))  # stamps may go back a little
        idle = [c for c, last in model.items() if last < now - 10.0]
        for c in idle:
            del model[c]
        if rng.random() < 0.3 or not model:
            assert sessions.open(index, now) == index
            model[index] = now
        else:
            client = rng.choice(sorted(model))
            sessions.apply(client, index, 0, now, lambda: (None, None), index)
            model[client] = max(model[client], now)
        assert sorted(sessions._table) == sorted(model), (seed, index)
        assert {c: s.last_active for c, s in sessions._table.items()} == model


def test_a_write_number_reused_with_another_command_is_refused() -> None:
    """§6.3: a number names one command: a retry with the same command gets the kept
    reply (the command is not applied again), one with another command gets
    WriteNumberReused and is not applied, also on a server restored from a snapshot."""
    applied: list[object] = []

    def run(command: object) -> Callable[[], tuple[object, None]]:
        def apply() -> tuple[object, None]:
            applied.append(command)
            return len(applied), None

        return apply

    sessions = Sessions(100.0)
    sessions.open(1, 0.0)
    assert sessions.apply(1, 5, 1, 1.0, run(("add", 1)), ("add", 1)) == (1, None)
    assert sessions.apply(1, 5, 1, 2.0, run(("add", 1)), ("add", 1)) == (1, None)
    restored = Sessions(100.0)
    restored.restore(decode_value(encode_value(sessions.snapshot())))
    for table in (sessions, restored):
        value, error = table.apply(1, 5, 1, 3.0, run(("add", 9)), ("add", 9))
        assert value is None and isinstance(error, trioraft.WriteNumberReused)
        assert "not applied" in str(error)
        assert table.apply(1, 5, 1, 3.0, run(("add", 1)), ("add", 1)) == (1, None)
    nan = ("set", float("nan"))
    assert sessions.apply(1, 6, 1, 4.0, run(nan), nan) == (2, None)
    again = ("set", float("nan"))  # the same command, though nan != nan
    assert sessions.apply(1, 6, 1, 4.0, run(again), again) == (2, None)
    assert applied == [("add", 1), nan]


async def test_a_new_leader_stamps_after_the_newest_stamp_of_its_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§6.3: stamps never go backwards along the log: a new leader whose log holds an
    entry stamped 1000 (not applied yet: not known committed) stamps what it appends
    from there, though its own cluster clock (from what it applied) reads about 0."""
    names = ["a", "b", "c"]
    entries = (Entry(1, 1, EntryKind.NOOP, "c0ffee"), Entry(1, 2, EntryKind.SESSION, [1000.0]))
    hard = HardState(1, None, 1, "c0ffee", Config(voters=names))
    network = trioraft.MemoryNetwork(seed=3)
    network.set_delay(0.05, 0.05)  # the no-op commits two hops after the election
    async with trio.open_nursery() as nursery:
        servers = {}
        for i, name in enumerate(names):
            storage = trioraft.MemoryStorage()
            persist_state(storage, PersistedState(hard, entries=entries))
            servers[name] = await trioraft.start_server(
                nursery, Counter, name=name, network=network, initial_config=names,
                storage=storage, seed=i,
            )  # fmt: skip
        with trio.fail_after(10):
            leader = servers[await servers["a"].await_leader()]
            while leader.status().role is not Role.LEADER:
                leader = servers[await leader.await_leader()]
            assert leader.status().last_applied < 2  # the entry stamped 1000 waits
            client = await leader.open_session()
        log = leader._node.log
        stamps = [e.data[0] for e in log.slice(1, log.last_index) if e.kind is EntryKind.SESSION]
        assert stamps[0] == 1000.0 and stamps == sorted(stamps), stamps
        assert await leader.write_in_session(client, 1, 1, 5) == 5
        nursery.cancel_scope.cancel()


async def test_the_cluster_time_survives_a_restore_and_a_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§6.3: a snapshot records the cluster time; a server restored from it and
    snapshotting again (before any stamped entry) records it again, so a restart from
    the second snapshot stamps on from there, never from 0."""
    storage = trioraft.MemoryStorage()

    async def life(then: Callable[[trioraft.Server], Awaitable[None]]) -> float:
        async with trioraft.open_server(
            Counter, name="a", network=trioraft.MemoryNetwork(), initial_config=["a"],
            storage=storage,
        ) as server:  # fmt: skip
            await server.await_leader()
            await then(server)
            await server.take_snapshot()
            snapshot = server._node.snapshot
            assert snapshot is not None
            return float(decode_snapshot(snapshot.data)[1]["clock"])

    async def sessions_at_500(server: trioraft.Server) -> None:
        await trio.sleep(500)
        client = await server.open_session()
        await server.write_in_session(client, 1, 1, 5)

    async def plain_write(server: trioraft.Server) -> None:
        await server.write(1)

    first = await life(sessions_at_500)
    assert first >= 500
    assert await life(plain_write) >= first
    assert await life(plain_write) >= first

    async def stamps_on(server: trioraft.Server) -> None:
        await server.open_session()
        log = server._node.log
        (last,) = [e for e in log.slice(log.last_index, log.last_index)]
        assert last.kind is EntryKind.SESSION and last.data[0] >= first

    await life(stamps_on)


# ------------------------------------------------------- replies that cannot travel
class _Bag(trioraft.StateMachine):
    """Its write's reply is a set (not a msgpack value) when the command asks for one."""

    def __init__(self) -> None:
        self.items: list[int] = []

    def write(self, command: int) -> object:
        self.items.append(command)
        return {command} if command < 0 else len(self.items)

    def read(self, query: object) -> object:
        return {0} if query == "set" else list(self.items)


async def test_an_applied_write_whose_reply_cannot_travel_says_it_was_applied() -> None:
    """Over TCP, a write the machine applied but whose reply is not a msgpack value
    raises ReplyNotEncodable at the client (a RaftError saying the command was applied,
    not a TypeError that reads like a refusal); it was applied once, and the client
    goes on. A read's unencodable answer stays a TypeError (nothing was applied)."""
    (port,) = free_tcp_ports(1)
    address = f"127.0.0.1:{port}"
    with trio.fail_after(20):
        async with (
            trioraft.open_tcp_network(listen=address, peers={}) as network,
            trio.open_nursery() as nursery,
        ):
            server = await trioraft.start_server(
                nursery, _Bag, name="q", network=network, initial_config=["q"]
            )
            await server.await_leader()
            async with trioraft.open_client([address]) as client:
                assert await client.write(1) == 1
                with pytest.raises(trioraft.ReplyNotEncodable, match="was applied") as info:
                    await client.write(-5)
                assert isinstance(info.value, trioraft.RaftError)
                assert not isinstance(info.value, TypeError)
                assert await client.write(2) == 3
                assert await client.read(None) == [1, -5, 2]  # applied once
                with pytest.raises(TypeError):
                    await client.read("set")
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------------ storage
class _OutOfDescriptorsOnce(trioraft.MemoryStorage):
    """A storage whose first sync holding a snapshot fails as a disk would while the
    process has no file descriptor left (EMFILE), staged writes left staged."""

    def __init__(self) -> None:
        super().__init__(sync_latency=(0.0, 0.0))  # synced by the ready loop
        self.failures = 0
        self._snapshot_staged = False

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot_staged = True
        super().set_snapshot(snapshot)

    async def sync(self) -> None:
        if self._snapshot_staged and not self.failures:
            self.failures += 1
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMFILE, "Too many open files")
        self._snapshot_staged = False
        await super().sync()


async def test_a_snapshot_failing_for_want_of_file_descriptors_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A snapshot whose write fails with an OS error that passes (EMFILE: descriptors
    exhausted) is written again later; the server does not stop, loses nothing, and
    goes on taking writes and snapshots."""
    storage = _OutOfDescriptorsOnce()
    async with trioraft.open_server(
        Counter, name="a", network=trioraft.MemoryNetwork(), initial_config=["a"],
        storage=storage, snapshot_threshold=5, snapshot_trailing=0,
    ) as server:  # fmt: skip
        await server.await_leader()
        with trio.fail_after(10):
            for i in range(1, 13):
                assert await server.write(1) == i
            while server.status().snapshot_index == 0:
                await trio.sleep(0.01)
            last = server.status().last_applied
            assert await server.take_snapshot() == last
        assert storage.failures == 1 and server.failure is None
        assert storage.snapshot is not None and storage.snapshot.index == last
        assert storage.commit_index >= last
    async with trioraft.open_server(
        Counter, name="a", network=trioraft.MemoryNetwork(), initial_config=["a"],
        storage=storage,
    ) as again:  # fmt: skip
        await again.await_leader()
        assert await again.read_dirty(None) == 12
