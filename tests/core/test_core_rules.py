"""The pure Raft core, one test (or a few) per rule of the algorithm.

In the spirit of etcd-io/raft's ``raft_paper_test.go``: every test names the rule it checks
(Figure 2 of the Raft paper, or a section of the paper (§5) or of Ongaro's dissertation
(§3.10, §4, §6, §9)) and fails if that rule is broken. No trio here: nodes are built
directly, time is an explicit float, and each node's Ready/Advance cycle is carried out
by the shared pure-core harness (``trioraft.testing._pure``), which persists what a
Ready asks for and carries the messages by hand to another node's ``step``.
"""

from __future__ import annotations

import contextlib

import pytest

import trioraft
from trioraft import ConfigChangeInProgress, MalformedMessage, NotVoter
from trioraft._core import (
    AppendEntries,
    AppendResponse,
    CatchUpState,
    Config,
    CoreOptions,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    LeaderNotReady,
    Message,
    RaftNode,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    Role,
    TimeoutNow,
    TransferInProgress,
    VoteResponse,
)
from trioraft._core.confchange import MAX_CATCH_UP_ROUNDS
from trioraft._core.options import lease_length
from trioraft._core.types import MAX_READ_REQUESTS
from trioraft.testing._pure import (
    Drop,
    PureCluster,
    command,
    heartbeat_to,
    isolate,
    log_entries,
    log_terms,
    make_node,
    persisted,
    pump,
    silence,
    storage_of,
    stored_log,
    take,
)

# --------------------------------------------------------------------------- helpers

ABC = ("a", "b", "c")
ABCDE = ("a", "b", "c", "d", "e")
MIN_ET = 0.15  # CoreOptions' default election timeouts
MAX_ET = 0.30
LEASE = lease_length(CoreOptions())  # the default lease, on the leader's clock

entry = command
make_storage = persisted


def campaign(c: PureCluster, name: str, rounds: int, drop: Drop | None = None) -> None:
    """Let ``name`` time out and campaign (without forcing) up to ``rounds`` times."""
    for _ in range(rounds):
        c.now = max(c.now, c[name].deadline)
        c[name].tick(c.now)
        c.deliver(drop)
        if c[name].role is Role.LEADER:
            return


def noop_in(m: Message) -> bool:
    return isinstance(m, AppendEntries) and any(e.kind is EntryKind.NOOP for e in m.entries)


# ------------------------------------------------------------------------- elections


def test_follower_times_out_into_prevote_then_election() -> None:
    """§5.2 + §9.6: a follower that hears nothing for its election timeout first runs a
    PreVote round for term+1, and only when a quorum would vote starts the real election
    (increments its term, votes for itself, sends RequestVote to every other voter)."""
    c = PureCluster(ABC)
    a = c["a"]
    deadline = a.deadline
    assert MIN_ET <= deadline <= MAX_ET

    a.tick(deadline - 1e-6)  # not yet
    assert a.role is Role.FOLLOWER and not take(a) and a.term == 0

    c.now = deadline
    a.tick(c.now)
    assert a.role is Role.PRE_CANDIDATE
    assert a.term == 0 and a.voted_for is None
    pre = take(a)
    assert sorted(m.dst for m in pre) == ["b", "c"]
    assert all(isinstance(m, RequestVote) and m.pre_vote and m.term == 1 for m in pre)

    for m in pre:  # both voters grant the pre-vote
        c.step_one(m)
    grants = [m for m in c.inflight if isinstance(m, VoteResponse)]
    assert [(g.granted, g.pre_vote) for g in grants] == [(True, True), (True, True)]
    c.inflight.clear()
    c.step_one(grants[0])  # one grant is a quorum with its own vote

    assert a.role is Role.CANDIDATE
    assert a.term == 1 and a.voted_for == "a"
    real = [m for m in c.inflight if isinstance(m, RequestVote)]
    assert sorted(m.dst for m in real) == ["b", "c"]
    assert all(not m.pre_vote and m.term == 1 for m in real)
    c.deliver()
    assert a.role is Role.LEADER and a.term == 1


def test_election_timeouts_are_randomized_within_bounds() -> None:
    """§5.2: election timeouts are drawn at random from [min, max] (so that split votes
    are rare), from the node's own seeded generator."""
    deadlines = {make_node("a", seed=s, now=10.0).deadline for s in range(20)}
    assert len(deadlines) > 15
    assert all(10.0 + MIN_ET <= d <= 10.0 + MAX_ET for d in deadlines)
    assert make_node("a", seed=3).deadline == make_node("a", seed=3).deadline


def test_leader_contact_resets_election_timer() -> None:
    """§5.2: a follower remains a follower while it receives valid RPCs from a leader:
    every heartbeat pushes its election deadline back."""
    c = PureCluster(ABC)
    c.elect("a")
    b = c["b"]
    for _ in range(20):  # 20 heartbeat intervals = several election timeouts
        c.now += 0.05
        b.tick(c.now)
        c.deliver(heartbeat=True)
        assert b.deadline > c.now + MIN_ET - 1e-9
    assert b.role is Role.FOLLOWER and b.leader == "a" and b.term == 1

    c.now = b.deadline  # silence for a whole timeout: it campaigns
    b.tick(c.now)
    assert b.role is Role.PRE_CANDIDATE


def test_prevote_changes_no_term() -> None:
    """§9.6: PreVote changes no server's term. A partitioned server that keeps timing out
    stays at its term; the voters that answer its pre-votes keep theirs and their vote."""
    c = PureCluster(ABC)
    c.elect("a")
    c.now += 1.0
    hard_c = (c["c"].term, c["c"].voted_for)
    for _ in range(10):  # c is cut off: many timeouts, many failed pre-votes
        c.now = max(c.now, c["c"].deadline)
        c["c"].tick(c.now)
        c.deliver(isolate("c"))
        assert c["c"].role is Role.PRE_CANDIDATE
    assert (c["c"].term, c["c"].voted_for) == hard_c == (1, "a")

    # Pre-votes reaching the others (which have not heard from a for a while): granted,
    # but nobody's term or vote moves, and the leader stays leader.
    c.inflight.clear()
    c.now = c["c"].deadline
    c["c"].tick(c.now)
    hard = {n: (c[n].term, c[n].voted_for) for n in "ab"}
    for m in take(c["c"]):
        c[m.dst].step(m, c.now)
        assert [r.granted for r in take(c[m.dst])] == [m.dst == "b"]  # the leader refuses
    assert {n: (c[n].term, c[n].voted_for) for n in "ab"} == hard
    assert c["a"].role is Role.LEADER


def test_prevote_refused_while_voters_hear_from_leader() -> None:
    """§9.6 with §4.2.3: a voter that heard from a leader within the minimum election
    timeout refuses pre-votes, so a rejoining server cannot disrupt a healthy cluster."""
    c = PureCluster(ABC)
    c.elect("a")
    c.now += 1.0
    c.deliver(isolate("c"), heartbeat=True)  # b hears from a; c does not
    c.now += 0.01
    c["c"].tick(c.now)
    pre = take(c["c"])
    assert sorted(m.dst for m in pre) == ["a", "b"]
    assert all(isinstance(m, RequestVote) and m.pre_vote and m.term == 2 for m in pre)
    for m in pre:
        c[m.dst].step(m, c.now)
        replies = take(c[m.dst])
        assert [(r.granted, r.pre_vote, r.term) for r in replies] == [(False, True, 1)]
    assert c["a"].role is Role.LEADER and c["a"].term == 1
    assert c["b"].term == 1 and c["b"].leader == "a" and c["c"].term == 1


def test_candidate_with_quorum_becomes_leader_and_appends_noop() -> None:
    """§5.2: a candidate that receives votes from a quorum becomes leader. §5.4.2/§6.4:
    it appends a no-op entry of its own term at once, and commits it by quorum."""
    c = PureCluster(ABC, logs={n: [1, 1] for n in ABC}, terms=dict.fromkeys(ABC, 1))
    a = c["a"]
    a.trigger_election(c.now)
    c.deliver(isolate("c"))  # b's vote is enough
    assert a.role is Role.LEADER and a.term == 2 and a.leader == "a"
    last = a.log.entry(a.log.last_index)
    assert (last.index, last.term, last.kind) == (3, 2, EntryKind.NOOP)
    assert a.commit_index == 3  # a and b hold the no-op
    assert c["b"].leader == "a" and log_terms(c["b"]) == [1, 1, 2]
    assert c["c"].term == 1  # never heard of it


def test_candidate_without_quorum_does_not_win() -> None:
    """§5.2: without a quorum of votes a candidate does not become leader; once a
    quorum has refused, the election is lost and it waits as a follower."""
    c = PureCluster(ABCDE)
    a = c["a"]
    a.trigger_election(c.now)
    c.deliver(lambda m: m.src in "cde" or m.dst in "cde")  # only b votes: 2 of 5
    assert a.role is Role.CANDIDATE and a.term == 1 and not a.log.last_index

    # Both other voters refuse (their logs are more up to date): the election is lost.
    c2 = PureCluster(ABC, logs={"b": [1], "c": [1]})
    a2 = c2["a"]
    a2.trigger_election(c2.now)
    assert a2.role is Role.CANDIDATE and a2.term == 1
    c2.deliver()
    assert a2.role is Role.FOLLOWER and a2.term == 1 and a2.voted_for == "a"
    assert c2.leaders() == []


