"""``status``: a line per member of the configuration (the members it was not given
too, found through those that answer), a member that does not answer marked
unreachable with the reason; then the addresses given that are no member."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import trio

from .common import CommandError, role_name, say
from .probe import Probe, probe

__all__ = ["status_command", "status_line"]


def _configuration(probes: Mapping[str, Probe]) -> dict[str, Any] | None:
    """The status whose configuration counts: a leader's, else the latest one's."""
    answered = [p.status for p in probes.values() if p.status is not None]
    if not answered:
        return None
    return max(answered, key=lambda s: (s["role"] == "LEADER", s["term"], s["commit_index"]))


async def _ask_everyone(
    addresses: list[str], reach: dict[str, Any], timeout: float
) -> dict[str, Probe]:
    """Probe the addresses given, then the members their answers name, until every
    probe is done or ``timeout`` passes."""
    probes = {a: Probe(a) for a in addresses}
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:

            def answered(target: Probe) -> None:
                for where in (target.status or {}).get("addresses", {}).values():
                    if where not in probes:  # a member it was not given
                        probes[where] = Probe(where)
                        nursery.start_soon(probe, probes[where], reach, answered)

            for target in probes.values():
                nursery.start_soon(probe, target, reach, answered)
    return probes


async def status_command(
    args: argparse.Namespace, addresses: list[str], reach: dict[str, Any]
) -> int:
    """Print each member's status (or why it did not answer); exit status 1 if none
    answered."""
    probes = await _ask_everyone(addresses, reach, args.timeout)
    config = _configuration(probes)
    if config is None:
        problems = "; ".join(f"{p.address}: {p.problem or 'no answer'}" for p in probes.values())
        raise CommandError(f"cannot reach the cluster: {problems}")
    where = {p.status["name"]: p.address for p in reversed(probes.values()) if p.status}
    known = {**config.get("addresses", {}), **where}
    members = sorted({*config["voters"], *config["learners"]})
    shown: set[str] = set()
    for name in members:
        address = known.get(name)
        _print(args.json, name, address, _probe_of(name, address, probes))
        if address is not None:
            shown.add(address)
    for other in probes.values():  # the addresses given that are no member
        name = None if other.status is None else other.status["name"]
        if other.address not in shown and name not in members:
            _print(args.json, name, other.address, other, member=False)
    return 0


def _probe_of(name: str, address: str | None, probes: Mapping[str, Probe]) -> Probe | None:
    """The probe of member ``name`` at ``address`` (``None``: none, or another server
    answered there)."""
    found = probes.get(address) if address is not None else None
    if found is not None and found.status is not None and found.status["name"] != name:
        return None
    return found


def _print(
    as_json: bool, name: str | None, address: str | None, target: Probe | None, member: bool = True
) -> None:
    status = None if target is None else target.status
    if status is not None:
        if as_json:
            say(json.dumps({**status, "address": address}))
        else:
            note = "" if member else " (not a member of the configuration)"
            say(status_line(status, str(address), note))
        return
    reason = (target.problem if target is not None else None) or "no answer"
    if address is None:
        reason = "its address is unknown"
    if as_json:
        say(
            json.dumps({"name": name, "address": address, "error": "unreachable", "reason": reason})
        )
    else:
        label = f"{name} ({address})" if name and address else (name or address)
        say(f"{label}: unreachable: {reason}")


def status_line(status: dict[str, Any], address: str, note: str = "") -> str:
    """One server's status, as ``status`` prints it."""
    role = role_name(status["role"])
    leader = status["leader"] or "unknown"
    learners = status["learners"]
    return (
        f"{status['name']} ({address}): {role}, term {status['term']}, leader {leader}, "
        f"commit {status['commit_index']}, applied {status['last_applied']}, "
        f"voters {','.join(status['voters']) or '-'}"
        + (f", learners {','.join(learners)}" if learners else "")
        + note
    )
