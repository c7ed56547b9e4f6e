"""Never stale, never early (issue 22): messages of another term, leader, transfer or
incarnation are never taken for current ones, and the protections of the contract's
"Integrity of snapshots, sessions and reads" hold at their edges.

Core tests drive the pure core by hand (``trioraft.testing._pure``); runtime tests run
servers under the autojump clock (virtual time, no real sleeps).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trioraft
from trioraft._core import Heartbeat, Role, TimeoutNow
from trioraft.testing import open_cluster
from trioraft.testing._pure import PureCluster, take

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