def test_one_vote_per_term_first_come_first_served() -> None:
    """Figure 2 (RequestVote 2): a server votes for at most one candidate per term, first
    come first served, and persists its vote before answering, so a crash does not let
    it vote twice. Repeating the request of the candidate it voted for is granted again."""
    c = PureCluster(ABC)
    b = c["b"]
    b.step(RequestVote("a", "b", 1, 0, 0), 0.0)
    assert [m.granted for m in take(b)] == [True]
    assert b.term == 1 and b.voted_for == "a"
    assert c.storages["b"].term == 1 and c.storages["b"].voted_for == "a"

    b.step(RequestVote("c", "b", 1, 0, 0), 0.0)
    assert [m.granted for m in take(b)] == [False]
    assert b.voted_for == "a"

    b = c.restart("b")  # the vote survives a crash
    b.step(RequestVote("c", "b", 1, 5, 1), 0.0)  # even with a better log
    assert [m.granted for m in take(b)] == [False]
    b.step(RequestVote("a", "b", 1, 0, 0), 0.0)  # a duplicate of the granted request
    assert [m.granted for m in take(b)] == [True]

    b.step(RequestVote("c", "b", 2, 0, 0), 0.0)  # a new term: a new vote
    assert [(m.granted, m.term) for m in take(b)] == [(True, 2)]
    assert b.voted_for == "c"


@pytest.mark.parametrize(
    ("cand_last_index", "cand_last_term", "granted"),
    [
        (5, 3, True),  # same last term, same length
        (9, 3, True),  # same last term, longer
        (4, 3, False),  # same last term, shorter
        (10, 2, False),  # older last term, however long
        (1, 4, True),  # newer last term, however short
        (0, 0, False),  # empty log
    ],
)
def test_vote_requires_up_to_date_log(cand_last_index, cand_last_term, granted) -> None:
    """§5.4.1: a voter denies its vote to a candidate whose log is less up-to-date than
    its own (compare last terms, then lengths). Applies to pre-votes as well (§9.6)."""
    for pre_vote in (False, True):
        voter = make_node("b", storage=make_storage([1, 1, 2, 3, 3], term=4))
        voter.step(
            RequestVote("a", "b", 5, cand_last_index, cand_last_term, pre_vote=pre_vote), 0.0
        )
        (reply,) = take(voter)
        assert isinstance(reply, VoteResponse)
        assert reply.granted is granted and reply.pre_vote is pre_vote
        if pre_vote:
            assert voter.term == 4 and voter.voted_for is None
        else:
            assert voter.term == 5 and voter.voted_for == ("a" if granted else None)


# -------------------------------------------------------------------- term handling


def _higher_term_messages(src: str, dst: str, term: int) -> list[Message]:
    return [
        AppendEntries(src, dst, term, 0, 0, (), 0),
        Heartbeat(src, dst, term, 0),
        AppendResponse(src, dst, term, False),
        HeartbeatResponse(src, dst, term),
        VoteResponse(src, dst, term, False),
        RequestVote(src, dst, term, 0, 0),  # refused, but the term is still adopted
        TimeoutNow(src, dst, term),
    ]


@pytest.mark.parametrize("index", range(7))
def test_higher_term_turns_leader_into_follower(index) -> None:
    """Figure 2 (all servers): if a request or response carries a term above the current
    term, adopt it (with no vote) and become a follower. (Without CheckQuorum, so that the
    leader lease of §4.2.3 does not apply to RequestVote.)"""
    c = PureCluster(ABC, check_quorum=False)
    a = c.elect("a")
    ticket = a.request_read(c.now)
    m = _higher_term_messages("b", "a", 7)[index]
    a.step(m, c.now)
    assert a.role is not Role.LEADER
    assert a.progress == {} and heartbeat_to(a, "b") is None
    assert ticket in c.failed_reads["a"]
    if isinstance(m, TimeoutNow):
        # It follows b in term 7, then campaigns at once in term 8 as it was told.
        assert a.role is Role.CANDIDATE and a.term == 8 and a.voted_for == "a"
        return
    assert a.role is Role.FOLLOWER
    assert a.term == 7 and a.voted_for is None
    assert c.storages["a"].term == 7
    assert a.leader == ("b" if isinstance(m, (AppendEntries, Heartbeat)) else None)


@pytest.mark.parametrize("index", range(7))
def test_higher_term_turns_candidate_into_follower(index) -> None:
    """Figure 2 (all servers): a candidate seeing a higher term becomes a follower of it."""
    a = make_node("a", check_quorum=False)
    a.trigger_election(0.0)
    assert a.role is Role.CANDIDATE and a.term == 1
    m = _higher_term_messages("b", "a", 3)[index]
    a.step(m, 0.0)
    assert a.role in (Role.FOLLOWER, Role.CANDIDATE)
    if isinstance(m, TimeoutNow):
        # TimeoutNow makes it follow term 3, then campaign at once in term 4.
        assert a.role is Role.CANDIDATE and a.term == 4
    else:
        assert a.role is Role.FOLLOWER and a.term == 3
        assert a.voted_for == ("b" if isinstance(m, RequestVote) else None)


def test_candidate_defers_to_leader_of_its_own_term() -> None:
    """§5.2: a candidate that receives AppendEntries from a leader of its own term
    recognizes that leader and returns to follower."""
    for pre in (False, True):
        a = make_node("a", pre_vote=pre)
        a.tick(a.deadline)
        assert a.role is (Role.PRE_CANDIDATE if pre else Role.CANDIDATE)
        term = a.term
        a.step(AppendEntries("b", "a", term, 0, 0, (), 0), 1.0)
        assert a.role is Role.FOLLOWER and a.leader == "b" and a.term == term
        (reply,) = take(a)[-1:]
        assert isinstance(reply, AppendResponse) and reply.success


def test_stale_term_requests_rejected_with_current_term() -> None:
    """Figure 2 (AppendEntries 1, RequestVote 1): reply false if term < currentTerm, with
    the current term, so the stale sender steps down; the receiver changes nothing."""
    b = make_node("b", storage=make_storage([1, 2], term=5))
    b.step(AppendEntries("a", "b", 3, 2, 2, (entry(3, 3),), 3, round=4), 0.0)
    b.step(Heartbeat("a", "b", 3, 2, round=4), 0.0)
    b.step(RequestVote("c", "b", 4, 10, 4), 0.0)
    b.step(RequestVote("c", "b", 4, 10, 4, pre_vote=True), 0.0)
    ae, hb, rv, pv = take(b)
    assert isinstance(ae, AppendResponse) and not ae.success and ae.term == 5
    assert ae.reject_index == 2
    assert isinstance(hb, HeartbeatResponse) and hb.term == 5
    assert isinstance(rv, VoteResponse) and not rv.granted and rv.term == 5 and not rv.pre_vote
    assert isinstance(pv, VoteResponse) and not pv.granted and pv.term == 5 and pv.pre_vote
    assert log_terms(b) == [1, 2] and b.commit_index == 0
    assert b.term == 5 and b.voted_for is None and b.leader is None

    # The stale leader, told of term 5, steps down.
    c = PureCluster(ABC)
    a = c.elect("a")
    a.step(AppendResponse("b", "a", 5, False, reject_index=1), c.now)
    assert a.role is Role.FOLLOWER and a.term == 5


def test_stale_term_responses_are_ignored() -> None:
    """Figure 2: responses from older terms are dropped: an old vote does not count
    towards a new election, an old acknowledgement does not advance a match index."""
    a = make_node("a", ABCDE, storage=make_storage([1], term=3))
    a.trigger_election(0.0)
    assert a.term == 4
    take(a)
    for voter in "bcde":
        a.step(VoteResponse(voter, "a", 3, True), 0.0)
    assert a.role is Role.CANDIDATE and not take(a)

    c = PureCluster(ABC)
    leader = c.elect("a")
    leader.trigger_election(c.now)
    c.deliver(hold=lambda m: m.dst == "b")  # b hears nothing of term 2
    assert leader.term == 2 and leader.role is Role.LEADER
    assert leader.progress["b"].match == 0 and leader.commit_index == 2
    leader.step(AppendResponse("b", "a", 1, True, 2), c.now)  # a term-1 acknowledgement
    assert leader.progress["b"].match == 0


# ----------------------------------------------------------------------- replication


def test_append_entries_consistency_check_and_rejection_hint() -> None:
    """Figure 2 (AppendEntries 2) and §5.3: reply false if the log holds no entry at
    prevLogIndex with prevLogTerm. The rejection tells the leader the conflicting term
    and where it starts in the follower's log (or where the follower's log ends)."""
    b = make_node("b", storage=make_storage([1, 1, 2, 2, 2], term=3))

    def send(prev, prev_term):
        b.step(AppendEntries("a", "b", 3, prev, prev_term, (entry(prev + 1, 3),), 0), 0.0)
        (reply,) = take(b)
        assert isinstance(reply, AppendResponse)
        return reply

    r = send(4, 3)  # term mismatch at 4: b's term 2 starts at 3
    assert not r.success and r.reject_index == 4
    assert (r.conflict_index, r.conflict_term) == (3, 2)
    r = send(8, 3)  # b's log is too short
    assert not r.success and (r.conflict_index, r.conflict_term) == (6, None)
    r = send(2, 2)  # term mismatch in b's first term
    assert not r.success and (r.conflict_index, r.conflict_term) == (1, 1)
    assert log_terms(b) == [1, 1, 2, 2, 2]  # rejections change nothing

    r = send(2, 1)  # match: accepted, the conflicting suffix replaced
    assert r.success and r.match_index == 3
    assert log_terms(b) == [1, 1, 3]
    r = send(0, 0)  # index 0 always matches
    assert r.success


