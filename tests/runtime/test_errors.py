"""Bad input gets a clear exception naming the problem, changes nothing, and leaves the
server running.

The promises of docs/semantics.rst ("Options", "Membership changes", "Errors") and of the
API contract ("The in-memory network"): invalid options, names and network fault
arguments, refused membership changes and elections, and malformed messages.
"""

from __future__ import annotations

import enum

import pytest
import trio
import trio.testing

import trioraft
from trioraft._codec import check_value
from trioraft._core.messages import AppendEntries, Heartbeat, Message
from trioraft.testing import Partition, free_tcp_ports, open_cluster, run

from machines import Counter


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"bogus": 1}, "unknown server option(s) 'bogus'"),
        ({"min_election_timeout": 0.5, "max_election_timeout": 0.2}, "min_election_timeout"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": -1.0}, "heartbeat_interval"),
        ({"heartbeat_interval": 0.2}, "must be below min_election_timeout"),
        ({"min_majority": 0}, "min_majority"),
        ({"min_majority": 1.5}, "min_majority"),
        ({"initial_config": "raft1"}, "single string"),
        ({"initial_config": ["a", "a"]}, "twice"),
        ({"initial_config": ["a", 3]}, "invalid server name"),
        ({"seed": "x"}, "seed"),
        ({"storage": {}}, "MemoryStorage"),
        ({"max_inflight": 0}, "max_inflight"),
    ],
)
async def test_invalid_options(options: dict[str, object], words: str) -> None:
    """Contract (semantics, "Options"): an unknown option or an invalid value raises ValueError
    naming it before the server starts, and leaves nothing registered on the network."""
    network = trioraft.MemoryNetwork()
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            await trioraft.start_server(nursery, Counter, name="a", network=network, **options)
    assert network.servers == ()  # nothing was left registered


async def test_invalid_name_and_duplicate_name() -> None:
    """Contract: an empty name raises ValueError; a second server under the name of a running
    one raises NameInUse naming it."""
    network = trioraft.MemoryNetwork()
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError, match="name"):
            await trioraft.start_server(nursery, Counter, name="", network=network)
        await trioraft.start_server(nursery, Counter, name="a", network=network)
        with pytest.raises(trioraft.NameInUse, match="'a'"):
            await trioraft.start_server(nursery, Counter, name="a", network=network)
        nursery.cancel_scope.cancel()


def test_network_fault_arguments_are_checked() -> None:
    """Contract (API, "The in-memory network"): ``set_loss``, ``set_delay``, ``partition`` and
    the seed reject invalid arguments with a ValueError that says what is wrong."""
    network = trioraft.MemoryNetwork(seed=1)
    with pytest.raises(ValueError, match="loss rate"):
        network.set_loss(1.5)
    with pytest.raises(ValueError, match="delays"):
        network.set_delay(-1, 0)
    with pytest.raises(ValueError, match="above"):
        network.set_delay(0.3, 0.1)
    with pytest.raises(ValueError, match="single name"):
        network.partition("a", "b")
    with pytest.raises(ValueError, match="more than one"):
        network.partition(["a", "b"], ["b"])
    with pytest.raises(ValueError, match="seed"):
        trioraft.MemoryNetwork(seed="x")  # type: ignore[arg-type]


async def test_a_single_string_where_names_are_expected_is_refused() -> None:
    """A string is an iterable of letters: open_client("raft1"), open_cluster(M, "abc")
    and Partition(at, "ab") used to wait for servers r, a, f, t, 1 or to start servers
    a, b, c. Each now raises a ValueError that says how to write it."""
    network = trioraft.MemoryNetwork(seed=1)
    with pytest.raises(ValueError, match=r"not the single string 'raft1' \(write \['raft1'\]\)"):
        async with trioraft.open_client("raft1", network=network):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="not the single string 'abc'"):
        async with open_cluster(Counter, "abc", seed=1):
            pass
    with pytest.raises(ValueError, match="not the single string 'ab'"):
        Partition(1.0, "ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single name 'a'"):
        Partition(1.0, ["a", ["b", "c"]])  # type: ignore[list-item]
    assert Partition(1.0, [["a"], ["b", "c"]]).describe() == "partition [a] | [b c]"


