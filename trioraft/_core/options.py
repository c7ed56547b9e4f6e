"""The Raft core's options, validated once, with clear errors."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["CoreOptions", "check_clock_drift", "check_known", "check_seconds", "lease_length"]


def server_names(value: Any, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of server names (non-empty strings, each once);
    ``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, (str, bytes)):
        raise ValueError(
            f"{what} must be an iterable of server names, not the single string {value!r}"
        )
    if not isinstance(value, Iterable):
        raise ValueError(f"{what} must be an iterable of server names, got {value!r}")
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} holds an invalid server name: {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a server twice: {names!r}")
    return tuple(names)


def _config_names(value: Any) -> tuple[str, ...]:
    return server_names(value, "initial_config")


def check_seconds(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a positive, finite number of
    seconds (the one check of every duration trioraft takes)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def check_clock_drift(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name``: a bound (or a spread) of
    clock rates around 1, from 0 up to (not including) 1, so that rates stay positive."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 <= value < 1)  # also refuses nan
    ):
        raise ValueError(
            f"{name} must be a number from 0 up to (not including) 1 (how far a clock's "
            f"rate may stray from real time's), got {value!r}"
        )
    return float(value)


def lease_length(options: CoreOptions) -> float:
    """How long a leader's lease lasts on its own clock, from the send time of a
    quorum-acknowledged round (§6.4.1; docs/semantics.rst derives it).

    A voter that acknowledged the round refuses other candidates for
    ``min_election_timeout`` of *its* clock after it received it: with its clock at
    most ``1 + d`` times real time, that is at least ``min_election_timeout / (1 + d)``
    real seconds after the round was sent. The lease must end by then in real time, on
    a leader clock that may run as slow as ``1 - d``: so it lasts
    ``min_election_timeout * (1 - d) / (1 + d)`` of the leader's clock
    (``d = max_clock_drift``)."""
    drift = options.max_clock_drift
    return options.min_election_timeout * (1 - drift) / (1 + drift)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class CoreOptions:
    """The options that shape Raft's decisions (the core's); :class:`trioraft.ServerOptions`
    adds the runtime's. Every value is checked when the object is built."""

    #: Names of the voting members at start. A server not in it never starts an election.
    initial_config: tuple[str, ...] = attrs.field(default=(), converter=_config_names)
    #: Quorum floor: quorum = max(min_majority or 0, len(voters) // 2 + 1).
    min_majority: int | None = None
    #: Election timeouts are drawn uniformly from [min_election_timeout, max_election_timeout].
    min_election_timeout: float = 0.15
    #: Upper bound of the election timeout range (see ``min_election_timeout``).
    max_election_timeout: float = 0.30
    #: How often a leader sends to an idle follower.
    heartbeat_interval: float = 0.05
    #: PreVote (dissertation §9.6): a server only becomes a candidate once a quorum would vote.
    pre_vote: bool = True
    #: CheckQuorum: a leader that has not heard from a quorum for an election timeout
    #: steps down, and voters ignore elections while they hear from a leader (§4.2.3, §6.2).
    check_quorum: bool = True
    #: Most entries in one AppendEntries message.
    max_entries_per_message: int = 2048
    #: Most unacknowledged AppendEntries messages (or snapshot chunks) in flight to one
    #: follower.
    max_inflight: int = 8
    #: Once this many entries have been applied since the last snapshot, the server
    #: snapshots its state machine and compacts its log (dissertation §5).
    snapshot_threshold: int = 10_000
    #: Entries kept behind a snapshot, so a briefly slow follower catches up from the log.
    snapshot_trailing: int = 1_000
    #: Most bytes of a snapshot in one InstallSnapshot message.
    snapshot_chunk_size: int = 1 << 20
    #: ``read()`` on a follower is linearizable too: it asks the leader for a read index
    #: (§6.4), waits until it has applied that far, and answers locally.
    follower_reads: bool = False
    #: The leader answers reads without a heartbeat round while its lease holds (§6.4.1):
    #: from the send time of a quorum-acknowledged round, for ``min_election_timeout``
    #: less a clock-drift margin (:func:`lease_length`). Needs ``check_quorum``.
    lease_reads: bool = False
    #: Lease reads stay linearizable while every server's clock runs at a rate within
    #: ``1 ± max_clock_drift`` of real time: the lease is shortened to match
    #: (:func:`lease_length`). From 0 up to, not including, 1.
    max_clock_drift: float = 0.05

    def __attrs_post_init__(self) -> None:
        if self.min_majority is not None:
            _positive_int("min_majority", self.min_majority)
        check_seconds("min_election_timeout", self.min_election_timeout)
        check_seconds("max_election_timeout", self.max_election_timeout)
        check_seconds("heartbeat_interval", self.heartbeat_interval)
        if self.min_election_timeout > self.max_election_timeout:
            raise ValueError(
                f"min_election_timeout ({self.min_election_timeout}) is above "
                f"max_election_timeout ({self.max_election_timeout})"
            )
        if self.heartbeat_interval >= self.min_election_timeout:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval}) must be below "
                f"min_election_timeout ({self.min_election_timeout}), or followers "
                "would start elections against a healthy leader"
            )
        _positive_int("max_entries_per_message", self.max_entries_per_message)
        _positive_int("max_inflight", self.max_inflight)
        _positive_int("snapshot_threshold", self.snapshot_threshold)
        _positive_int("snapshot_chunk_size", self.snapshot_chunk_size)
        trailing = self.snapshot_trailing
        if isinstance(trailing, bool) or not isinstance(trailing, int) or trailing < 0:
            raise ValueError(f"snapshot_trailing must be an integer >= 0, got {trailing!r}")
        check_clock_drift("max_clock_drift", self.max_clock_drift)
        for flag in ("pre_vote", "check_quorum", "follower_reads", "lease_reads"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if self.lease_reads and not self.check_quorum:
            raise ValueError(
                "lease_reads needs check_quorum: without it, voters do not refuse elections "
                "while a leader's lease holds, and a lease read could be stale"
            )

    def core(self) -> CoreOptions:
        """Just the core's options."""
        if type(self) is CoreOptions:
            return self
        names = [a.name for a in attrs.fields(CoreOptions)]
        return CoreOptions(**{name: getattr(self, name) for name in names})


def check_known(cls: type, options: dict[str, Any]) -> None:
    """Raise a clear ``ValueError`` naming any option ``cls`` (an attrs class) lacks."""
    known = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown server option(s) {', '.join(map(repr, unknown))}; "
            f"valid options are {', '.join(sorted(known))}"
        )