def test_rejection_hint_never_points_into_committed_prefix() -> None:
    """§5.3 fast backup: the conflict index a follower suggests is above its commit index
    (entries up to it are committed, hence on the leader too)."""
    b = make_node("b", storage=make_storage([1] * 6, term=2, commit=3))
    b.step(AppendEntries("a", "b", 2, 5, 2, (), 3), 0.0)
    (r,) = take(b)
    assert not r.success
    assert (r.conflict_index, r.conflict_term) == (4, 1)


def test_conflicting_entries_are_truncated_and_replaced() -> None:
    """Figure 2 (AppendEntries 3, 4): if an existing entry conflicts with a new one (same
    index, different term), delete it and all that follow; append new entries."""
    b = make_node("b", storage=make_storage([1, 1, 2, 2, 2, 2], term=3, commit=2))
    new = (entry(3, 3), entry(4, 3))
    b.step(AppendEntries("a", "b", 3, 2, 1, new, 2), 0.0)
    (r,) = take(b)
    assert r.success and r.match_index == 4
    assert log_entries(b) == [entry(1, 1), entry(2, 1), entry(3, 3), entry(4, 3)]
    assert stored_log(b) == log_entries(b)  # what is persisted


def test_matching_entries_are_not_truncated_by_reordered_or_duplicate_appends() -> None:
    """Figure 2 (AppendEntries 3): only *conflicting* entries are deleted. An older,
    shorter AppendEntries from the same leader arriving late (or twice) must not cut
    entries the follower already holds, and is acknowledged only up to what it carried."""
    b = make_node("b", storage=make_storage([], term=2))
    full = AppendEntries("a", "b", 2, 0, 0, tuple(entry(i, 2) for i in range(1, 6)), 0)
    short = AppendEntries("a", "b", 2, 0, 0, (entry(1, 2), entry(2, 2)), 0)
    middle = AppendEntries("a", "b", 2, 2, 2, (entry(3, 2),), 0)
    for m in (full, short, middle, short, full, middle):
        b.step(m, 0.0)
        assert log_terms(b) == [2] * 5
    replies = take(b)
    assert [r.match_index for r in replies] == [5, 2, 3, 2, 5, 3]
    assert all(r.success for r in replies)


def test_follower_commit_is_min_of_leader_commit_and_last_new_entry() -> None:
    """Figure 2 (AppendEntries 5): if leaderCommit > commitIndex, set commitIndex to
    min(leaderCommit, index of last new entry). Entries beyond what this message checked
    may still be stale: they must not be committed."""
    b = make_node("b", storage=make_storage([1, 1, 1, 1, 1], term=2))
    # Entries 2..5 are of an old term and unchecked: a leader at commit 5 whose message
    # only vouches for index 1 lets b commit only 1.
    b.step(AppendEntries("a", "b", 2, 0, 0, (entry(1, 1),), 5), 0.0)
    take(b)
    assert b.commit_index == 1 and storage_of(b).commit_index == 1
    b.step(AppendEntries("a", "b", 2, 1, 1, (entry(2, 1), entry(3, 1)), 5), 0.0)
    assert b.commit_index == 3
    b.step(AppendEntries("a", "b", 2, 3, 1, (), 2), 0.0)  # an older commit: no decrease
    assert b.commit_index == 3
    b.step(AppendEntries("a", "b", 2, 3, 1, (entry(4, 2),), 4), 0.0)
    assert b.commit_index == 4 and log_terms(b) == [1, 1, 1, 2]
    assert all(r.success for r in take(b))


def test_heartbeat_commit_is_bounded_by_follower_log() -> None:
    """§5.3: a heartbeat carries min(match, commit) for this follower and the follower
    never commits past its last entry."""
    c = PureCluster(ABC)
    a = c.elect("a")
    for i in range(3):
        a.propose(f"x{i}", c.now)
    c.deliver(isolate("c"))
    assert a.commit_index == 4 and c["b"].commit_index == 1  # b learns it next round
    a.heartbeat_now()
    beats = {m.dst: m for m in take(a)}
    hb, hb_c = beats["b"], beats["c"]
    assert isinstance(hb, Heartbeat) and hb.commit == 4
    assert isinstance(hb_c, Heartbeat) and hb_c.commit == 1  # c only matched the no-op
    c.step_one(hb)
    assert c["b"].commit_index == 4
    c.step_one(hb_c)
    assert c["c"].commit_index == 1
    # Even told of a larger commit index, a follower commits no further than its log.
    c["c"].step(Heartbeat("a", "c", 1, 99), c.now)
    assert c["c"].commit_index == c["c"].log.last_index == 1


def test_leader_commits_entry_once_a_quorum_stores_it() -> None:
    """Figure 2 (leaders): commit N once a quorum has matchIndex >= N and log[N] is of
    the current term; followers learn it from leaderCommit."""
    c = PureCluster(ABCDE)
    a = c.elect("a")
    assert a.commit_index == 1
    e = a.propose("x", c.now)
    assert a.commit_index == 1  # only on the leader
    c.deliver(hold=lambda m: m.dst in "cde")  # a and b: 2 of 5
    assert a.commit_index == 1
    c.deliver(hold=lambda m: m.dst in "de")  # and c: 3 of 5
    assert a.commit_index == e.index == 2
    c.deliver()
    c.deliver(heartbeat=True)
    assert all(c[n].commit_index == 2 for n in ABCDE)


def test_leader_never_commits_old_term_entry_by_counting_replicas() -> None:
    """§5.4.2 and Figure 8: a leader commits entries of earlier terms only by committing
    an entry of its own term. An old entry stored on a majority is NOT committed (another
    leader may still overwrite it), until a current-term entry reaches a majority."""
    # Figure 8: S1 led term 2 and wrote 2@2; S5 led term 3 and wrote 2@3, each on itself
    # only. Now S1 leads term 4 and copies 2@2 to S2 and S3, one entry per message; the
    # messages carrying its no-op 3@4 are lost.
    names = ("s1", "s2", "s3", "s4", "s5")
    logs = {"s1": [1, 2], "s2": [1], "s3": [1], "s4": [1], "s5": [1, 3]}
    c = PureCluster(names, logs=logs, terms=dict.fromkeys(names, 3), max_entries_per_message=1)
    s1 = c["s1"]
    s1.trigger_election(c.now)

    def lost(m: Message) -> bool:
        if m.src in ("s4", "s5") or m.dst in ("s4", "s5"):
            return True
        # The no-op is lost once the follower holds 2@2 (before, it is just rejected).
        return noop_in(m) and c[m.dst].log.last_index >= 2

    c.deliver(lost)
    assert s1.role is Role.LEADER and s1.term == 4
    assert log_terms(c["s2"]) == log_terms(c["s3"]) == [1, 2]
    assert s1.progress["s2"].match == s1.progress["s3"].match == 2  # a majority holds 2@2
    assert s1.commit_index == 0  # ... and still it is not committed
    c.deliver(lost, heartbeat=True)
    assert all(c[n].commit_index == 0 for n in names)

    # Why: S1 crashes; S5 (last term 3) times out and wins term 5 with S2, S3 and S4
    # (its last term is newer than theirs), then overwrites index 2 everywhere.
    c.inflight.clear()
    c.now += 1.0
    campaign(c, "s5", rounds=3, drop=isolate("s1"))
    assert c["s5"].role is Role.LEADER and c["s5"].term == 5
    assert log_terms(c["s3"])[:2] == log_terms(c["s2"])[:2] == [1, 3]


def test_old_term_entry_commits_with_current_term_entry() -> None:
    """§5.4.2: once an entry of the leader's term is stored on a majority, it and every
    entry before it are committed (and S5 of Figure 8 can then no longer win)."""
    names = ("s1", "s2", "s3", "s4", "s5")
    logs = {"s1": [1, 2], "s2": [1, 2], "s3": [1], "s4": [1], "s5": [1, 3]}
    c = PureCluster(names, logs=logs, terms=dict.fromkeys(names, 3), max_entries_per_message=1)
    s1 = c["s1"]
    s1.trigger_election(c.now)
    c.deliver(lambda m: m.dst in ("s4", "s5") or m.src in ("s4", "s5"))
    assert s1.role is Role.LEADER and s1.commit_index == 3
    c.inflight.clear()
    c.now += 1.0
    for _ in range(3):  # even forced elections: S2 and S3 have a newer last term
        c["s5"].trigger_election(c.now)
        c.deliver(isolate("s1"))
        assert c["s5"].role is not Role.LEADER
    term = c["s5"].term
    refusals = {
        m.src
        for m in c.delivered
        if isinstance(m, VoteResponse) and m.term == term and not m.granted
    }
    assert term >= 5 and refusals == {"s2", "s3"}
    assert log_terms(c["s2"])[:3] == log_terms(c["s3"])[:3] == [1, 2, 4]


