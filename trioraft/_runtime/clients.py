"""A server's side of the client protocol: a plain write through
:meth:`~trioraft.Server.submit` (no task: its answer goes out from the callback), every
other :class:`ClientRequest` in a task of its own.

Owns: decoding a request into a call on the server's handle, and the answer (a value,
or the error as the protocol names it). May not touch: anything but the handle's public
calls and the endpoint it answers through. (:mod:`.serve` hands :func:`serve_request`
to the server's tasks, so that the handle does not import this room, which imports it.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import outcome

from .._core.types import Role
from .._errors import (
    NotLeader,
    OutcomeUnknown,
    RaftError,
    ReplyNotEncodable,
    ServerStopped,
    SessionExpired,
)
from .._network.base import Endpoint
from .._protocol import ClientRequest, ClientResponse
from .._sessions import describe_error
from .records import Status
from .server import Server

__all__ = ["serve_request", "status_dict", "take_request"]

logger = logging.getLogger("trioraft")


class _Invalid(Exception):
    pass


def status_dict(status: Status) -> dict[str, Any]:
    """Every field of a :class:`~trioraft.Status` as msgpack (and JSON) values: the role
    by its name, sets as sorted lists, ``match_index`` as a dict."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(status)):
        value = getattr(status, field.name)
        if isinstance(value, Role):
            value = value.name
        elif isinstance(value, (set, frozenset)):
            value = sorted(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[field.name] = value
    return out


def _with_addresses(status: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    """On TCP, where each member listens as this server knows it (``addresses``): the
    command line's ``status`` asks the members it was not given."""
    address_of = getattr(endpoint, "address_of", None)
    if address_of is not None:
        members = [*status["voters"], *status["learners"]]
        found = {name: address_of(name) for name in members}
        status["addresses"] = {name: where for name, where in found.items() if where}
    return status


async def _dispatch(server: Server, endpoint: Endpoint, request: ClientRequest) -> Any:
    op, payload = request.op, request.payload
    if op == "write":
        if request.session:
            return await server.write_in_session(
                request.session, request.seq, request.lowest, payload
            )
        return await server.write(payload)
    if op == "read":
        return await server.read(payload)
    if op == "open":
        return await server.open_session()
    if op == "status":
        return _with_addresses(status_dict(server.status()), endpoint)
    if op == "add":
        if not (isinstance(payload, list) and len(payload) == 3):
            raise _Invalid("add takes [name, address, voter]")
        name, address, voter = payload
        await server.add_server(name, voter=bool(voter), address=address)
        return None
    if op == "remove":
        await server.remove_server(payload)
        return None
    if op == "transfer":
        return await server.transfer_leadership(payload)
    if op == "members":
        if not (isinstance(payload, list) and len(payload) == 3):
            raise _Invalid("members takes [voters, learners, addresses]")
        voters, learners, addresses = payload
        if not isinstance(addresses, dict):
            raise _Invalid("members' addresses must be a map of names to 'host:port'")
        await server.set_members(voters, learners=learners, addresses=addresses or None)
        return None
    raise _Invalid(f"unknown operation {op!r}")


def take_request(
    server: Server,
    endpoint: Endpoint,
    request: ClientRequest,
    start_soon: Callable[..., None],
) -> None:
    """Take one client request: a write outside a session, on a leader that takes it at
    once, through :meth:`~trioraft.Server.submit` (its answer is sent from the callback:
    no task, no coroutine per write); anything else, or a write that
    :meth:`~trioraft.Server.submit` refuses (not the leader, a transfer under way, a
    command refused), in a task that runs :func:`serve_request`: as
    :meth:`~trioraft.Server.write` would answer it, so that the answer is the same."""
    if request.op == "write" and not request.session:
        try:
            server.submit(request.payload, _Answer(server, endpoint, request))
            return
        except Exception:  # the task's write() says why, as it always did
            pass
    start_soon(serve_request, server, endpoint, request)


class _Answer:
    """The callback of a client's write taken by :meth:`~trioraft.Server.submit`: the
    answer, as :func:`serve_request` sends it."""

    __slots__ = ("endpoint", "request", "server")

    def __init__(self, server: Server, endpoint: Endpoint, request: ClientRequest) -> None:
        self.server = server
        self.endpoint = endpoint
        self.request = request

    def __call__(self, result: outcome.Outcome[Any]) -> None:
        _answer(self.server, self.endpoint, self.request, result)


async def serve_request(server: Server, endpoint: Endpoint, request: ClientRequest) -> None:
    """Carry out one client request on ``server`` and send the answer."""
    result = await outcome.acapture(_dispatch, server, endpoint, request)
    _answer(server, endpoint, request, result)


def _answer(
    server: Server, endpoint: Endpoint, request: ClientRequest, result: outcome.Outcome[Any]
) -> None:
    """Send the answer to ``request`` whose call came to ``result``."""
    remote = getattr(endpoint, "check_value", None)
    try:
        value = result.unwrap()
        if remote is not None:
            _check_reply(remote, request.op, value)
        # The leader as this server knows it: a follower answering a read (follower
        # reads) tells the client who leads, so that client.leader names the leader.
        answer = {"value": value, "leader": server.leader()}
    except NotLeader as exc:
        address_of = getattr(endpoint, "address_of", None)
        where = address_of(exc.leader) if address_of is not None and exc.leader else None
        answer = {
            "error": "not_leader",
            "leader": exc.leader,
            "message": str(exc),
            "leader_address": where or "",
        }
    except OutcomeUnknown as exc:
        answer = {"error": "unknown", "message": str(exc)}
    except ServerStopped as exc:
        answer = {"error": "unavailable", "message": str(exc)}
    except SessionExpired as exc:
        answer = {"error": "session_expired", "message": str(exc)}
    except _Invalid as exc:
        answer = {"error": "invalid", "message": str(exc)}
    except RaftError as exc:
        answer = {"error": "raft", "message": f"{type(exc).__name__}: {exc}"}
    except TypeError as exc:
        if request.op in ("write", "read") and "msgpack" in str(exc):
            answer = {"error": "type", "message": str(exc)}
        else:
            answer = _machine_error(exc, remote is not None)
    except Exception as exc:
        answer = _machine_error(exc, remote is not None)
    response = ClientResponse(server.name, request.src, 0, request.request_id, **answer)
    try:
        endpoint.send(response)
    except Exception as exc:  # a closed endpoint, an unencodable reply: say so, go on
        logger.debug("%s: could not answer %r: %r", server.name, request.src, exc)


def _check_reply(check: Callable[[Any], None], op: str, value: Any) -> None:
    """Raise unless the network can carry ``value``, the reply to a client's ``op``. A
    write's reply comes after the command was applied: that is said, never a TypeError
    that would read like a refusal (a client that retries would apply it again)."""
    try:
        check(value)
    except TypeError as exc:
        if op != "write":
            raise
        raise ReplyNotEncodable(
            f"the command was applied, but its reply cannot be sent to the client: {exc}. "
            "Do not retry it as if it had been refused: it would be applied again"
        ) from None


def _machine_error(exc: Exception, remote: bool) -> dict[str, Any]:
    # The state machine's own exception (write or validate raised): to the caller, once.
    return {"error": "machine", "value": describe_error(exc) if remote else exc}
