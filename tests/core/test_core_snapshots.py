"""The pure core's durability boundary and snapshots, one test per rule.

The Ready/Advance contract (etcd-io/raft's rule): what a message acknowledges is in the
same Ready as the write that makes it durable, and the leader counts itself in a quorum
only for entries it has made durable. Snapshots and compaction (dissertation §5): a
server snapshots once ``snapshot_threshold`` entries were applied and keeps
``snapshot_trailing`` entries behind the snapshot; a follower that needs compacted
entries receives the leader's snapshot in chunks (§5.3, Figure 13), resumed from its
offset when a chunk is lost, started over when it makes no progress for an election
timeout; a follower keeps what follows the snapshot in its log if it holds the
snapshot's last entry, else discards its log; a stale snapshot changes nothing; the
commit index never moves back.
"""

from __future__ import annotations

from trioraft._codec import encode_value
from trioraft._core import (
    AppendEntries,
    Config,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    Role,
    VoteResponse,
)
from trioraft._core.node import RaftNode
from trioraft._core.ready import snapshot_checksum
from trioraft.testing._pure import (
    PureCluster,
    isolate,
    log_terms,
    make_node,
    persisted,
    pump,
)

ABC = ("a", "b", "c")
MAX_ET = 0.30
SMALL = {"snapshot_threshold": 10, "snapshot_trailing": 3, "snapshot_chunk_size": 16}


def propose(c: PureCluster, leader: RaftNode, count: int, drop=None) -> None:  # type: ignore[no-untyped-def]
    for i in range(count):
        leader.propose(("x", i), c.now)
        c.deliver(drop)
    c.deliver(drop, heartbeat=True)


def settle(c: PureCluster, drop=None) -> None:  # type: ignore[no-untyped-def]
    """A few heartbeat rounds: enough for a leader to notice lost messages (a round
    without progress) and for followers to learn the commit index."""
    for _ in range(3):
        c.deliver(drop, heartbeat=True)


def xs(n: int) -> list[tuple[str, int]]:
    return [("x", i) for i in range(n)]


# ------------------------------------------------------------------ Ready/Advance


def test_vote_is_persisted_in_the_ready_that_sends_it() -> None:
    """Figure 2: votedFor is on stable storage before the vote is granted: the
    VoteResponse travels in the Ready whose hard state records the vote."""
    b = make_node("b")
    b.step(RequestVote("a", "b", 1, 0, 0), 0.0)
    (rd,) = pump(b)
    assert [m.granted for m in rd.messages if isinstance(m, VoteResponse)] == [True]
    assert rd.hard_state is not None and rd.hard_state.voted_for == "a"
    assert rd.hard_state.term == 1


def test_acknowledged_entries_are_in_the_same_ready() -> None:
    """Figure 2 / API: a follower acknowledges entries only once durable: the
    AppendResponse travels in the Ready that persists them."""
    b = make_node("b")
    b.step(AppendEntries("a", "b", 1, 0, 0, persisted([1, 1]).entries, 0), 0.0)
    (rd,) = pump(b)
    assert [e.index for e in rd.entries] == [1, 2]
    assert [m.match_index for m in rd.messages] == [2]


def test_leader_counts_itself_only_once_durable() -> None:
    """§10.2.1 of the dissertation, API: a leader may send entries before it has made
    them durable, but counts itself in a quorum only once it has: a single-voter leader
    commits an entry only after the Ready that persists it is advanced."""
    a = make_node("a", ["a"])
    a.tick(a.deadline)
    pump(a)
    entry = a.propose("x", 1.0)
    rd = a.ready()
    assert entry in rd.entries and a.commit_index < entry.index
    a.advance(rd)
    assert a.commit_index == entry.index


def test_leader_ready_may_be_carried_out_early_when_term_and_vote_are_durable() -> None:
    """§10.2.1: a leader's Ready that changes neither its term nor its vote may send
    and apply before its write is durable (``early``); a candidate's Ready, which
    records its vote, may not; nor may a follower's, which acknowledges entries."""
    c = PureCluster(ABC)
    a = c["a"]
    a.trigger_election(c.now)
    rd = a.ready()
    assert rd.hard_state is not None and rd.hard_state.voted_for == "a" and not rd.early
    a.advance(rd)
    c.inflight.extend(rd.messages)
    c.deliver()
    assert a.role is Role.LEADER
    a.propose("x", c.now)
    rd = a.ready()
    assert rd.entries and rd.early and any(isinstance(m, AppendEntries) for m in rd.messages)
    a.advance(rd)
    follower = c["c"]
    follower.step(AppendEntries("a", "c", a.term, 0, 0, persisted([1, 1]).entries, 0), c.now)
    assert not follower.ready().early