# ---------------------------------------------------------------------------- quorum


@pytest.mark.parametrize(
    ("voters", "min_majority", "quorum"),
    [
        (1, None, 1),
        (2, None, 2),
        (3, None, 2),
        (4, None, 3),
        (5, None, 3),
        (5, 2, 3),
        (5, 4, 4),
        (5, 5, 5),
        (3, 5, 5),
    ],
)
def test_quorum_formula(voters, min_majority, quorum) -> None:
    """Quorum = max(min_majority or 0, len(voters) // 2 + 1)."""
    names = ABCDE[:voters]
    assert Config(voters=names).quorum(min_majority) == quorum
    node = make_node("a", names, min_majority=min_majority)
    assert node.quorum == quorum


def test_min_majority_raises_election_quorum() -> None:
    """Quorum floor: with min_majority=4 of 5 voters, three votes do not elect; four do."""
    c = PureCluster(ABCDE, min_majority=4)
    a = c["a"]
    a.trigger_election(c.now)
    c.deliver(isolate("d", "e"))
    assert a.role is Role.CANDIDATE
    a.trigger_election(c.now)
    c.deliver(isolate("e"))
    assert a.role is Role.LEADER


def test_min_majority_raises_commit_quorum() -> None:
    """Quorum floor: with min_majority=4 of 5 voters, an entry on three servers is not
    committed; on four it is."""
    c = PureCluster(ABCDE, min_majority=4)
    a = c.elect("a")
    e = a.propose("x", c.now)
    c.deliver(hold=isolate("d", "e"))
    assert a.commit_index < e.index
    c.deliver(hold=isolate("e"))
    assert a.commit_index == e.index


def test_min_majority_above_voter_count_never_elects() -> None:
    """Quorum floor above the number of voters: no election can ever be won, with or
    without PreVote; terms may grow but nobody leads."""
    for pre_vote in (True, False):
        c = PureCluster(ABC, min_majority=4, pre_vote=pre_vote)
        for _ in range(5):
            for n in ABC:
                c.now = max(c.now, c[n].deadline)
                c[n].tick(c.now)
                c.deliver()
        c["a"].trigger_election(c.now)
        c.deliver()
        assert c.leaders() == []


def test_change_below_min_majority_is_refused() -> None:
    """Quorum floor: a configuration with fewer voters than min_majority could never
    commit or elect anything again (the cluster would be bricked for good), so the leader
    refuses to append one, with an error naming min_majority, and changes nothing."""
    c = PureCluster(ABC, min_majority=3)
    a = c.elect("a")
    before = (a.config, a.log.last_index)
    with pytest.raises(ValueError, match="min_majority=3"):
        a.change_config(a.remove_server_config("c"), c.now)
    assert (a.config, a.log.last_index) == before
    e = a.propose("x", c.now)  # and the cluster goes on
    c.deliver()
    c.deliver(heartbeat=True)
    assert all(c[n].commit_index == e.index for n in ABC)


def test_single_voter_leader_commits_its_noop_at_once() -> None:
    """Quorum of one (§5.2, §6.4): a single-voter cluster elects itself at its first
    timeout and its no-op is committed at once (it alone is a quorum), so it can serve
    reads and membership changes without waiting for a client write."""
    a = make_node("a", ["a"])
    a.tick(a.deadline)
    assert a.role is Role.LEADER and a.term == 1
    take(a)  # the no-op is made durable: a alone is a quorum
    assert a.commit_index == 1 and a.committed_in_term
    ticket = a.request_read(a.deadline)
    assert [r for rd in pump(a) for r in rd.reads] == [(ticket, 1)]


# ---------------------------------------------------------------------- backtracking


def _count_probes(c: PureCluster, leader: str, follower: str) -> int:
    return sum(
        1
        for m in c.delivered
        if isinstance(m, AppendEntries) and m.src == leader and m.dst == follower
    )


def test_fast_backtracking_skips_a_divergent_term_per_round_trip() -> None:
    """§5.3 (fast backup): a follower with 60 divergent entries of one term is brought in
    line in a couple of round trips, not one per entry."""
    leader_log = [1] * 5 + [3] * 5
    follower_log = [1] * 5 + [2] * 60
    logs = {"a": leader_log, "b": follower_log, "c": leader_log}
    c = PureCluster(ABC, logs=logs, terms=dict.fromkeys(ABC, 3), max_inflight=1)
    c.elect("a")
    assert log_entries(c["b"]) == log_entries(c["a"])
    assert log_terms(c["b"]) == [1] * 5 + [3] * 5 + [4]
    assert _count_probes(c, "a", "b") <= 3


def test_fast_backtracking_when_leader_has_the_conflicting_term() -> None:
    """§5.3: when the leader holds the follower's conflicting term, it backs up to its own
    last entry of that term in one step."""
    leader_log = [1] * 5 + [2] * 3 + [3] * 2
    follower_log = [1] * 5 + [2] * 55
    logs = {"a": leader_log, "b": follower_log, "c": leader_log}
    c = PureCluster(ABC, logs=logs, terms=dict.fromkeys(ABC, 3), max_inflight=1)
    c.elect("a")
    assert log_entries(c["b"]) == log_entries(c["a"])
    assert _count_probes(c, "a", "b") <= 3


def test_fast_backtracking_over_many_terms_and_a_short_follower() -> None:
    """§5.3: one round trip per divergent term; a short follower is reached in one step."""
    leader_log = [1] * 3 + [6] * 10
    follower_log = [1] * 3 + [2] * 15 + [3] * 15 + [4] * 15 + [5] * 15
    short_log = [1] * 2
    logs = {"a": leader_log, "b": follower_log, "c": leader_log, "d": short_log}
    c = PureCluster(("a", "b", "c", "d"), logs=logs, terms=dict.fromkeys("abcd", 6))
    c.elect("a")
    for n in "bd":
        assert log_entries(c[n]) == log_entries(c["a"])
    assert _count_probes(c, "a", "b") <= 6
    assert _count_probes(c, "a", "d") <= 3


# ----------------------------------------------------------------------------- reads


def test_read_index_waits_for_noop_commit() -> None:
    """§6.4: a leader serves a read only once an entry of its term (its no-op) is
    committed, even after a quorum confirmed its leadership."""
    c = PureCluster(ABC, logs={n: [1, 1] for n in ABC}, terms=dict.fromkeys(ABC, 1))
    a = c["a"]
    a.trigger_election(c.now)
    no_entries = lambda m: isinstance(m, AppendEntries)  # noqa: E731
    c.deliver(hold=no_entries)
    assert a.role is Role.LEADER and a.commit_index == 0
    ticket = a.request_read(c.now)
    c.deliver(hold=no_entries, heartbeat=True)
    assert a.progress["b"].acked_round >= ticket and a.progress["c"].acked_round >= ticket
    assert c.reads["a"] == []  # acknowledged, but the no-op is not committed
    c.deliver()
    assert a.commit_index == 3
    assert c.reads["a"] == [(ticket, 3)]


def test_read_index_needs_quorum_ack_of_message_sent_after_request() -> None:
    """§6.4: a read is confirmed only when a quorum acknowledges a message the leader sent
    after the read was requested; replies to earlier messages prove nothing."""
    c = PureCluster(ABCDE)
    a = c.elect("a")
    a.heartbeat_now()
    before = take(a)  # sent before the read
    ticket = a.request_read(c.now)
    assert c.reads["a"] == []
    after = {m.dst: m for m in take(a)}  # the read asks for a round of its own
    for m in before:
        assert isinstance(m, Heartbeat) and m.round < ticket
        c[m.dst].step(m, c.now)
        for reply in take(c[m.dst]):
            a.step(reply, c.now)
    take(a)
    assert c.reads["a"] == []  # four acknowledgements, all of older messages

    assert sorted(after) == list("bcde")
    assert all(isinstance(m, Heartbeat) and m.round >= ticket for m in after.values())
    for p in "bc":
        take(a)
        assert c.reads["a"] == []  # a alone, then a and b: not 3 of 5
        c[p].step(after[p], c.now)
        for reply in take(c[p]):
            a.step(reply, c.now)
    take(a)
    assert c.reads["a"] == [(ticket, a.commit_index)]


def test_a_leader_that_is_the_only_voter_answers_a_read_at_once() -> None:
    """§6.4: a leader that is its cluster's one voter is its own quorum: a read needs no
    round, and its read index comes out in the next Ready."""
    c = PureCluster(("a",))
    a = c.elect("a")
    ticket = a.request_read(c.now)
    assert take(a) == []  # no round asked of anyone
    assert c.reads["a"] == [(ticket, a.commit_index)]


def test_reads_fail_when_leadership_is_lost() -> None:
    """§6.4: a read that has not been confirmed when the leader loses its leadership
    fails (it must not be answered from a possibly stale state)."""
    c = PureCluster(ABC)
    a = c.elect("a")
    first, second = a.request_read(c.now), a.request_read(c.now)
    a.step(Heartbeat("b", "a", 2, 0), c.now)
    assert a.role is Role.FOLLOWER
    take(a)
    assert c.failed_reads["a"] == [first, second] and c.reads["a"] == []
    with pytest.raises(trioraft.NotLeader):
        a.request_read(c.now)

    c2 = PureCluster(ABC)
    a2 = c2.elect("a")
    ticket = a2.request_read(c2.now)
    # The election round counts for the first CheckQuorum round; the second finds silence.
    c2.now = silence(a2, c2.now + 2 * MAX_ET)
    take(a2)
    assert a2.role is Role.FOLLOWER and c2.failed_reads["a"] == [ticket]


