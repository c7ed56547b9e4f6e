"""Membership: the configuration history, catch-up of new servers, and changes of one
server or of several at once (dissertation §4).

Owns: the configurations in the log and which is in force (§4.1: the latest, committed
or not); the rules of a change (one voter at a time directly, more through joint
consensus, §4.3); the record of a learner being caught up (§4.2.1); a ``set_members``
change's plan, from catching up its new servers to its final configuration.

May not touch: the log, terms, messages or progress. The node appends the entries this
room decides on and tells it what committed and how far each learner has got.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from .messages import Config
from .options import server_names

__all__ = [
    "MAX_CATCH_UP_ROUNDS",
    "CatchUp",
    "CatchUpState",
    "ChangePhase",
    "ConfigHistory",
    "MembershipChange",
    "check_single_change",
    "joint_config",
    "plan_target",
    "single_step",
]

#: Most replication rounds a learner gets to catch up before its promotion is abandoned.
MAX_CATCH_UP_ROUNDS = 10


class ConfigHistory:
    """Every configuration in the log after the base one (the snapshot's, or the
    initial), oldest first, by index. The last is in force as soon as it is appended
    (§4.1); truncating the log falls back to the one before."""

    __slots__ = ("_configs",)

    def __init__(self, base_index: int, base: Config) -> None:
        self._configs: list[tuple[int, Config]] = [(base_index, base)]

    @property
    def current(self) -> Config:
        """The configuration in force."""
        return self._configs[-1][1]

    @property
    def index(self) -> int:
        """The log index of the configuration in force."""
        return self._configs[-1][0]

    def at(self, index: int) -> Config:
        """The configuration in force after entry ``index``."""
        for at, config in reversed(self._configs):
            if at <= index:
                return config
        return self._configs[0][1]

    def all(self) -> list[Config]:
        """Every configuration held, oldest first."""
        return [config for _, config in self._configs]

    def append(self, index: int, config: Config) -> None:
        """A configuration entry at ``index`` (appended to the log)."""
        self._configs.append((index, config))

    def truncate(self, index: int) -> None:
        """Entries from ``index`` on are gone: so are their configurations."""
        while len(self._configs) > 1 and self._configs[-1][0] >= index:
            self._configs.pop()

    def compact(self, index: int, config: Config) -> None:
        """A snapshot at ``index`` holds ``config``: the configurations after it stay."""
        self._configs = [(index, config), *((i, c) for i, c in self._configs if i > index)]

    def reset(self, index: int, config: Config, later: Iterable[tuple[int, Config]]) -> None:
        """A snapshot at ``index`` holding ``config`` was installed; ``later`` are the
        configuration entries of the log kept after it."""
        self._configs = [(index, config), *((i, c) for i, c in later if i > index)]


def check_single_change(old: Config, config: Config, min_majority: int | None) -> None:
    """``ValueError`` unless ``config`` differs from ``old`` by at most one server (a
    direct change, §4.1), keeps a voter, and keeps enough voters for ``min_majority``."""
    changed = set(old.voters) ^ set(config.voters)
    changed |= set(old.learners) ^ set(config.learners)
    if len(changed) > 1:
        raise ValueError(f"one server at a time: {sorted(changed)} would change at once")
    _check_voters(old, config, min_majority)


def _check_voters(old: Config, config: Config, min_majority: int | None) -> None:
    if not config.voters:
        raise ValueError("cannot remove the last voter")
    floor = min_majority or 0
    if len(config.voters) < len(old.voters) and len(config.voters) < floor:
        raise ValueError(
            f"cannot go from {len(old.voters)} to {len(config.voters)} voters: "
            f"min_majority={floor} needs at least {floor} voters, or no quorum could "
            "ever form again"
        )


def plan_target(
    current: Config,
    voters: Iterable[str],
    learners: Iterable[str],
    addresses: Mapping[str, str] | None,
    min_majority: int | None,
) -> Config:
    """The configuration ``set_members(voters, learners=..., addresses=...)`` asks for,
    checked: ``ValueError`` for no voters, a server in both sets, a bad name or address,
    or fewer voters than ``min_majority``. Addresses of servers that stay are kept."""
    voters, learners = server_names(voters, "voters"), server_names(learners, "learners")
    if not voters:
        raise ValueError("set_members needs at least one voter")
    both = set(voters) & set(learners)
    if both:
        raise ValueError(f"servers cannot be both voter and learner: {sorted(both)}")
    if min_majority and len(voters) < min_majority:
        raise ValueError(
            f"{len(voters)} voters are fewer than min_majority={min_majority}: no quorum "
            "could ever form"
        )
    members = set(voters) | set(learners)
    kept = {n: a for n, a in current.addresses if n in members}
    for name, address in dict(addresses or {}).items():
        if not isinstance(address, str) or not address:
            raise ValueError(f"the address of {name!r} must be a 'host:port' string")
        if name not in members:
            raise ValueError(f"an address is given for {name!r}, which is not a member")
        kept[name] = address
    return Config(voters=voters, learners=learners, addresses=kept)


def single_step(old: Config, new: Config) -> bool:
    """Whether going from ``old`` to ``new`` may be one direct configuration: at most
    one voter added or removed (learners do not vote, §4.2.1). A swap counts as two."""
    return len(set(old.voters) ^ set(new.voters)) <= 1


def joint_config(old: Config, new: Config) -> Config:
    """C_old,new (§4.3): the new voters and learners, the old voters as outgoing, and the
    addresses of both, so that :meth:`Config.leave_joint` gives ``new`` back on any
    leader (a voter being made a learner votes with C_old until then)."""
    addresses = dict(old.addresses)
    addresses.update(new.addresses)
    return Config(
        voters=new.voters, learners=new.learners, addresses=addresses, outgoing=old.voters
    )


class CatchUpState(enum.Enum):
    """Where the catch-up of a learner stands."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class CatchUp:
    """The leader's record of one learner being caught up (dissertation §4.2.1).

    The leader replicates in rounds: each round ends when the learner holds every entry
    the leader had when the round began. A round that takes no longer than an election
    timeout means the learner has caught up. It fails after
    :data:`MAX_CATCH_UP_ROUNDS` rounds, or when the learner makes no progress for an
    election timeout (the node's leader tick checks that).
    """

    __slots__ = (
        "foreign_cluster",
        "last_progress",
        "match",
        "reason",
        "round_end",
        "round_start",
        "rounds",
        "state",
    )

    def __init__(self, round_end: int, round_start: float) -> None:
        self.state = CatchUpState.PENDING
        self.rounds = 1
        self.round_end = round_end
        self.round_start = round_start
        self.last_progress = round_start
        self.match = 0
        self.reason = ""
        #: When the learner refused to follow because it belongs to another cluster: the
        #: identity of that cluster.
        self.foreign_cluster = ""

    def fail(self, reason: str) -> None:
        """It will not be caught up: ``reason`` says why."""
        self.state = CatchUpState.FAILED
        self.reason = reason

    def progress(self, match: int, now: float, last_index: int, round_time: float) -> bool:
        """The learner now holds entries up to ``match`` (the leader's log ends at
        ``last_index``); returns whether its state changed (done or failed)."""
        if match > self.match:
            self.match = match
            self.last_progress = now
        if match < self.round_end:
            return False
        if now - self.round_start <= round_time:
            self.state = CatchUpState.DONE
        elif self.rounds >= MAX_CATCH_UP_ROUNDS:
            self.fail(f"still behind after {self.rounds} rounds of replication")
        else:
            self.rounds += 1
            self.round_end = last_index
            self.round_start = now
            if match < self.round_end:
                return False
            # The learner already holds what the new round would send: that round
            # takes no time, so it is caught up (an idle cluster moves it no further).
            self.state = CatchUpState.DONE
        return True


