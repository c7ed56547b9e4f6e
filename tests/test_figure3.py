"""The shared Figure 3 checks catch each kind of violation (they would otherwise pass
silently over a broken Raft). Nodes are built from hand-made logs with the pure-core
harness."""

from __future__ import annotations

import pytest

from trioraft._core import RaftNode, Role
from trioraft.testing._figure3 import Figure3
from trioraft.testing._pure import command, make_node, persisted


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
