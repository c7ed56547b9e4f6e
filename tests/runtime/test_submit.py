"""``Server.submit``: writes in flight with no task each, their outcomes given to callbacks.

The promises checked (``Server.submit``'s docstring, docs/semantics.rst): a submitted
write is replicated, committed and applied as :meth:`~trioraft.Server.write`'s is
(§5.3), in submission order; its callback is called exactly once, after the Ready that
applied it, with the reply or with the error ``write`` would raise (the state machine's
exception; ``OutcomeUnknown`` when leadership is lost before the entry commits, §5.4.2
and §6.3; ``StoppedOutcomeUnknown`` when the server stops); a callback may submit
again (C writes kept in flight by callbacks alone); a callback that raises is logged
and the server goes on; what ``write`` refuses at once, ``submit`` refuses at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Any

import outcome
import pytest
import trio
import trio.testing

import trioraft
from trioraft import Role
from trioraft.testing import FaultSchedule, open_cluster

from machines import Counter


class Outcomes:
    """The outcomes callbacks received, in the order they came."""

    def __init__(self) -> None:
        self.received: list[tuple[int, Any]] = []
        self.event = trio.Event()
        self.expected = 0

    def callback(self, tag: int) -> Any:
        def done(result: outcome.Outcome[Any]) -> None:
            try:
                self.received.append((tag, result.unwrap()))
            except Exception as exc:
                self.received.append((tag, exc))
            if len(self.received) >= self.expected:
                self.event.set()

        return done


async def test_submitted_writes_are_applied_in_order_and_answered_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§5.3: submitted writes commit and apply on every server, in submission order; each
    callback gets its own reply (the counter after its write), once, after the Ready that
    applied it (not from inside submit); a state machine's exception reaches its callback
    and the next writes go on."""
    async with open_cluster(Counter, 3, seed=11) as cluster:
        leader = await cluster.wait_for_leader()
        seen = Outcomes()
        seen.expected = 6
        indexes = [leader.submit(n, seen.callback(n)) for n in (1, 2, 3)]
        indexes.append(leader.submit("boom", seen.callback(4)))
        indexes += [leader.submit(n, seen.callback(n)) for n in (5, 6)]
        assert seen.received == []  # outcomes come from the server's tasks, later
        assert indexes == list(range(indexes[0], indexes[0] + 6))
        with trio.fail_after(5):
            await seen.event.wait()
        replies = dict(seen.received)
        assert [replies[t] for t in (1, 2, 3, 5, 6)] == [1, 3, 6, 11, 17]
        assert isinstance(replies[4], ValueError)
        assert len(seen.received) == 6
        await trio.sleep(1)
        assert len(seen.received) == 6  # never twice
        for server in cluster.servers.values():
            with trio.fail_after(5):
                while server.machine.value != 17:
                    await trio.sleep(0.01)
            assert server.machine.applied == [1, 2, 3, "boom", 5, 6]


async def test_callbacks_keep_writes_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    """A callback may submit the next write (the benchmark's method: C writes kept in
    flight, each completion starting the next, no task per write): 64 in flight until
    1,000 are done; every reply is distinct and the counter equals the writes applied."""
    async with open_cluster(Counter, 3, seed=12) as cluster:
        leader = await cluster.wait_for_leader()
        replies: list[int] = []
        done = trio.Event()
        total = 1000

        def again(result: outcome.Outcome[Any]) -> None:
            replies.append(result.unwrap())
            submitted = len(replies) + 64
            if submitted <= total:
                leader.submit(1, again)
            elif len(replies) == total:
                done.set()

        for _ in range(64):
            leader.submit(1, again)
        with trio.fail_after(10):
            await done.wait()
        assert sorted(replies) == list(range(1, total + 1))
        assert leader.machine.value == total
        assert leader.statistics().writes_in_flight == 0