async def test_arguments_of_the_wrong_kind_are_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each used to fail later, or inside the library, or not at all: a network that is
    not one (AttributeError 'register'), voter="no" (added a voter), a callback that is
    not callable (the write applied, its outcome lost), an IntEnum command on a network
    that needs msgpack values (called an integer over 64 bits)."""
    network = trioraft.MemoryNetwork(seed=1)
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match="network must be a Transport"):
            await trioraft.start_server(nursery, Counter, name="a", network=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"network must be a trioraft\.MemoryNetwork"):
            async with open_cluster(Counter, 3, seed=1, network="x"):  # type: ignore[arg-type]
                pass
        a = await trioraft.start_server(
            nursery, Counter, name="a", network=network, initial_config=["a"]
        )
        await a.await_leader()
        with pytest.raises(TypeError, match="voter must be True or False, got 'no'"):
            await a.add_server("b", voter="no")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callback must be callable, got None"):
            a.submit(1, None)  # type: ignore[arg-type]
        assert a.status().voters == frozenset({"a"}) and not a.status().learners
        assert await a.write(1) == 1  # nothing of the above was applied
        nursery.cancel_scope.cancel()

    class Color(enum.IntEnum):
        RED = 1

    with pytest.raises(TypeError, match=r"cannot encode a .*Color: values stored or sent"):
        check_value(Color.RED)
    with pytest.raises(TypeError, match="peers must be a mapping"):
        async with trioraft.open_tcp_network(listen="127.0.0.1:0", peers=["b"]):  # type: ignore[arg-type]
            pass


@pytest.mark.parametrize("interval", [0, -1.0, "0.1", True])
async def test_open_cluster_refuses_an_invalid_check_interval(interval: object) -> None:
    """check_interval=0 used to livelock the run (the invariant loop slept 0 forever, so
    the virtual clock never moved); a negative one failed later, naming Trio's sleep."""
    with pytest.raises(ValueError, match="check_interval must be a positive number"):
        async with open_cluster(Counter, 3, seed=1, check_interval=interval):  # type: ignore[arg-type]
            pass