class ChangePhase(enum.Enum):
    """Where a ``set_members`` change stands."""

    #: New voters are being caught up as learners (§4.2.1); none: it moves on at once.
    CATCHING_UP = "catching up"
    #: Its last configuration (C_old,new, or a direct change) is appended, not committed.
    CHANGING = "changing"
    #: C_new is committed: done.
    DONE = "done"
    FAILED = "failed"


class MembershipChange:
    """A leader's plan to make the configuration exactly ``target``: catch its new
    voters up as learners, then enter C_old,new (or, for one voter, ``target`` at once),
    then C_new, appended automatically once C_old,new commits (§4.3)."""

    __slots__ = ("entries", "left_behind", "newcomers", "phase", "reason", "target", "unknown")

    def __init__(self, target: Config, newcomers: tuple[str, ...]) -> None:
        self.target = target
        #: The new voters that are caught up first.
        self.newcomers = newcomers
        # Catching up (at once when there are no new voters), then changing.
        self.phase = ChangePhase.CATCHING_UP
        self.reason = ""
        #: Configuration entries it appended so far.
        self.entries = 0
        #: Whether it failed after appending a configuration of its own: the next
        #: leader may complete it (the outcome is unknown).
        self.unknown = False
        #: The new voter that did not catch up, if that is why it failed.
        self.left_behind: str | None = None

    @property
    def active(self) -> bool:
        """Whether it is still under way."""
        return self.phase in (ChangePhase.CATCHING_UP, ChangePhase.CHANGING)

    def fail(self, reason: str, *, unknown: bool = False, left_behind: str | None = None) -> None:
        """It will not complete here: ``reason`` says why."""
        self.phase = ChangePhase.FAILED
        self.reason = reason
        self.unknown = unknown
        self.left_behind = left_behind
