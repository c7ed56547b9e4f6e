"""MemoryNetwork's delivery times: each message is delivered when its own delay is up,
whatever else is in flight (the receiver waits for the first one due, and a message sent
meanwhile moves that wait only if it is due earlier)."""

from __future__ import annotations

import trio
import trio.testing

from trioraft import MemoryNetwork
from trioraft._core.messages import Heartbeat


async def _arrivals(sends: list[tuple[int, float, float]]) -> list[tuple[float, int]]:
    """Heartbeats from ``a`` to ``b``, each ``(commit, delay, pause)``: sent ``pause``
    seconds after the one before, with that delay. When each arrived (seconds since the
    start), with its commit, in the order they arrived."""
    network = MemoryNetwork(seed=1)
    a, b = network.register("a"), network.register("b")
    start = trio.current_time()
    arrivals: list[tuple[float, int]] = []

    async def receive() -> None:
        while len(arrivals) < len(sends):
            for message in await b.receive_batch():
                assert isinstance(message, Heartbeat)
                arrivals.append((round(trio.current_time() - start, 6), message.commit))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()  # the receiver waits
            for commit, delay, pause in sends:
                await trio.sleep(pause)
                sent_at = trio.current_time()
                network.set_delay(delay, delay)
                a.send(Heartbeat("a", "b", 1, commit))
                # The receiver now waits for the first one due (the clock has not moved).
                await trio.testing.wait_all_tasks_blocked()
                assert trio.current_time() == sent_at
    return arrivals


async def test_each_message_arrives_when_its_own_delay_is_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = await _arrivals([(1, 0.5, 0), (2, 0.1, 0), (3, 0.9, 0), (4, 0.3, 0)])
    # Sent while the receiver waited for another: 2 (and 4) due earlier are not held
    # back until 1 is due, and 3, due later, is not delivered early.
    assert arrivals == [(0.1, 2), (0.3, 4), (0.5, 1), (0.9, 3)]


async def test_a_message_due_at_once_wakes_a_receiver_waiting_for_a_later_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = await _arrivals([(1, 5.0, 0), (2, 0.0, 0.2)])
    assert arrivals == [(0.2, 2), (5.0, 1)]
