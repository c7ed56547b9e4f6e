"""Server options, validated once, with clear errors."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["ServerOptions"]


def _config_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise ValueError(
            f"initial_config must be an iterable of server names, not the single string {value!r}"
        )
    if not isinstance(value, Iterable):
        raise ValueError(f"initial_config must be an iterable of server names, got {value!r}")
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"initial_config holds an invalid server name: {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"initial_config names a server twice: {names!r}")
    return tuple(names)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class ServerOptions:
    """Every option a server takes (``trioraft.start_server(..., **options)``).

    Construct with :meth:`from_kwargs` to get a :class:`ValueError` naming any unknown
    option; every value is checked when the object is built.
    """

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
    #: Seed of this server's random number generator (election timeouts).
    seed: int | None = None
    #: A ``MemoryStorage`` to use (or to restart from); a new one when ``None``.
    storage: Any = None
    #: PreVote (dissertation §9.6): a server only becomes a candidate once a quorum would vote.
    pre_vote: bool = True
    #: CheckQuorum: a leader that has not heard from a quorum for an election timeout
    #: steps down, and voters ignore elections while they hear from a leader (§4.2.3, §6.2).
    check_quorum: bool = True
    #: Most entries in one AppendEntries message.
    max_entries_per_message: int = 2048
    #: Most unacknowledged AppendEntries messages in flight to one follower.
    max_inflight: int = 8
    #: Runtime only: ``tracer(event)`` is called with a :class:`~trioraft.TraceEvent` for
    #: each role/term change, commit and apply of this server (see ``trioraft.testing``).
    tracer: Any = None

    def __attrs_post_init__(self) -> None:
        if self.min_majority is not None:
            _positive_int("min_majority", self.min_majority)
        _positive("min_election_timeout", self.min_election_timeout)
        _positive("max_election_timeout", self.max_election_timeout)
        _positive("heartbeat_interval", self.heartbeat_interval)
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
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        _positive_int("max_entries_per_message", self.max_entries_per_message)
        _positive_int("max_inflight", self.max_inflight)
        if self.tracer is not None and not callable(self.tracer):
            raise ValueError(f"tracer must be callable, got {self.tracer!r}")
        for flag in ("pre_vote", "check_quorum"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be True or False, got {getattr(self, flag)!r}")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ServerOptions:
        """Build from keyword options, rejecting unknown names with a clear ``ValueError``."""
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"unknown server option(s) {', '.join(map(repr, unknown))}; "
                f"valid options are {', '.join(sorted(known))}"
            )
        return cls(**options)
