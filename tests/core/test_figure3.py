"""The shared Figure 3 checks catch each kind of violation (they would otherwise pass
silently over a broken Raft). Nodes are built from hand-made logs with the pure-core
harness; Membership Safety also over a pure cluster whose leader skips the joint phase
of a change of two voters."""

from __future__ import annotations

import pytest

from trioraft._core import Config, Entry, EntryKind, RaftNode, Role
from trioraft._core.ready import HardState, PersistedState
from trioraft.testing._figure3 import Figure3
from trioraft.testing._pure import PureCluster, command, make_node, persisted


def checker() -> Figure3:
    def fail(message: str) -> None:
        raise AssertionError(message)

    return Figure3(fail)


def node(name: str, terms: list[int], commit: int, term: int | None = None) -> RaftNode:
    return make_node(name, storage=persisted(terms, commit=commit, term=term or 0))


def test_election_safety() -> None:
    f = checker()
    f.leader("a", 3)
    f.leader("a", 3)  # the same leader, seen again: fine
    with pytest.raises(AssertionError, match="Election Safety violated: 'a' and 'b'"):
        f.leader("b", 3)


def test_state_machine_safety() -> None:
    f = checker()
    f.commits("a", node("a", [1, 1], commit=2))
    with pytest.raises(AssertionError, match="State Machine Safety violated: 'b'"):
        f.commits("b", node("b", [1, 2], commit=2))


def test_log_matching() -> None:
    f = checker()
    a = node("a", [1, 1, 2], commit=0)
    b = node("b", [1, 1, 2], commit=0)
    f.log_matching("a", a, "b", b)  # identical: fine
    forged = node("c", [1, 3, 2], commit=0)  # agrees at 3 (term 2), differs at 2
    with pytest.raises(AssertionError, match="Log Matching violated between 'a' and 'c'"):
        f.log_matching("a", a, "c", forged)


def test_leader_completeness() -> None:
    f = checker()
    f.commits("a", node("a", [1, 1, 1], commit=3, term=1))
    lacking = node("b", [1, 1], commit=2, term=2)
    lacking.role = Role.LEADER
    with pytest.raises(AssertionError, match="Leader Completeness violated: 'b'"):
        f.check([("b", lacking)])


def test_leader_append_only() -> None:
    f = checker()
    leader = node("a", [1, 1, 2], commit=1, term=2)
    leader.role = Role.LEADER
    f.check([("a", leader)])
    leader.log.truncate_after(2)  # a leader that deletes its own last entry
    with pytest.raises(AssertionError, match="Leader Append-Only violated: 'a'"):
        f.check([("a", leader)])
    f = checker()
    f.check([("a", leader)])
    leader.log.truncate_after(1)
    leader.log.append(command(2, 2))  # or overwrites one with another term's
    with pytest.raises(AssertionError, match="Leader Append-Only violated: 'a'"):
        f.check([("a", leader)])


def configured(name: str, *configs: Config | None, compacted: int = 0) -> RaftNode:
    """A node whose log holds one entry of term 1 for each of ``configs``: that
    configuration, or a command for ``None``; all committed, the first ``compacted``
    compacted away."""
    entries = tuple(
        command(index, 1) if config is None else Entry(1, index, EntryKind.CONFIG, config)
        for index, config in enumerate(configs, start=1)
    )
    hard = HardState(1, None, len(entries))
    node = make_node(name, storage=PersistedState(hard_state=hard, entries=entries))
    if compacted:
        node.log.compact(compacted, 1)
    return node


ABC = Config(voters=["a", "b", "c"])
LEARNING = Config(voters=["a", "b", "c"], learners=["d", "e"])
JOINT = Config(voters=["a", "d", "e"], outgoing=["a", "b", "c"])
ADE = Config(voters=["a", "d", "e"])


def test_membership_safety_accepts_the_changes_raft_makes() -> None:
    """One voter at a time, learners, and C_old -> C_old,new -> C_new (or back to C_old)
    pass; the configurations committed are recorded by index."""
    f = checker()
    chain = [ABC, LEARNING, Config(voters=["a", "b", "c", "d"], learners=["e"]), None]
    chain += [Config(voters=["a", "b", "c", "d"], outgoing=["a", "b", "c", "d"])]  # same sets
    chain += [Config(voters=["a", "b", "c", "d"]), LEARNING, JOINT, ADE]
    f.commits("a", configured("a", *chain))
    assert sorted(f.configs) == [1, 2, 3, 5, 6, 7, 8, 9]
    checker().commits("b", configured("b", LEARNING, JOINT, LEARNING))  # back to C_old


def test_membership_safety_violations() -> None:
    """Two voters changed without C_old,new; C_old,new entered from other voters; left
    for voters of neither set; followed by another joint configuration."""
    other_joint = Config(voters=["a", "d", "f"], outgoing=["a", "b", "c"])
    for chain, words in (
        ((ABC, None, ADE), "changes more than one voter without a joint configuration"),
        ((LEARNING, Config(voters=["a", "d", "e"], outgoing=["a", "b", "d"])), "outgoing"),
        ((LEARNING, JOINT, Config(voters=["a", "b"])), "for voters of neither of its sets"),
        ((LEARNING, JOINT, other_joint), "follows another joint configuration"),
    ):
        f = checker()
        with pytest.raises(AssertionError, match=f"Membership Safety violated: .*{words}"):
            f.commits("a", configured("a", *chain))


def test_membership_safety_compares_only_configurations_with_nothing_unseen_between() -> None:
    """A server that compacted its log away reports a configuration whose predecessor may
    be among the entries nobody was seen to commit: it is not compared across that gap;
    once the gap is seen, it is."""
    f = checker()
    f.commits("a", configured("a", ABC))
    f.commits("b", configured("b", ABC, None, ADE, compacted=2))  # index 2 unseen
    assert sorted(f.configs) == [1, 3]
    with pytest.raises(AssertionError, match=r"Membership Safety violated: .* index 3"):
        f.commits("c", configured("c", ABC, None, ADE))


def test_a_leader_that_skips_the_joint_phase_is_caught() -> None:
    """A leader (of the pure core) that swaps two voters in one configuration entry, as
    a core without joint consensus would, commits it: Membership Safety reports it."""
    c = PureCluster(["a", "b", "c", "d", "e"], voters=["a", "b", "c"], seed=11)
    leader = c.elect("a")
    leader._append_config(LEARNING)
    c.deliver(heartbeat=True)
    f = checker()
    f.check((name, c[name]) for name in c.names)  # fine so far
    leader._append_config(ADE)  # b and c out, d and e in: no C_old,new
    c.deliver(heartbeat=True)
    with pytest.raises(AssertionError, match="Membership Safety violated"):
        f.check((name, c[name]) for name in c.names)