def test_a_newer_commit_index_alone_needs_no_sync() -> None:
    """Figure 2: commitIndex is volatile state. A Ready whose only persistent change is
    a newer commit index is staged without a sync (``sync`` false); one with entries, a
    new term or a new vote must be synced."""
    c = PureCluster(ABC)
    a = c.elect("a")
    c.deliver(heartbeat=True)
    entry = a.propose("x", c.now)
    assert a.needs_sync()
    rd = a.ready()
    assert rd.entries and rd.sync
    a.advance(rd)
    for m in rd.messages:
        c.step_one(m)  # followers persist and acknowledge
    answers, c.inflight = c.inflight, []
    for m in answers:
        a.step(m, c.now)
    assert not a.needs_sync()  # the runtime may carry it out at once, even on disk
    rd = a.ready()
    assert a.commit_index >= entry.index
    assert rd.hard_state is not None and rd.hard_state.commit == a.commit_index
    assert not rd.entries and not rd.sync
    assert [e.index for e in rd.committed][-1] == entry.index


# -------------------------------------------------------------------- compaction


def test_snapshot_compacts_the_log_keeping_trailing_entries() -> None:
    """§5: once snapshot_threshold entries were applied since the last snapshot, the
    server snapshots and compacts, keeping snapshot_trailing entries behind it; the log
    never grows beyond threshold + trailing (plus what is not yet applied)."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    for i in range(50):
        a.propose(i, c.now)
        c.deliver()
        for name in ABC:
            node = c[name]
            assert node.log.last_index - node.log.snapshot_index <= 10 + 3 + 1
    c.deliver(heartbeat=True)
    for name in ABC:
        node, storage = c[name], c.storages[name]
        assert node.snapshot_index >= 40
        assert node.log.first_index == node.snapshot_index - 3 + 1
        assert storage.snapshot is not None and storage.snapshot.index == node.snapshot_index
        assert storage.log.first_index == node.log.first_index
        assert c.machines[name] == list(range(50))


def test_compaction_off_never_snapshots() -> None:
    """A server whose state machine cannot snapshot never compacts."""
    c = PureCluster(ABC, compaction=False, **SMALL)
    a = c.elect("a")
    propose(c, a, 30)
    assert all(c[n].snapshot_index == 0 and c[n].log.first_index == 1 for n in ABC)


def test_restart_restores_the_snapshot_then_applies_the_log() -> None:
    """§5: a restarted server restores its latest snapshot, then applies its log after it."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    propose(c, a, 25)
    snap = c["b"].snapshot_index
    assert snap > 0
    b = c.restart("b")
    assert b.snapshot_index == snap and b.applied == snap
    c.take("b")
    assert c.machines["b"] == xs(25)
    assert b.commit_index >= snap


# ------------------------------------------------------------------ InstallSnapshot


def test_follower_behind_the_compacted_log_gets_the_snapshot_in_chunks() -> None:
    """§5.3: a follower that needs entries the leader compacted away receives the
    leader's snapshot in bounded chunks, installs it, restores its state machine from it,
    then continues from the log."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    propose(c, a, 40, drop=isolate("c"))
    assert a.log.first_index > 2  # what c needs is gone
    settle(c)
    chunks = [m for m in c.delivered if isinstance(m, InstallSnapshot) and m.dst == "c"]
    assert len(chunks) >= 2 and all(len(m.data) <= 16 for m in chunks)
    assert c["c"].snapshot_index == chunks[-1].index
    assert c.machines["c"] == xs(40)
    propose(c, a, 5)
    assert c.machines["c"] == c.machines["a"] == xs(40) + xs(5)


def test_a_lost_chunk_is_resent_from_its_offset() -> None:
    """§5.3 (as LogCabin does it): a lost chunk is resent from the follower's offset;
    the transfer does not start over."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    propose(c, a, 40, drop=isolate("c"))
    lost: list[InstallSnapshot] = []

    def drop_second_chunk(m):  # type: ignore[no-untyped-def]
        if isinstance(m, InstallSnapshot) and m.offset == 16 and not lost:
            lost.append(m)
            return True
        return False

    settle(c, drop_second_chunk)
    assert lost
    offsets = [m.offset for m in c.delivered if isinstance(m, InstallSnapshot) and m.dst == "c"]
    assert offsets.count(0) == 1  # never started over
    assert 16 in offsets  # the lost chunk came again
    assert any(
        isinstance(m, InstallSnapshotResponse) and m.gap and m.offset == 16 for m in c.delivered
    )
    assert c.machines["c"] == xs(40)