def follower_asks(names: tuple[str, ...]) -> tuple[PureCluster, RaftNode, int, Message]:
    """A cluster of ``names`` led by a (with an entry committed), and b's request for a
    read index, taken from b and not yet delivered: (cluster, a, b's read ticket, the
    request)."""
    c = PureCluster(names, follower_reads=True)
    a = c.elect("a")
    a.propose("x", c.now)
    c.deliver(heartbeat=True)
    ticket = c["b"].request_read(c.now)
    (ask,) = take(c["b"])
    return c, a, ticket, ask


def test_follower_read_asks_the_leader_for_a_read_index() -> None:
    """§6.4 (follower reads): a follower asks the leader for a read index; the leader
    confirms its leadership with a quorum round, then answers with its commit index; the
    follower answers once it has applied that far. With five voters the requester and
    the leader are not a quorum: a round is needed."""
    c, a, ticket, ask = follower_asks(ABCDE)
    assert isinstance(ask, ReadIndexRequest) and ask.dst == "a"
    c.step_one(ask)
    assert not any(isinstance(m, ReadIndexResponse) for m in c.inflight)  # a round first
    assert {m.dst for m in c.inflight if isinstance(m, Heartbeat)} == {"b", "c", "d", "e"}
    c.deliver()
    assert c.reads["b"] == [(ticket, a.commit_index)]


def test_a_follower_read_request_with_the_leader_is_a_quorum_and_needs_no_round() -> None:
    """§6.4: the request left after its reads began, in the leader's term, so neither
    its sender nor the leader had voted in a later term then; with three voters they are
    a quorum, so no other leader existed and the commit index is a valid read index at
    once (no heartbeat round). Not before the leader's no-op commits, and a learner's
    request is no such word."""
    c, a, ticket, ask = follower_asks(ABC)
    c.step_one(ask)
    answers = [m for m in c.inflight if isinstance(m, ReadIndexResponse)]
    assert [(m.dst, m.ok, m.index) for m in answers] == [("b", True, a.commit_index)]
    assert not any(isinstance(m, Heartbeat) for m in c.inflight)  # no round
    c.deliver()
    assert c.reads["b"] == [(ticket, a.commit_index)]

    fresh = PureCluster(ABC, follower_reads=True)  # a new leader, its no-op not committed
    leader = fresh.elect("a", drop=lambda m: isinstance(m, AppendResponse))
    assert not leader.committed_in_term
    follower = fresh["b"]
    follower.request_read(fresh.now)
    (ask,) = take(follower)
    fresh.step_one(ask)
    assert not any(isinstance(m, ReadIndexResponse) for m in fresh.inflight)

    with_learner = PureCluster(("a", "b", "c", "l"), voters=ABC, follower_reads=True)
    leader = with_learner.elect("a")
    leader.change_config(Config(voters=ABC, learners=("l",)), with_learner.now)
    with_learner.deliver(heartbeat=True)
    learner = with_learner["l"]
    assert learner.leader == "a"
    learner.request_read(with_learner.now)
    (ask,) = take(learner)
    with_learner.step_one(ask)
    assert not any(isinstance(m, ReadIndexResponse) for m in with_learner.inflight)
    with_learner.deliver()
    assert len(with_learner.reads["l"]) == 1  # after a round


