"""The node's facade for the runtime (etcd's ``RawNode.Status`` and the reports the
runtime waits on): what it reports, driven by hand with the pure-core harness.

The runtime reads the node only through its live soft state and these; the three
decisions it used to make itself (a new learner's first answer, a transfer's outcome,
which writes of a lost leadership have an unknown outcome) are the core's reports now.
"""

from __future__ import annotations

from trioraft._core import ClusterMismatch, Role
from trioraft._core.types import TransferOutcome
from trioraft.testing._pure import PureCluster, isolate, log_entries, take

ABC = ("a", "b", "c")


def test_status_reports_soft_state_log_configuration_and_match_indexes() -> None:
    c = PureCluster(ABC)
    a = c.elect("a")
    for i in range(3):
        a.propose(i, c.now)
    c.deliver(hold=isolate("c"))
    st = a.status()
    assert (st.role, st.term, st.leader) == (Role.LEADER, a.term, "a")
    assert st.commit_index == a.commit_index == st.last_log_index == 4
    assert st.log_length == 4 and st.snapshot_index == 0
    assert st.config.voters == ABC and st.transfer_target is None
    assert st.cluster_id == a.cluster_id != ""
    assert dict(st.match_index) == {"b": 4, "c": 1}  # c has the no-op; the leader: none
    follower = c["b"].status()
    assert follower.role is Role.FOLLOWER and follower.leader == "a"
    assert follower.match_index == {}


def test_followers_and_entries_from() -> None:
    c = PureCluster(ABC)
    a = c.elect("a")
    assert sorted(a.followers()) == ["b", "c"]
    assert list(c["b"].followers()) == []
    a.propose("x", c.now)
    assert a.entries_from(2) == log_entries(a)[1:]
    assert a.entries_from(0) == log_entries(a)  # from the first held
    assert a.entries_from(a.log.last_index + 1) == []


def test_transfer_outcome_done_when_the_target_leads() -> None:
    c = PureCluster(ABC)
    a = c.elect("a")
    assert a.transfer_outcome("a") is TransferOutcome.DONE  # to itself: nothing to do
    a.transfer_leadership("b", c.now)
    assert a.transfer_outcome("b") is TransferOutcome.PENDING
    c.deliver()
    assert c.leaders() == ["b"]
    assert a.transfer_outcome("b") is TransferOutcome.DONE


def test_transfer_outcome_abandoned_when_the_target_does_not_catch_up() -> None:
    """§3.10: after an election timeout without the target taking over, the leader
    gives the transfer up and leads on."""
    c = PureCluster(ABC)
    a = c.elect("a")
    a.transfer_leadership("b", c.now)
    c.run(c.options.max_election_timeout + 0.01, drop=isolate("b"))
    assert a.role is Role.LEADER and a.transfer_target is None
    assert a.transfer_outcome("b") is TransferOutcome.ABANDONED


def test_transfer_outcome_other_elected() -> None:
    c = PureCluster(ABC)
    a = c.elect("a")
    a.transfer_leadership("b", c.now)
    take(a)  # what it sends b is lost
    c["c"].trigger_election(c.now)
    c.deliver(drop=isolate("b"))
    assert a.leader == "c" and a.role is Role.FOLLOWER
    assert a.transfer_outcome("b") is TransferOutcome.OTHER_ELECTED


def test_awaiting_first_answer_of_a_new_learner() -> None:
    c = PureCluster(("a", "b", "c", "d"), voters=ABC)
    a = c.elect("a")
    a.change_config(a.add_server_config("d", False), c.now)
    assert a.awaiting_first_answer("d")
    assert not a.awaiting_first_answer("x")  # not replicated to
    assert not c["b"].awaiting_first_answer("d")  # not the leader
    c.deliver()
    assert not a.awaiting_first_answer("d")  # it answered


def test_awaiting_first_answer_ends_when_the_learner_refuses() -> None:
    """A server of another cluster refuses at its first message: the wait is over, and
    the leader can name that cluster."""
    c = PureCluster(("a", "b", "c", "d"), voters=ABC)
    a = c.elect("a")
    a.change_config(a.add_server_config("d", False), c.now)
    take(a)
    assert a.foreign_identity("d") is None
    a.step(ClusterMismatch("d", "a", a.term, cluster="another"), c.now)
    assert not a.awaiting_first_answer("d")
    assert a.foreign_identity("d") == "another"


def test_unknown_outcomes_are_the_proposals_above_the_commit_index() -> None:
    """A leader that lost its leadership cannot know whether its uncommitted entries
    will be committed by the next leader; the committed ones are applied as usual."""
    c = PureCluster(ABC)
    a = c.elect("a")
    committed = a.propose("x", c.now).index
    c.deliver()
    late = [a.propose(i, c.now).index for i in range(2)]
    take(a)  # lost
    c["b"].trigger_election(c.now)  # a newer term: a steps down at its RequestVote
    a.step(next(m for m in take(c["b"]) if m.dst == "a"), c.now)
    assert a.role is Role.FOLLOWER and a.commit_index == committed
    assert a.unknown_outcomes([committed, *late]) == late