def test_a_transfer_making_no_progress_starts_over_after_an_election_timeout() -> None:
    """§5.3, hashicorp/raft#212: a snapshot transfer times out on lack of progress, never
    on total time: when the follower's answers stop for an election timeout, the leader
    starts over from the first byte."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    propose(c, a, 40, drop=isolate("c"))
    settle(c, lambda m: isinstance(m, InstallSnapshotResponse))
    first = [m.offset for m in c.delivered if isinstance(m, InstallSnapshot)]
    assert first.count(0) == 1
    # Time passes with every answer of c lost: chunks are resent, then it starts over.
    end = c.now + 3 * MAX_ET
    while c.now < end:
        c.now = min(a.deadline, end)
        a.tick(c.now)
        c.deliver(lambda m: isinstance(m, InstallSnapshotResponse))
    offsets = [m.offset for m in c.delivered if isinstance(m, InstallSnapshot)]
    assert offsets.count(0) >= 2
    c.run(MAX_ET)  # and once answers get through, it completes
    assert c.machines["c"] == xs(40)


def test_other_followers_are_unaffected_by_a_snapshot_transfer() -> None:
    """etcd's snapshot state: while one follower receives a snapshot (here, held back),
    replication to the others goes on and entries commit."""
    c = PureCluster(ABC, compaction=True, **SMALL)
    a = c.elect("a")
    propose(c, a, 40, drop=isolate("c"))
    settle(c, lambda m: m.dst == "c" or m.src == "c")
    before = a.commit_index
    entry = a.propose("more", c.now)
    c.deliver(hold=lambda m: m.dst == "c" or m.src == "c")
    c.deliver(hold=lambda m: m.dst == "c" or m.src == "c", heartbeat=True)
    assert a.commit_index == entry.index > before
    assert c.machines["b"][-1] == "more"


def _install(b: RaftNode, index: int, term: int, data: bytes, commit: int = 0) -> None:
    chunk = InstallSnapshot(
        "a", "b", 5, index, term, Config(ABC), 0, len(data), data, snapshot_checksum(data)
    )
    b.step(chunk, 0.0)


def test_follower_log_conflicting_with_the_snapshot_is_discarded() -> None:
    """§5.3 (Figure 13, 7): a follower whose log does not hold the snapshot's last entry
    discards its whole log (from storage too) and restores the snapshot."""
    b = make_node("b", storage=persisted([1, 1, 2, 2, 2], term=2))
    data = encode_value(["state"])
    _install(b, 3, 3, data)
    (rd,) = pump(b)
    assert rd.snapshot is not None and rd.restore and rd.truncate_from == 4
    assert b.log.last_index == 3 and b.log.first_index == 4  # nothing after the snapshot
    assert b.commit_index == 3 and b.snapshot_index == 3
    (reply,) = rd.messages
    assert isinstance(reply, InstallSnapshotResponse) and reply.done


def test_follower_holding_the_snapshot_entry_keeps_what_follows() -> None:
    """§5.3 (Figure 13, 6): if the log holds the snapshot's last entry (same index and
    term), the entries that follow it are kept."""
    b = make_node("b", storage=persisted([1, 1, 1, 1, 1], term=1))
    _install(b, 3, 1, encode_value(["state"]))
    (rd,) = pump(b)
    assert rd.restore and rd.truncate_from is None and rd.compact == (3, 1)
    assert log_terms(b) == [1, 1] and b.log.first_index == 4 and b.log.last_index == 5
    assert b.commit_index == 3


def test_a_stale_snapshot_changes_nothing_and_commit_never_moves_back() -> None:
    """§5.3: a snapshot covering no more than what the follower has committed is ignored
    (answered as installed); the commit index never moves back."""
    b = make_node("b", storage=persisted([1] * 6, term=1, commit=5))
    before = (list(b.log.slice(1, 6)), b.commit_index)
    _install(b, 3, 1, encode_value(["old"]))
    (rd,) = pump(b)
    assert rd.snapshot is None and not rd.restore
    assert (list(b.log.slice(1, 6)), b.commit_index) == before
    (reply,) = rd.messages
    assert isinstance(reply, InstallSnapshotResponse) and reply.done
    assert b.role is Role.FOLLOWER and b.leader == "a"


def test_chunks_out_of_order_are_refused_with_the_offset_held() -> None:
    """§5.3: a chunk that does not follow what the follower holds is not stored; the
    answer names the offset to resend from."""
    b = make_node("b")
    data = encode_value(list(range(100)))
    b.step(InstallSnapshot("a", "b", 1, 9, 1, Config(ABC), 0, len(data), data[:10]), 0.0)
    b.step(InstallSnapshot("a", "b", 1, 9, 1, Config(ABC), 20, len(data), data[20:30]), 0.0)
    replies = [m for rd in pump(b) for m in rd.messages]
    assert [(r.offset, r.gap) for r in replies] == [(10, False), (10, True)]
    assert b.snapshot_index == 0
