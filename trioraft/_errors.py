"""The exceptions trioraft raises on purpose. Every one derives from :class:`RaftError`."""

from __future__ import annotations

__all__ = [
    "CatchUpFailed",
    "ChangeInProgress",
    "ConfigChangeInProgress",
    "MalformedMessage",
    "NameInUse",
    "NotLeader",
    "NotVoter",
    "OutcomeUnknown",
    "MachineError",
    "RaftError",
    "ReplyNotEncodable",
    "ServerFailed",
    "SessionExpired",
    "ServerStopped",
    "StoppedOutcomeUnknown",
    "TransferFailed",
    "UnknownServer",
    "WriteNumberReused",
    "WrongCluster",
]


class RaftError(Exception):
    """Base class of every error trioraft raises on purpose."""


class NotLeader(RaftError):
    """A leader-only call reached a server that is not the leader.

    :attr:`leader` is the name of the leader as this server knows it, or ``None`` when
    it knows of none: retry the call there (ExRaft's ``{:error, {:redirect, leader}}``).
    """

    def __init__(self, leader: str | None, message: str | None = None) -> None:
        self.leader = leader
        if message is None:
            message = (
                f"not the leader; the leader is {leader!r}"
                if leader is not None
                else "not the leader, and no leader is known"
            )
        super().__init__(message)


class ServerStopped(RaftError):
    """The server was stopped before or during the call."""


class ServerFailed(ServerStopped):
    """The server stopped itself because an internal invariant broke (a bug in trioraft,
    or a storage or state machine that lies). The message says what happened; the
    original exception is chained. The server's storage is left as it was."""


class OutcomeUnknown(RaftError):
    """The write was appended to the leader's log, but the server cannot know whether it
    will commit: the server lost its leadership (or stopped) before the entry committed.

    The command may or may not be applied by the cluster. Retry it only if it is
    idempotent, or read the state to find out.
    """


class StoppedOutcomeUnknown(ServerStopped, OutcomeUnknown):
    """The server stopped while a write it had appended was still uncommitted.

    It is both a :class:`ServerStopped` and an :class:`OutcomeUnknown`.
    """


class UnknownServer(RaftError, ValueError):
    """A call named a server that is not a member of the cluster (or is unknown)."""


class NameInUse(RaftError, ValueError):
    """A server tried to register on a network under a name that is already taken."""


class NotVoter(RaftError):
    """The call needs a voting member, and this server is not one."""


class ChangeInProgress(RaftError):
    """A membership change was requested while another is under way: an earlier
    single-server change not yet committed (§4.1), or a ``set_members`` change from the
    call until its final configuration commits, catch-up of new servers included."""


#: The former name of :class:`ChangeInProgress` (the same class).
ConfigChangeInProgress = ChangeInProgress


class TransferFailed(RaftError):
    """A leadership transfer did not complete within an election timeout."""


class MalformedMessage(RaftError, ValueError):
    """A message handed to the transport or to a server is not a valid Raft message."""


class CatchUpFailed(RaftError):
    """A server being added as a voter did not catch up with the leader's log in time
    (dissertation §4.2.1): it made no progress for an election timeout, or was still
    behind after ten rounds of replication. It stays in the cluster as a learner: call
    ``add_server`` again to retry the promotion, or ``remove_server`` to drop it."""


class WrongCluster(RaftError):
    """A server belongs to another cluster: its storage holds another cluster's identity
    (it was started with a configuration of its own and led, or on another cluster's
    storage), so it refuses to follow this cluster's leader. Remove it, and add a server
    with empty storage instead."""


class SessionExpired(RaftError):
    """A client's session expired (no activity for ``session_timeout`` seconds of the
    cluster's time) or is unknown to the cluster: the write was not applied. The client
    opens a new session for its later writes."""


class WriteNumberReused(RaftError, ValueError):
    """A client's write reused the number of an earlier write of its session with
    another command (dissertation §6.3: a number names one command). This command was
    not applied; the earlier one was, once. A client numbers each new write anew and
    retries a write only with the same command (:func:`trioraft.open_client` does)."""


class ReplyNotEncodable(RaftError):
    """The state machine applied the write, but its reply cannot be sent to the client
    (over TCP a reply must be a msgpack value, and this one is not: an int past 64
    bits, an object). The command **was applied**: it must not be retried as if it had
    been refused. The message says so and names the reply's type."""


class AuthenticationFailed(RaftError):
    """Every server a client tried refused its authentication: its shared ``secret`` (or
    its TLS certificate) is not the cluster's, or it has one and the cluster has none.
    Raised once each server of the client's list has refused it, with no answer from any
    in between: retrying would only be refused again."""


class MachineError(RaftError):
    """The state machine's ``write`` raised an exception that could not travel as itself
    (a client over TCP): ``type_name`` and ``text`` describe it."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name = type_name
        self.text = text
        super().__init__(f"the state machine raised {type_name}: {text}")


def _public(*classes: type) -> None:
    # Show them as trioraft.NotLeader, not trioraft._errors.NotLeader.
    for cls in classes:
        cls.__module__ = "trioraft"


_public(
    RaftError,
    NotLeader,
    ServerStopped,
    ServerFailed,
    OutcomeUnknown,
    StoppedOutcomeUnknown,
    UnknownServer,
    NameInUse,
    NotVoter,
    ChangeInProgress,
    ConfigChangeInProgress,
    TransferFailed,
    MalformedMessage,
    CatchUpFailed,
    WrongCluster,
    SessionExpired,
    AuthenticationFailed,
    MachineError,
    WriteNumberReused,
    ReplyNotEncodable,
)