async def test_leadership_lost_gives_every_uncommitted_write_an_unknown_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§5.4.2/§6.3: writes submitted to a leader cut off from its followers cannot commit;
    when it learns of a newer leader, each callback gets ``OutcomeUnknown`` (or, for an
    entry a newer leader replaced, ``NotLeader``), once: none is left waiting."""
    async with open_cluster(Counter, 3, seed=13) as cluster:
        old = await cluster.wait_for_leader()
        cluster.isolate(old.name)
        seen = Outcomes()
        seen.expected = 5
        for n in range(5):
            old.submit(1, seen.callback(n))
        with trio.fail_after(10):
            await seen.event.wait()
        assert sorted(tag for tag, _ in seen.received) == [0, 1, 2, 3, 4]
        assert all(
            isinstance(err, (trioraft.OutcomeUnknown, trioraft.NotLeader))
            for _, err in seen.received
        ), seen.received
        await cluster.recover()
        new = await cluster.wait_for_leader()
        with trio.fail_after(5):
            assert await new.write(10) == 10  # none of the five was applied


async def test_stop_gives_pending_writes_their_outcome_and_submit_refuses(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Contract: a server that stops gives every submitted write not yet applied
    ``StoppedOutcomeUnknown``; a callback that raises is logged and the server goes on;
    ``submit`` refuses at once what ``write`` refuses (a follower: ``NotLeader`` naming
    the leader; a stopped server: ``ServerStopped``)."""
    async with open_cluster(Counter, 3, seed=14) as cluster:
        leader = await cluster.wait_for_leader()
        follower = next(s for s in cluster.servers.values() if s is not leader)
        with pytest.raises(trioraft.NotLeader) as info:
            follower.submit(1, lambda result: None)
        assert info.value.leader == leader.name

        def explode(result: outcome.Outcome[Any]) -> None:
            raise RuntimeError("a callback's bug")

        with caplog.at_level(logging.ERROR, logger="trioraft"):
            leader.submit(1, explode)
            with trio.fail_after(5):
                assert await leader.write(1) == 2  # the server went on
        assert "a write's callback raised" in caplog.text

        cluster.isolate(leader.name)  # nothing can commit now
        seen = Outcomes()
        seen.expected = 3
        for n in range(3):
            leader.submit(1, seen.callback(n))
        await leader.stop()
        assert len(seen.received) == 3
        assert all(isinstance(e, trioraft.StoppedOutcomeUnknown) for _, e in seen.received)
        with pytest.raises(trioraft.ServerStopped):
            leader.submit(1, lambda result: None)


SEEDS = range(int(os.environ.get("TRIORAFT_SUBMIT_SEEDS", "6")))
FAULTS = ["partition", "isolate", "isolate_leader", "heal", "loss", "crash", "crash_leader",
          "restart", "recover", "transfer", "trigger_election"]  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
async def test_callbacks_settle_every_write_once_under_faults(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """§5.3, §5.4 and the callback promise, under a random fault schedule (the seed is the
    test's parameter; ``TRIORAFT_SUBMIT_SEEDS=N`` runs more): a pump keeps 16 writes in
    flight with ``submit`` on whoever leads, each write adding its own number. In the
    end every callback was called exactly once; a write answered with a value was
    applied once, and its reply is the total of every write applied up to it; a write
    answered ``NotLeader`` was never applied; no write is applied twice."""
    rng = random.Random(seed)
    async with open_cluster(Counter, 3, seed=seed) as cluster:
        names = list(cluster.servers)
        schedule = FaultSchedule.random(rng, names, duration=6, count=12, kinds=FAULTS)
        outcomes: dict[int, list[Any]] = {}
        unsettled: set[int] = set()

        def settle(write: int) -> Any:
            def done(result: outcome.Outcome[Any]) -> None:
                unsettled.discard(write)
                try:
                    outcomes[write].append(result.unwrap())
                except trioraft.RaftError as exc:
                    outcomes[write].append(exc)

            return done

        async def pump() -> None:
            while trio.current_time() < 7:
                leaders = [s for s in cluster.servers.values() if s.status().role is Role.LEADER]
                with contextlib.suppress(trioraft.NotLeader, trioraft.ServerStopped):
                    while leaders and len(unsettled) < 16:
                        write = len(outcomes) + 1
                        leaders[0].submit(write, settle(write))
                        outcomes[write] = []
                        unsettled.add(write)
                await trio.sleep(0.005)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(schedule.run, cluster)
            nursery.start_soon(pump)
        await cluster.recover()
        with trio.fail_after(30):
            leader = await cluster.wait_for_leader()
            await leader.write(0)  # commits everything of earlier terms that will commit
            while unsettled:
                await trio.sleep(0.01)
        applied = [c for c in leader.machine.applied if c != 0]
        assert len(applied) == len(set(applied)), f"seed {seed}: a write applied twice"
        total, totals = 0, {}
        for write in applied:
            total += write
            totals[write] = total
        for write, got in outcomes.items():
            assert len(got) == 1, f"seed {seed}: write {write} settled {len(got)} times"
            (result,) = got
            if isinstance(result, trioraft.NotLeader):
                assert write not in totals, f"seed {seed}: write {write} NotLeader, applied"
            elif not isinstance(result, trioraft.OutcomeUnknown):
                assert totals.get(write) == result, f"seed {seed}: write {write} -> {result}"
        assert len(outcomes) > 50, f"seed {seed}: only {len(outcomes)} writes submitted"
