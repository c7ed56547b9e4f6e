"""The client commands: ``write``, ``read``, ``add``, ``remove``, ``transfer``,
``members`` and ``status``. Each is bounded by ``--timeout`` as a whole; when it gets
nowhere, it says why (see :mod:`.probe`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import trio

from .._client import Client, open_client
from .common import (
    CommandError,
    UsageError,
    cluster,
    json_value,
    say,
    secret,
    tls,
)
from .common import address as checked_address
from .probe import Probe, probe
from .status import status_command

__all__ = ["client_command", "explain"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


async def client_command(args: argparse.Namespace) -> int:
    """Run a client command; its exit status."""
    addresses = cluster(args.cluster)
    reach = {
        "secret": secret(args.secret_file),
        "ssl_context": tls(args.tls_ca, args.tls_cert, args.tls_key, serving=False),
    }
    if args.command == "status":
        return await status_command(args, addresses, reach)
    payload = json_value(args.value, "the value") if args.command in ("write", "read") else None
    probes = [Probe(a) for a in addresses]
    done = False
    with trio.move_on_after(args.timeout):
        async with trio.open_nursery() as nursery:

            def given_up(_: Probe) -> None:
                if all(p.final for p in probes):  # no address can answer: say so now
                    nursery.cancel_scope.cancel()

            for target in probes:
                nursery.start_soon(probe, target, reach, given_up)
            async with open_client(addresses, **reach) as client:
                await _run(args, client, payload)
            done = True
            nursery.cancel_scope.cancel()
    if not done:
        raise CommandError(explain(args.command, probes, args.timeout))
    return 0


async def _run(args: argparse.Namespace, client: Client, payload: Any) -> None:
    command = args.command
    if command == "write":
        say(json.dumps(_jsonable(await client.write(payload))))
    elif command == "read":
        say(json.dumps(_jsonable(await client.read(payload))))
    elif command == "add":
        await client.add_server(args.name, voter=not args.learner, address=args.address)
        say(f"added {args.name} ({args.address}) as {'learner' if args.learner else 'voter'}")
    elif command == "remove":
        await client.remove_server(args.name)
        say(f"removed {args.name}")
    elif command == "transfer":
        say(f"{await client.transfer_leadership(args.name)} leads now")
    elif command == "members":
        voters, addresses = _members(args.voters)
        learners, more = _members(args.learner)
        await client.set_members(voters, learners=learners, addresses={**addresses, **more})
        say(
            f"voters {', '.join(voters)}"
            + (f"; learners {', '.join(learners)}" if learners else "")
        )


def _members(words: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``NAME`` or ``NAME=HOST:PORT`` words: the names, and the addresses given."""
    names, addresses = [], {}
    for word in words:
        name, sep, address = word.partition("=")
        if not name or (sep and not address):
            raise UsageError(f"members takes NAME or NAME=HOST:PORT, got {word!r}")
        if sep:
            addresses[name] = checked_address(address, f"the address of {name}")
        names.append(name)
    return names, addresses


def _unreachable(probes: Sequence[Probe]) -> str:
    return "; ".join(f"{p.address}: {p.problem or 'no answer'}" for p in probes)


def explain(command: str, probes: Sequence[Probe], timeout: float) -> str:
    """Why ``command`` got nowhere, from what the probes found."""
    answered = [p.status for p in probes if p.status is not None]
    silent = [p for p in probes if p.status is None]
    if not answered:
        if all(p.final for p in probes):
            return f"cannot reach the cluster: {_unreachable(probes)}"
        return f"no answer from the cluster within {timeout:g} s: {_unreachable(probes)}"
    others = f"; {_unreachable(silent)}" if silent else ""
    leaders = sorted({s["leader"] for s in answered if s["leader"]})
    term = max(s["term"] for s in answered)
    names = ", ".join(sorted(s["name"] for s in answered))
    if not leaders:
        voters = max(answered, key=lambda s: s["term"])["voters"]
        verb = "answers but knows" if len(answered) == 1 else "answer but know"
        needs = f"; electing one takes a majority of {','.join(voters)}" if voters else ""
        return f"no leader: {names} {verb} no leader (term {term}){needs}{others}"
    maybe = " (the write may or may not take effect)" if command == "write" else ""
    return (
        f"{command} got no answer within {timeout:g} s{maybe}; {names} answered, "
        f"leader {'/'.join(leaders)} (term {term}){others}"
    )