async def test_membership_errors_change_nothing(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (membership.rst, "Rules and errors"): removing or transferring to an unknown
    server (UnknownServer), adding an existing voter or an empty name (ValueError) leave the
    configuration and the log as they were."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=1) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        before = leader.status()
        with pytest.raises(trioraft.UnknownServer, match="'zed'"):
            await leader.remove_server("zed")
        with pytest.raises(ValueError, match="already a voter"):
            await leader.add_server("b")
        with pytest.raises(trioraft.UnknownServer, match="'zed'"):
            await leader.transfer_leadership("zed")
        with pytest.raises(ValueError, match="non-empty"):
            await leader.add_server("")
        after = leader.status()
        assert (after.voters, after.learners, after.last_log_index) == (
            before.voters,
            before.learners,
            before.last_log_index,
        )


async def test_one_membership_change_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    """§4.1: one change at a time: while a change is uncommitted (the leader is cut off), a
    second one raises ConfigChangeInProgress."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=2) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        for name in cluster.names:
            if name != leader.name:
                cluster.network.isolate(name)  # the first change cannot commit
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader.add_server, "d")
            await trio.sleep(0.01)
            with pytest.raises(trioraft.ConfigChangeInProgress):
                await leader.add_server("e")
            nursery.cancel_scope.cancel()


async def test_remove_last_voter_refused(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (semantics, "Membership changes"): removing the last voter raises ValueError,
    and the configuration is unchanged."""
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        solo = await trioraft.start_server(
            nursery, Counter, name="solo", network=network, initial_config=["solo"]
        )
        await solo.await_leader()
        with pytest.raises(ValueError, match="last voter"):
            await solo.remove_server("solo")
        assert solo.status().voters == {"solo"}
        nursery.cancel_scope.cancel()


async def test_trigger_election_on_non_voter(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (semantics, "Errors"): trigger_election on a server that is not a voter raises
    NotVoter naming it, and its term stays 0."""
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        outsider = await trioraft.start_server(nursery, Counter, name="x", network=network)
        with pytest.raises(trioraft.NotVoter, match="'x'"):
            await outsider.trigger_election()
        assert outsider.status().term == 0
        nursery.cancel_scope.cancel()


async def test_malformed_messages_do_not_crash_a_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Contract (semantics, "Errors", MalformedMessage): a server drops a message of unknown
    type, one addressed to another server and one with an invalid term, and keeps working;
    an endpoint refuses to send a non-message or a message from another server."""
    async with open_cluster(Counter, 3, seed=3) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        follower = next(s for s in cluster.servers.values() if s is not leader)
        endpoint = cluster.network._endpoints[follower.name]
        now = trio.current_time()

        # A message of no type the core knows (the base class), one for another
        # server, a bad term.
        endpoint._put(now, now, Message(leader.name, follower.name, 1))
        endpoint._put(now, now, Heartbeat(leader.name, "elsewhere", 1, 0))
        endpoint._put(now, now, AppendEntries(leader.name, follower.name, -5, 0, 0, (), 0))
        await trio.sleep(0.1)
        assert not follower.stopped
        assert await leader.write(3) == 3
        with pytest.raises(trioraft.MalformedMessage):
            endpoint.send("not a message")  # type: ignore[arg-type]
        with pytest.raises(trioraft.MalformedMessage, match="cannot send"):
            endpoint.send(Heartbeat(leader.name, follower.name, 1, 0))


class _RaisingHooks(Counter):
    """A counter whose optional hooks all raise."""

    def on_role_change(self, role: trioraft.Role) -> None:
        raise RuntimeError("role hook broke")

    def on_membership_change(self, voters: frozenset[str], learners: frozenset[str]) -> None:
        raise RuntimeError("membership hook broke")


async def test_a_raising_hook_is_logged_and_the_server_keeps_serving(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/quickstart.rst (the optional hooks): what a hook raises is logged with the
    hook's name, and never stops the server or reaches the caller."""
    async with open_cluster(_RaisingHooks, ["a", "b", "c"], seed=1) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
            assert await leader.write(2) == 2
            await leader.remove_server(next(n for n in "abc" if n != leader.name))
            assert await leader.write(3) == 5
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("on_role_change(") and "raised" in m for m in logged)
    assert any(m.startswith("on_membership_change(") and "raised" in m for m in logged)


def test_the_testing_toolkit_names_bad_arguments_at_once() -> None:
    """run(hang_timeout="5") ran unguarded and nan, 0 or -1 cancelled the run at once;
    free_tcp_ports(1.5) gave 2 ports, and a host that is not this machine's tried every
    port (an open socket each, and a DNS lookup for a name) instead of failing."""
    for bad in ("5", float("nan"), 0, -1, True):
        with pytest.raises(ValueError, match="hang_timeout must be a positive number"):
            run(trio.sleep, 0, seed=1, hang_timeout=bad)  # type: ignore[arg-type]
    assert run(trio.sleep, 0, seed=1, hang_timeout=30) is None
    with pytest.raises(ValueError, match="count must be an integer"):
        free_tcp_ports(1.5)  # type: ignore[arg-type]
    # An address of no interface here (TEST-NET-1, RFC 5737): no DNS lookup needed.
    with pytest.raises(OSError, match=r"cannot bind a TCP port of '192\.0\.2\.1'"):
        free_tcp_ports(1, host="192.0.2.1")
    assert len(set(free_tcp_ports(3))) == 3