def test_follower_reads_share_one_request_per_batch() -> None:
    """§6.4 (follower reads, batched and pipelined): the reads a follower starts before
    its next Ready share one request; reads arriving while that request is in flight
    share the next one, which leaves at once instead of waiting for the first answer.
    One answer serves every read of its batch, with an index confirmed after each
    began."""
    c = PureCluster(ABC, follower_reads=True)
    a = c.elect("a")
    c.deliver(heartbeat=True)
    b = c["b"]
    first, *together = [b.request_read(c.now) for _ in range(3)]
    (ask,) = [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    x = a.propose("x", c.now)
    waiting = [b.request_read(c.now) for _ in range(3)]
    (ask_again,) = [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    assert ask_again.ticket != ask.ticket  # the second batch did not wait
    c.step_one(ask)
    c.step_one(ask_again)
    c.deliver()
    assert not [m for m in c.delivered if isinstance(m, ReadIndexRequest)]  # 6 reads, 2 asks
    indexes = dict(c.reads["b"])
    assert set(indexes) == {first, *together, *waiting}
    assert indexes[first] == indexes[together[0]] == indexes[together[1]]
    assert indexes[waiting[0]] == indexes[waiting[1]] == indexes[waiting[2]] >= indexes[first]
    assert a.commit_index >= x.index


def test_follower_read_requests_in_flight_are_capped() -> None:
    """§6.4 (follower reads): at most MAX_READ_REQUESTS requests are in flight; reads
    arriving beyond that wait, all in one batch, and leave with the first answer."""
    c = PureCluster(ABC, follower_reads=True)
    c.elect("a")
    c.deliver(heartbeat=True)
    b = c["b"]
    reads, asked = [], []
    for _ in range(MAX_READ_REQUESTS):
        reads.append(b.request_read(c.now))
        asked += [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    assert len({m.ticket for m in asked}) == MAX_READ_REQUESTS
    late = [b.request_read(c.now) for _ in range(2)]
    assert not [m for m in take(b) if isinstance(m, ReadIndexRequest)]  # the cap holds
    c.step_one(asked[0])  # the others stay unanswered
    c.deliver()
    sent = [m for m in c.delivered if isinstance(m, ReadIndexRequest)]
    assert len(sent) == 1 and sent[0].ticket not in {m.ticket for m in asked}
    assert {t for t, _ in c.reads["b"]} == {reads[0], *late}


def test_follower_read_request_lost_is_asked_again() -> None:
    """§6.4 (follower reads): a request (or its answer) lost on the way is asked again
    after an election timeout, rather than leaving its reads waiting for ever."""
    c = PureCluster(ABC, follower_reads=True)
    c.elect("a")
    c.deliver(heartbeat=True)
    b = c["b"]
    ticket = b.request_read(c.now)
    assert any(isinstance(m, ReadIndexRequest) for m in take(b))  # ... and lost
    assert b.deadline <= c.now + MIN_ET
    c.now += 0.01
    second = b.request_read(c.now)
    assert any(isinstance(m, ReadIndexRequest) for m in take(b))  # lost too
    c.now += MIN_ET - 0.01
    b.tick(c.now)  # only the first is late: it is asked again on its own
    (again,) = [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    c.step_one(again)
    c.deliver()
    assert [t for t, _ in c.reads["b"]] == [ticket]
    c.now += 0.01
    b.tick(c.now)  # now the second
    (again,) = [m for m in take(b) if isinstance(m, ReadIndexRequest)]
    c.step_one(again)
    c.deliver()
    assert [t for t, _ in c.reads["b"]] == [ticket, second]
    assert b.role is Role.FOLLOWER  # the retry timer is not an election timeout


def test_lease_read_index_is_the_commit_index_only_while_the_lease_holds() -> None:
    """§6.4.1 (the runtime's fast path): lease_read_index gives the commit index while
    the lease holds, and None before a round is acknowledged, after the lease, on a
    follower, while leadership is handed over, and without lease_reads."""
    c = PureCluster(ABC, lease_reads=True)
    a = c.elect("a")
    assert a.lease_read_index(c.now) is None or a.lease_until > c.now
    sent_at = c.now
    c.deliver(heartbeat=True)
    c.now += 0.05
    assert a.lease_read_index(c.now) == a.commit_index
    assert c["b"].lease_read_index(c.now) is None
    assert a.lease_read_index(sent_at + LEASE + 1e-6) is None
    a.transfer_leadership("b", c.now)  # the target may be elected at once (§3.10)
    assert a.lease_read_index(c.now) is None
    plain = PureCluster(ABC)
    leader = plain.elect("a")
    plain.deliver(heartbeat=True)
    assert leader.lease_read_index(plain.now) is None


def test_follower_read_fails_when_its_leader_changes() -> None:
    """§6.4: a follower's read asked of a leader it no longer follows is failed (it will
    not be answered), never answered from a stale state."""
    c = PureCluster(ABC, follower_reads=True)
    c.elect("a")
    b = c["b"]
    ticket = b.request_read(c.now)
    c.inflight.clear()
    take(b)  # the request is lost
    other = b.request_read(c.now)
    take(b)  # a second request in flight, lost too
    c.elect("c", drop=lambda m: m.src == "a" or m.dst == "a")
    take(b)
    assert {ticket, other} <= set(c.failed_reads["b"]) and c.reads["b"] == []
    without = PureCluster(ABC)  # follower_reads off: NotLeader, naming the leader
    without.elect("a")
    with pytest.raises(trioraft.NotLeader) as info:
        without["b"].request_read(without.now)
    assert info.value.leader == "a"


def test_lease_read_answers_at_once_while_the_lease_holds() -> None:
    """§6.4.1: once a quorum acknowledged a round sent at T, the leader answers reads at
    once (no round, nothing sent) until T + min_election_timeout less the drift margin."""
    c = PureCluster(ABC, lease_reads=True)
    a = c.elect("a")
    sent_at = c.now
    c.deliver(heartbeat=True)  # a round acknowledged: the lease runs from its send time
    c.now += 0.05
    ticket = a.request_read(c.now)
    assert not take(a) or all(not isinstance(m, Heartbeat) for m in c.inflight)
    assert c.reads["a"][-1] == (ticket, a.commit_index)
    # Past the lease (LEASE after the round), a read needs a round again.
    c.now = sent_at + LEASE + 1e-6
    late = a.request_read(c.now)
    sent = take(a)
    assert [m.dst for m in sent if isinstance(m, Heartbeat)] == ["b", "c"]
    assert all(t != late for t, _ in c.reads["a"])


def test_lease_needs_check_quorum_and_a_new_leader_starts_without_one() -> None:
    """§6.4.1: lease reads are only safe with CheckQuorum; a new leader has no lease
    until a quorum acknowledged a round of its own; a forced election respects leases."""
    with pytest.raises(ValueError, match="lease_reads needs check_quorum"):
        CoreOptions(lease_reads=True, check_quorum=False)
    c = PureCluster(ABC, lease_reads=True)
    a = c.elect("a")
    c.deliver(heartbeat=True)
    c.now += 0.01
    c["b"].trigger_election(c.now)  # voters hear from a: they refuse to break its lease
    c.deliver()
    assert a.role is Role.LEADER and c.leaders() == ["a"]
    c.now += 1.0
    b = c["b"]  # later, once the lease is long gone, b is elected
    b.trigger_election(c.now)
    c.deliver(hold=lambda m: isinstance(m, (AppendEntries, Heartbeat)))
    assert b.role is Role.LEADER
    c.deliver(hold=lambda m: isinstance(m, AppendResponse))  # its no-op is out, unanswered
    ticket = b.request_read(c.now)
    c.collect()
    assert c.reads["b"] == []  # no lease yet: a round of its own is needed
    c.deliver()
    assert c.reads["b"] == [(ticket, b.commit_index)]


def _lease_renewed_by_c_only() -> tuple[PureCluster, RaftNode, float]:
    """b leads with lease_reads; a was cut off from it for longer than a minimum
    election timeout, so only c acknowledged b's latest round (its lease). Returns the
    cluster, b, and when c last heard from b (b's lease ends before that + MIN_ET)."""
    c = PureCluster(ABC, lease_reads=True, pre_vote=False)
    b = c.elect("b")
    c.run(MIN_ET + 0.05, drop=isolate("a"))
    c.deliver(isolate("a"), heartbeat=True)
    assert b.role is Role.LEADER and b.lease_read_index(c.now) == b.commit_index
    return c, b, c.now


def _lease_acknowledged_by_c_only() -> tuple[PureCluster, RaftNode, float]:
    """As :func:`_lease_renewed_by_c_only`, then c is made a candidate of a term beyond
    a's, and a grants it its vote."""
    c, b, heard = _lease_renewed_by_c_only()
    c.now += 0.01
    while c["c"].term <= c["a"].term:
        c["c"].trigger_election(c.now)
    c.deliver(isolate("b"))
    assert c["a"].voted_for == "c" and c["a"].term == c["c"].term
    return c, b, heard


def _a_cannot_depose_b_before_the_window_ends(c: PureCluster, b: RaftNode, heard: float) -> None:
    """a (not heard from b for a while) starts an election, b cut off: b stays the only
    leader, its lease intact, until c's window (``heard`` + MIN_ET) is over; then a new
    leader is elected among a and c."""
    c["a"].trigger_election(c.now)
    c.deliver(isolate("b"))
    assert c.leaders() == ["b"] and b.lease_read_index(c.now) == b.commit_index
    c.run(MIN_ET + 2 * MAX_ET, drop=isolate("b"))
    assert c.now > heard + MIN_ET and b.lease_read_index(c.now) is None
    assert [n for n in c.leaders() if n != "b"] in (["a"], ["c"])


def test_a_follower_that_acknowledged_the_lease_cannot_use_its_own_vote_against_it() -> None:
    """§6.4.1: a leader's lease counts on every voter that acknowledged its round to help
    elect no one else for a minimum election timeout. trigger_election makes a follower
    a candidate at once, and its own vote would be such help: with lease_reads it counts
    only once the window since it last heard from the leader has passed (the candidate's
    timer fires then). (Found by the stateful test: b served a lease read at index 3
    while c, elected with its own vote and a's, had committed index 4.)"""
    c, b, heard = _lease_acknowledged_by_c_only()
    candidate = c["c"]
    assert candidate.role is Role.CANDIDATE  # two votes, but its own does not count yet
    assert c.leaders() == ["b"] and b.lease_read_index(c.now) == b.commit_index
    assert c.now < candidate.deadline <= heard + MIN_ET
    c.now = candidate.deadline
    candidate.tick(c.now)  # the window is over, and so is b's lease: it wins
    assert candidate.role is Role.LEADER and b.lease_read_index(c.now) is None


def test_a_voter_that_left_its_leader_still_refuses_to_depose_it_during_the_lease() -> None:
    """§6.4.1: with lease_reads, a server that heard from a leader less than a minimum
    election timeout ago refuses other candidates' votes even once it has stopped
    following it (here by trigger_election); later an election succeeds."""
    c, b, heard = _lease_acknowledged_by_c_only()
    _a_cannot_depose_b_before_the_window_ends(c, b, heard)


def test_a_voter_restarted_during_the_lease_still_refuses_to_depose_its_leader() -> None:
    """§6.4.1: a server that crashes right after acknowledging a leader's round, and is
    back at once, has forgotten when it last heard from a leader. With lease_reads it
    counts its restart as such a contact: no vote for another candidate until a minimum
    election timeout has passed, so the lease it acknowledged still holds."""
    c, b, heard = _lease_renewed_by_c_only()
    c.now += 0.01
    c.restart("c")
    _a_cannot_depose_b_before_the_window_ends(c, b, heard)


def test_a_voter_that_learnt_a_newer_term_from_a_reply_still_respects_the_lease() -> None:
    """§6.4.1: a follower of b that learns a newer term from a reply (here a stray
    AppendResponse) follows no one in it, but it heard from b less than a minimum
    election timeout ago: it refuses a candidate of that term until the window is over."""
    c = PureCluster(ABC, lease_reads=True, pre_vote=False)
    b = c.elect("b")
    c.deliver(heartbeat=True)
    voter = c["c"]
    term = voter.term + 1
    voter.step(AppendResponse("a", "c", term, False), c.now)
    assert voter.term == term and voter.leader is None and voter.voted_for is None
    request = RequestVote("a", "c", term, b.log.last_index, b.log.last_term)
    voter.step(request, c.now)
    assert voter.voted_for is None
    assert [m.granted for m in take(voter) if isinstance(m, VoteResponse)] == [False]
    c.now += MIN_ET
    voter.step(request, c.now)
    assert voter.voted_for == "a"
    assert [m.granted for m in take(voter) if isinstance(m, VoteResponse)] == [True]


# ----------------------------------------------------------------------- CheckQuorum


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    """§6.2 CheckQuorum: a leader that has not heard from a quorum for an election
    timeout steps down (on its timer)."""
    c = PureCluster(ABC)
    a = c.elect("a")  # b and c acknowledged the election's no-op: heard from
    c.now = silence(a, c.now + MAX_ET - 1e-6)  # too early: nothing happens
    assert a.role is Role.LEADER
    c.now = silence(a, c.now + 1e-6)  # the first check counts the election round's answers
    assert a.role is Role.LEADER
    c.now = silence(a, c.now + MAX_ET)  # a whole timeout of silence ends its leadership
    assert a.role is Role.FOLLOWER and a.term == 1 and a.leader is None
    assert heartbeat_to(a, "b") is None


def test_leader_deadline_moves_on_at_every_tick() -> None:
    """All timing lives in the core: after a tick, the leader's next deadline is in the
    future even before the runtime carries out the Ready (it may be waiting on its disk),
    so the runtime's one timer never fires twice at the same instant."""
    c = PureCluster(ABC)
    a = c.elect("a")
    for _ in range(20):
        c.now = a.deadline
        a.tick(c.now)
        assert a.deadline > c.now


def test_check_quorum_disabled_leader_stays() -> None:
    """§6.2: CheckQuorum is an option; without it a silent cluster does not depose its
    leader."""
    c = PureCluster(ABC, check_quorum=False)
    a = c.elect("a")
    c.now = silence(a, c.now + 5 * MAX_ET)
    assert a.role is Role.LEADER


def test_check_quorum_leader_with_quorum_stays() -> None:
    """§6.2 CheckQuorum: a leader that hears from a quorum each timeout keeps leading."""
    c = PureCluster(ABC)
    a = c.elect("a")
    for _ in range(60):
        c.now = a.deadline
        a.tick(c.now)
        c.deliver(isolate("c"))  # b answers, c is gone
        assert a.role is Role.LEADER


# --------------------------------------------------------------------- leader lease


def test_leader_lease_ignores_unforced_higher_term_request_vote() -> None:
    """§4.2.3: a voter that heard from a leader within the minimum election timeout
    ignores a RequestVote of a higher term: no vote, no term change."""
    c = PureCluster(ABC)
    c.elect("a")
    b = c["b"]
    c.now += MIN_ET / 2
    b.step(RequestVote("c", "b", 5, 10, 1), c.now)
    (r,) = take(b)
    assert not r.granted and r.term == 1
    assert b.term == 1 and b.voted_for == "a" and b.leader == "a"
    a = c["a"]  # the leader itself also ignores it
    a.step(RequestVote("c", "a", 5, 10, 1), c.now)
    assert a.role is Role.LEADER and a.term == 1

    c.now += MIN_ET  # the lease has run out
    b.step(RequestVote("c", "b", 5, 10, 1), c.now)
    (r,) = take(b)
    assert r.granted and b.term == 5 and b.voted_for == "c"


def test_forced_election_is_honoured_despite_lease() -> None:
    """§3.10/§4.2.3: a forced RequestVote (trigger_election, leadership transfer) is not
    refused for the lease: the voter adopts the term and votes if the log is up to date."""
    c = PureCluster(ABC)
    c.elect("a")
    b = c["b"]
    b.step(RequestVote("c", "b", 5, 10, 1, force=True), c.now)
    (r,) = take(b)
    assert r.granted and b.term == 5 and b.voted_for == "c"

    c2 = PureCluster(ABC)
    c2.elect("a")
    c2["c"].trigger_election(c2.now)  # while everyone hears from a
    c2.deliver()
    assert c2.leaders() == ["c"] and c2["c"].term == 2


# ---------------------------------------------------------------- leadership transfer


def test_timeout_now_makes_target_campaign_at_once() -> None:
    """§3.10: on TimeoutNow the target starts an election at once (no timeout, no
    PreVote), with a forced RequestVote."""
    c = PureCluster(ABC)
    c.elect("a")
    b = c["b"]
    deadline = b.deadline
    b.step(TimeoutNow("a", "b", 1), c.now)
    assert c.now < deadline
    assert b.role is Role.CANDIDATE and b.term == 2 and b.voted_for == "b"
    reqs = take(b)
    assert {m.dst for m in reqs} == {"a", "c"}
    assert all(isinstance(m, RequestVote) and m.force and not m.pre_vote for m in reqs)
    c.inflight.extend(reqs)
    c.deliver()
    assert c.leaders() == ["b"]


def test_transfer_waits_for_target_log_and_blocks_proposals() -> None:
    """§3.10: the leader stops taking proposals, brings the target's log up to date, then
    sends it TimeoutNow; the target wins the next term."""
    c = PureCluster(ABC)
    a = c.elect("a")
    for i in range(3):
        a.propose(i, c.now)
    c.deliver(hold=isolate("b"))
    assert c["b"].log.last_index < a.log.last_index
    assert a.transfer_leadership("b", c.now) == "b"
    sent = take(a)
    assert not any(isinstance(m, TimeoutNow) for m in sent)  # b is behind
    c.inflight.extend(sent)
    with pytest.raises(TransferInProgress):
        a.propose("late", c.now)
    c.deliver()
    assert any(isinstance(m, TimeoutNow) and m.dst == "b" for m in c.delivered)
    assert c.leaders() == ["b"] and c["b"].term == 2
    assert log_entries(c["b"])[:4] == log_entries(c["a"])[:4]


# ----------------------------------------------------------------------- membership


def test_server_outside_its_configuration_never_campaigns() -> None:
    """§4.2.2: a server that is not a voter in its configuration never starts an election
    (its deadline is infinite), and refuses to be triggered."""
    d = make_node("d", ABC)
    assert d.deadline == float("inf")
    d.tick(1e9)
    assert d.role is Role.FOLLOWER and d.term == 0 and not take(d)
    with pytest.raises(NotVoter):
        d.trigger_election(0.0)
    d.step(TimeoutNow("a", "d", 1), 0.0)
    assert d.role is Role.FOLLOWER and not any(isinstance(m, RequestVote) for m in take(d))


def _learner_cluster() -> tuple[PureCluster, RaftNode]:
    c = PureCluster(("a", "b", "c", "d"), voters=ABC)
    a = c.elect("a")
    for i in range(20):
        a.propose(i, c.now)
    c.deliver(isolate("d"))
    a.change_config(a.add_server_config("d", voter=False), c.now)
    c.deliver(isolate("d"))
    c.deliver(isolate("d"), heartbeat=True)
    return c, a


def test_catch_up_done_when_a_round_takes_less_than_an_election_timeout() -> None:
    """§4.2.1: the leader catches a learner up in rounds (each ends when the learner holds
    what the leader held when it began); a round that takes less than an election timeout
    means the learner is caught up."""
    c, a = _learner_cluster()
    catch_up = a.start_catch_up("d", c.now)
    assert catch_up.state is CatchUpState.PENDING
    for _ in range(3):  # heartbeat rounds (no time passes): the leader finds d's log
        c.deliver(heartbeat=True)
    assert catch_up.state is CatchUpState.DONE and a.progress["d"].match == a.log.last_index


def test_catch_up_done_when_a_slow_round_leaves_nothing_more_to_send() -> None:
    """§4.2.1: when a slow round ends and the leader has nothing newer, the next round
    is already complete (it takes no time): the learner is caught up, and an idle
    cluster does not later fail it for "no progress"."""
    c, a = _learner_cluster()
    catch_up = a.start_catch_up("d", c.now)
    c.now += 0.2  # the first round takes longer than the minimum election timeout
    for _ in range(3):
        c.deliver(heartbeat=True)
    assert a.progress["d"].match == a.log.last_index
    assert catch_up.state is CatchUpState.DONE
    c.now = silence(a, c.now + 2 * MAX_ET + 0.01)
    assert catch_up.state is CatchUpState.DONE


def test_catch_up_fails_without_progress_for_an_election_timeout() -> None:
    """§4.2.1: a learner that makes no progress for an election timeout (it is down, or
    too slow) fails its catch-up: it is not promoted."""
    c, a = _learner_cluster()
    catch_up = a.start_catch_up("d", c.now)
    c.now = silence(a, c.now + 2 * MAX_ET + 0.01)
    assert catch_up.state is CatchUpState.FAILED and "no progress" in catch_up.reason


def test_catch_up_fails_after_too_many_slow_rounds() -> None:
    """§4.2.1: while new entries keep coming, a learner whose every round takes longer than
    an election timeout is never caught up: the catch-up fails after a bounded number of
    rounds (ten), rather than going on for ever."""
    c, a = _learner_cluster()
    catch_up = a.start_catch_up("d", c.now)
    from_d = lambda m: m.src == "d"  # noqa: E731
    for round_ in range(2 * MAX_CATCH_UP_ROUNDS):  # the first few find d's log
        c.now += 0.2  # each round takes longer than the minimum election timeout
        a.propose(("more", round_), c.now)  # ... and ends with something newer to send
        answers, c.inflight = c.inflight, []
        for m in answers:  # d's answers to the last round arrive now
            c.step_one(m)
        c.deliver(hold=from_d, heartbeat=True)  # d gets the rest; its answers are late
        if catch_up.state is not CatchUpState.PENDING:
            break
    assert catch_up.state is CatchUpState.FAILED
    assert f"after {MAX_CATCH_UP_ROUNDS} rounds" in catch_up.reason


def test_leader_only_appends_to_its_log() -> None:
    """§5.3 (Leader Append-Only): a leader never overwrites or deletes entries in its log:
    messages of older terms, stale or duplicated answers and conflicting appends from a
    deposed leader leave its log a prefix of what it becomes."""
    c = PureCluster(ABC, check_quorum=False)
    a = c.elect("a")
    for i in range(3):
        a.propose(i, c.now)
    c.deliver()
    before = log_entries(a)
    stale = [
        AppendEntries("b", "a", 0, 0, 0, (command(1, 0),), 0),
        AppendResponse("b", "a", a.term, False, 0, 1, 1),
        AppendResponse("c", "a", a.term, True, 2),
        Heartbeat("c", "a", 0, 9),
    ]
    for m in stale:
        a.step(m, c.now)
    c.collect()
    c.deliver()
    a.propose("next", c.now)
    c.deliver()
    assert a.role is Role.LEADER and log_entries(a)[: len(before)] == before


def test_config_change_takes_effect_on_append() -> None:
    """Dissertation §4.1: a server uses the latest configuration in its log, committed or
    not. After adding d, the leader needs 3 of 4 acknowledgements, even for the config
    entry itself, and followers use the new configuration as soon as they store it."""
    c = PureCluster(("a", "b", "c", "d"), voters=ABC)
    a = c.elect("a")
    assert c["d"].deadline == float("inf")
    entry_ = a.change_config(a.add_server_config("d", voter=True), c.now)
    assert a.config.voters == ("a", "b", "c", "d") and a.quorum == 3
    assert "d" in a.progress
    c.deliver(hold=isolate("c", "d"))  # a and b store it: 2 of 4 is no longer a quorum
    assert c["b"].config.voters == ("a", "b", "c", "d")
    assert a.commit_index < entry_.index
    c.deliver(hold=isolate("c"))  # d catches up: a, b, d
    assert a.commit_index == entry_.index
    assert c["d"].config.voters == ("a", "b", "c", "d")
    assert c["d"].deadline < float("inf")  # d is a voter now: it has an election timer


def test_second_config_change_while_one_is_uncommitted_raises() -> None:
    """Dissertation §4.1: one membership change at a time; the next one only once the
    previous one is committed."""
    c = PureCluster(("a", "b", "c", "d", "e"), voters=ABC)
    a = c.elect("a")
    a.change_config(a.add_server_config("d", voter=True), c.now)
    with pytest.raises(ConfigChangeInProgress):
        a.change_config(a.add_server_config("e", voter=True), c.now)
    assert a.config.voters == ("a", "b", "c", "d")
    c.deliver()
    a.change_config(a.add_server_config("e", voter=True), c.now)
    assert a.config.voters == ABCDE
    c.deliver()
    with pytest.raises(ValueError):  # and only one server per change
        a.change_config(Config(voters=("a", "b")), c.now)


def test_config_change_before_noop_commits_raises_leader_not_ready() -> None:
    """Single-server changes (dissertation errata): a new leader must commit an entry of
    its own term before it appends a configuration."""
    c = PureCluster(("a", "b", "c", "d"), voters=ABC)
    a = c["a"]
    a.trigger_election(c.now)
    c.deliver(hold=lambda m: isinstance(m, AppendEntries))
    assert a.role is Role.LEADER and not a.committed_in_term
    with pytest.raises(LeaderNotReady):
        a.change_config(a.add_server_config("d", voter=True), c.now)
    assert a.config.voters == ABC
    c.deliver()
    a.change_config(a.add_server_config("d", voter=True), c.now)
    assert a.config.voters == ("a", "b", "c", "d")


def test_truncated_config_entry_reverts_configuration() -> None:
    """Dissertation §4.1: when an uncommitted configuration entry is deleted from a log
    (a conflict), the server falls back to the previous configuration, election timer
    included."""
    c = PureCluster(ABCDE)
    a = c.elect("a")
    a.change_config(a.remove_server_config("e"), c.now)
    c.deliver(lambda m: m.dst in "bcd")  # only e stores its removal
    e = c["e"]
    assert "e" not in e.config.voters
    assert e.can_campaign  # its removal is not committed: it may still have to lead
    # a crashes; b, c, d elect b, which overwrites e's log (its no-op replaces the entry).
    c.inflight.clear()
    c["b"].trigger_election(c.now)
    c.deliver(isolate("a"))
    assert c["b"].role is Role.LEADER and c["b"].term == 2
    assert log_entries(e) == log_entries(c["b"])
    assert all(x.kind is not EntryKind.CONFIG for x in log_entries(e))
    assert e.config.voters == ABCDE
    assert e.deadline < float("inf")  # a voter again: it must be able to time out


def test_leader_that_removes_itself_steps_down_once_committed() -> None:
    """Dissertation §4.2.2: a leader removed from the configuration keeps leading (without
    counting itself) until the change commits, then steps down and hands over."""
    c = PureCluster(ABC)
    a = c.elect("a")
    cfg = a.change_config(a.remove_server_config("a"), c.now)
    assert a.role is Role.LEADER and a.quorum == 2
    c.deliver(hold=lambda m: m.dst == "c")  # b alone: 1 of {b, c}: not committed
    assert a.role is Role.LEADER and a.commit_index < cfg.index
    c.deliver()
    assert a.commit_index >= cfg.index
    assert a.role is Role.FOLLOWER and a.deadline == float("inf")
    leaders = c.leaders()
    assert len(leaders) == 1 and leaders[0] in "bc"
    assert c[leaders[0]].term == 2
    assert c[leaders[0]].config.voters == ("b", "c")


def test_removed_follower_stops_campaigning() -> None:
    """§4.2.2: a server removed from the configuration never starts an election."""
    c = PureCluster(ABC)
    a = c.elect("a")
    a.change_config(a.remove_server_config("c"), c.now)
    c.deliver()
    cc = c["c"]
    assert cc.config.voters == ("a", "b")
    assert "c" in a.progress  # told until it knows that its removal committed
    c.deliver(heartbeat=True)
    assert cc.commit_index >= cc.config_index and cc.deadline == float("inf")
    cc.tick(1e9)
    assert cc.role is Role.FOLLOWER and not take(cc)
    assert "c" not in a.progress


def test_server_removed_by_uncommitted_entry_still_campaigns_and_commits_it() -> None:
    """§4.2.2 (liveness): a server removed only by an *uncommitted* configuration entry may
    hold the only log that can commit it. Here a removes c (committed), b goes down, a
    removes itself (appended, uncommitted) and crashes; a and b restart. b cannot win
    (its log is behind a's), so a, a voter of the last committed configuration, must
    campaign: it wins with b's vote (counted in Cnew = {b}), commits Cnew, and hands over."""
    c = PureCluster(ABC)
    a = c.elect("a")
    a.change_config(a.remove_server_config("c"), c.now)
    c.deliver()
    c.deliver(heartbeat=True)
    assert c["b"].config.voters == ("a", "b") and c["b"].commit_index == a.commit_index
    cfg = a.change_config(a.remove_server_config("a"), c.now)
    c.deliver(isolate("b"))  # b is down: the entry cannot commit
    assert a.commit_index < cfg.index and a.config.voters == ("b",)
    a = c.restart("a", seed=1)
    b = c.restart("b", seed=2)
    assert a.config.voters == ("b",) and a.committed_config.voters == ("a", "b")
    assert a.can_campaign and a.deadline < float("inf")
    assert b.can_campaign
    for _ in range(20):  # whoever times out first; only a can win
        c.now = min(a.deadline, b.deadline)
        for node in (a, b):
            node.tick(c.now)
        c.deliver(lambda m: m.dst == "c")
        if c["b"].role is Role.LEADER:
            break
    assert c["b"].role is Role.LEADER and c["b"].config.voters == ("b",)
    assert c["b"].commit_index >= cfg.index
    assert a.role is Role.FOLLOWER and not a.can_campaign and a.deadline == float("inf")


def test_server_removed_by_committed_entry_never_campaigns() -> None:
    """§4.2.2: once the entry removing a server is known committed, it stops campaigning."""
    c = PureCluster(ABC)
    a = c.elect("a")
    a.change_config(a.remove_server_config("c"), c.now)
    c.deliver()
    c.deliver(heartbeat=True)
    cc = c.restart("c")
    assert cc.commit_index >= cc.config_index
    assert not cc.can_campaign and cc.deadline == float("inf")


# ------------------------------------------------------------------------- restarts


def test_crash_restart_keeps_persistent_state() -> None:
    """Figure 2 (persistent state): currentTerm, votedFor and log[] survive a crash,
    as does the commit index here; the server comes back as a follower."""
    c = PureCluster(ABC)
    a = c.elect("a")
    for i in range(4):
        a.propose(i, c.now)
    c.deliver()
    c.deliver(heartbeat=True)
    for name in ABC:
        before = c[name]
        state = (before.term, before.voted_for, log_entries(before), before.commit_index)
        after = c.restart(name)
        assert (after.term, after.voted_for, log_entries(after), after.commit_index) == state
        assert after.role is Role.FOLLOWER and after.leader is None
        assert after.config == before.config
    assert c["a"].commit_index == 5 and c["a"].term == 1 and c["a"].voted_for == "a"
    c.elect("b")  # and the cluster goes on from there
    assert c["b"].term == 2 and c["b"].commit_index == 6


def test_restarted_node_recovers_configuration_from_log() -> None:
    """Dissertation §4.1: the configuration in force is the last one in the log, also after
    a restart (the base configuration only applies before any config entry)."""
    c = PureCluster(("a", "b", "c", "d"), voters=ABC)
    a = c.elect("a")
    a.change_config(a.add_server_config("d", voter=False), c.now)
    c.deliver()
    d = c.restart("d")
    assert d.config.learners == ("d",) and d.deadline == float("inf")
    b = c.restart("b")
    assert b.config == Config(voters=ABC, learners=("d",))


# ------------------------------------------------------------------------ bad input


def test_malformed_messages_raise_and_change_nothing() -> None:
    """Robustness: step() rejects a non-message, a message for another server or with an
    invalid term with MalformedMessage, leaving the node exactly as it was."""
    c = PureCluster(ABC)
    a = c.elect("a")
    b = c["b"]
    c.deliver(heartbeat=True)

    def snapshot(n: RaftNode):
        return (
            n.role,
            n.term,
            n.voted_for,
            n.leader,
            n.commit_index,
            n.deadline,
            log_entries(n),
            list(n._outbox),
        )

    bad: list[object] = [
        "hello",
        None,
        {"src": "a", "dst": "b", "term": 1},
        Message("a", "b", 1),
        AppendEntries("a", "c", 5, 0, 0, (entry(1, 5),), 1),  # for c
        RequestVote("c", "a", 9, 99, 9, force=True),  # for a
        Heartbeat("a", "b", -1, 0),
    ]
    with contextlib.suppress(TypeError):  # the compiled build refuses it already
        bad.append(Heartbeat("a", "b", "1", 0))  # type: ignore[arg-type]
    before_a, before_b = snapshot(a), snapshot(b)
    for m in bad:
        with pytest.raises(MalformedMessage):
            b.step(m, c.now)  # type: ignore[arg-type]
        assert snapshot(b) == before_b
    assert snapshot(a) == before_a
