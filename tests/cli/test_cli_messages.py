"""The command line says what went wrong, in the user's words: each client command and
``status``, run in this process against servers of this process on loopback (real
clock, free ports, every wait bounded).

The promises checked: connection refused, an unknown host, something that is not a
trioraft server, and a server that answers but knows no leader each get their own
message (the issue: all four once got "no answer from the cluster ... (unreachable, or
no leader)" after the full timeout); when no address can ever answer, the command gives
up at once (its message says "cannot reach", not "within N s"); ``status`` lists what it
could not reach with the reason and exits 0 when something answered, 1 when nothing did.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import trioraft
from trioraft._cli import parser
from trioraft._cli.client import client_command
from trioraft._cli.common import RUNTIME_ERROR, CommandError
from trioraft._cli.probe import Probe, probe
from trioraft.testing import Counter, free_tcp_ports

#: A host name that never resolves (RFC 6761).
NOWHERE = "nosuchhost.invalid:7000"


async def run_cli(*argv: str) -> int:
    return await client_command(parser().parse_args(list(argv)))


async def not_trioraft(stream: trio.SocketStream) -> None:
    """A server of another protocol on the port: it answers garbage and hangs up."""
    with trio.move_on_after(5):
        await stream.send_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    await stream.aclose()


@pytest.fixture
async def addresses(nursery: trio.Nursery) -> AsyncIterator[dict[str, str]]:
    """A trioraft server that waits to be added (so it answers but knows no leader), a
    server of another protocol, and a port where nothing listens."""
    (refused,) = free_tcp_ports(1)
    async with trioraft.open_tcp_network(listen="127.0.0.1:0", peers={}) as network:
        await trioraft.start_server(
            nursery, Counter, name="lonely", network=network, initial_config=[]
        )
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, not_trioraft, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        yield {
            "lonely": network.listen,
            "http": f"127.0.0.1:{port}",
            "refused": f"127.0.0.1:{refused}",
        }


async def test_refused_and_unknown_host_give_up_at_once(addresses: dict[str, str]) -> None:
    with trio.fail_after(30), pytest.raises(CommandError) as failed:
        await run_cli("write", "--cluster", f"{addresses['refused']},{NOWHERE}", "1")
    assert failed.value.status == RUNTIME_ERROR
    assert str(failed.value) == (
        f"cannot reach the cluster: {addresses['refused']}: connection refused (no server "
        "listening there); nosuchhost.invalid:7000: unknown host 'nosuchhost.invalid'"
    )


async def test_not_a_trioraft_server(addresses: dict[str, str]) -> None:
    with trio.fail_after(30), pytest.raises(CommandError) as failed:
        await run_cli("read", "--cluster", addresses["http"], "--timeout", "1", "null")
    message = str(failed.value)
    assert message.startswith("no answer from the cluster within 1 s: 127.0.0.1:")
    assert "connected, but got no trioraft answer (another program on that port" in message


async def test_no_leader(addresses: dict[str, str]) -> None:
    cluster = f"{addresses['lonely']},{addresses['refused']}"
    with trio.fail_after(30), pytest.raises(CommandError) as failed:
        await run_cli("write", "--cluster", cluster, "--timeout", "1", "5")
    assert str(failed.value) == (
        f"no leader: lonely answers but knows no leader (term 0); {addresses['refused']}: "
        "connection refused (no server listening there)"
    )


async def test_status_marks_what_it_cannot_reach(
    addresses: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = f"{addresses['lonely']},{addresses['refused']}"
    with trio.fail_after(30):
        assert await run_cli("status", "--cluster", cluster, "--timeout", "5") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"lonely ({addresses['lonely']}): follower, term 0, leader unknown, commit 0, "
        "applied 0, voters - (not a member of the configuration)",
        f"{addresses['refused']}: unreachable: connection refused (no server listening there)",
    ]
    with trio.fail_after(30), pytest.raises(CommandError, match=r"^cannot reach the cluster: "):
        await run_cli("status", "--cluster", f"{addresses['refused']},{NOWHERE}")


@pytest.fixture
def frozen_clock() -> trio.testing.MockClock:
    """Time stands still unless every task has waited 5 real seconds (then it jumps to
    the next deadline): whatever finishes at virtual time 0 never waited on a timer."""
    return trio.testing.MockClock(rate=0, autojump_threshold=5)


async def test_a_refused_address_is_known_without_waiting(
    frozen_clock: trio.testing.MockClock,
) -> None:
    """The probe connects at once, beside its status request (the bug: it connected only
    after waiting PROBE_FIRST for a status, so a ``status --timeout 1`` that reached a
    dead member late in its second said "no answer" instead of "connection refused")."""
    (port,) = free_tcp_ports(1)
    target, done = Probe(f"127.0.0.1:{port}"), []
    await probe(target, {"secret": b"s3cret"}, done.append)
    assert done == [target] and target.final and target.status is None
    assert target.problem == "connection refused (no server listening there)"
    assert trio.current_time() == 0  # no timer ran out on the way


async def test_asking_a_running_server_costs_it_no_failed_handshake(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probes look at an address themselves only when its server is slow to
    answer: a running server sees the command's own connection alone, never one that
    closes unauthenticated (which it would count and log as a refused handshake)."""
    async with trioraft.open_tcp_network(listen="127.0.0.1:0", peers={}) as network:
        server = await trioraft.start_server(
            nursery, Counter, name="solo", network=network, initial_config=["solo"]
        )
        with trio.fail_after(30):
            await server.await_leader()
            assert await run_cli("status", "--cluster", network.listen, "--timeout", "5") == 0
            assert await run_cli("write", "--cluster", network.listen, "3") == 0
        assert capsys.readouterr().out.splitlines()[-1] == "3"
        assert network.statistics().auth_failures == 0
