"""The client protocol: what clients and servers say to each other (not Raft messages).

A client sends a :class:`ClientRequest` to a server, over any transport, under a name of
its own; the server answers with a :class:`ClientResponse` naming the request. Writes
carry the client's session (dissertation §6.3): the session's id, the write's sequence
number and the lowest sequence number the client has not yet seen answered, so the
cluster applies each write at most once and forgets replies once acknowledged.
"""

from __future__ import annotations

from typing import Any, Final

from ._core.messages import Message
from ._core.record import fields

__all__ = ["OPS", "ClientRequest", "ClientResponse"]

#: What a client may ask: open a session, write, read, and the operator's commands.
OPS = ("open", "write", "read", "status", "add", "remove", "transfer", "members")


class ClientRequest(Message):
    """A client's request. ``op`` is one of :data:`OPS`; ``payload`` the command, the
    query, or the operator command's arguments."""

    __slots__ = ("lowest", "op", "payload", "request_id", "seq", "session")
    FIELDS = fields(
        *Message.FIELDS,
        ("request_id", int), ("op", str), ("session", int), ("seq", int), ("lowest", int),
        ("payload", Any),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, request_id: int, op: str, session: int = 0,
        seq: int = 0, lowest: int = 0, payload: Any = None, *, cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.request_id: Final = request_id
        self.op: Final = op
        self.session: Final = session
        self.seq: Final = seq
        self.lowest: Final = lowest
        self.payload: Final = payload


class ClientResponse(Message):
    """A server's answer to a :class:`ClientRequest`.

    ``error`` is empty on success (``value`` holds the reply), else one of
    ``"not_leader"`` (retry at ``leader``), ``"session_expired"``, ``"unknown"`` (the
    outcome is unknown: retry with the same sequence number), ``"machine"`` (the state
    machine raised: ``value`` is the exception, or ``[type, text]`` over a network),
    ``"invalid"`` (a bad request: ``message`` says why) or ``"unavailable"`` (try
    another server). ``leader_address`` is the leader's address, when the server knows
    it (a client over TCP goes there)."""

    __slots__ = ("error", "leader", "leader_address", "message", "request_id", "value")
    FIELDS = fields(
        *Message.FIELDS,
        ("request_id", int), ("error", str), ("value", Any), ("leader", str | None),
        ("message", str), ("leader_address", str),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, request_id: int, error: str = "", value: Any = None,
        leader: str | None = None, message: str = "", leader_address: str = "", *,
        cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.request_id: Final = request_id
        self.error: Final = error
        self.value: Final = value
        self.leader: Final = leader
        self.message: Final = message
        self.leader_address: Final = leader_address
