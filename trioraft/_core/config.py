"""A cluster's membership: :class:`Config` (who votes, who only listens, where new members
listen). A public attrs class, built only when the membership changes: the compiled
build leaves this module pure Python.

Owns nothing at run time; every room may use it.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Config"]


def _sorted_names(names: Any) -> tuple[str, ...]:
    return tuple(sorted(set(names)))


def _sorted_pairs(pairs: Any) -> tuple[tuple[str, str], ...]:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted((str(name), str(address)) for name, address in items))


def _optional_names(names: Any) -> tuple[str, ...] | None:
    return None if names is None else _sorted_names(names)


@attrs.frozen
class Config:
    """A cluster membership: who votes and who only listens (learners), and the network
    addresses of members added with one (so that every member can reach them).

    While a change of several voters is under way (joint consensus, dissertation §4.3),
    ``outgoing`` holds the voters of the configuration being left (C_old), and
    ``voters`` those of the one being entered (C_new): elections and commitment then
    need a majority of each. ``outgoing`` is ``None`` otherwise. ``learners`` are C_new's
    (a voter being made a learner is an outgoing voter and a learner while joint).

    Names are kept sorted so that iterating a configuration never depends on hashing.
    """

    voters: tuple[str, ...] = attrs.field(converter=_sorted_names, default=())
    learners: tuple[str, ...] = attrs.field(converter=_sorted_names, default=())
    addresses: tuple[tuple[str, str], ...] = attrs.field(converter=_sorted_pairs, default=())
    outgoing: tuple[str, ...] | None = attrs.field(converter=_optional_names, default=None)

    def __attrs_post_init__(self) -> None:
        # A learner may be an outgoing voter: a voter made a learner votes with C_old
        # until the change leaves the joint configuration, and is a learner in C_new.
        both = set(self.learners) & set(self.voters)
        if both:
            raise ValueError(f"servers cannot be both voter and learner: {sorted(both)}")

    @property
    def joint(self) -> bool:
        """Whether this is a joint configuration (C_old,new, §4.3)."""
        return self.outgoing is not None

    @property
    def all_voters(self) -> tuple[str, ...]:
        """Every server that votes in this configuration: of both sets while joint."""
        if self.outgoing is None:
            return self.voters
        return tuple(sorted(set(self.voters) | set(self.outgoing)))

    @property
    def members(self) -> tuple[str, ...]:
        """Voters (of both sets while joint) and learners, sorted."""
        return tuple(sorted(set(self.all_voters) | set(self.learners)))

    def address_of(self, name: str) -> str | None:
        """The address ``name`` was added with, if any."""
        for member, address in self.addresses:
            if member == name:
                return address
        return None

    def quorum(self, min_majority: int | None) -> int:
        """Votes (or acknowledgements) needed of the (new) voters:
        ``max(min_majority or 0, len(voters)//2 + 1)``. While joint, the outgoing voters
        need as many of theirs (see :class:`~trioraft._core.quorum.Quorum`)."""
        return max(min_majority or 0, len(self.voters) // 2 + 1)

    def as_list(self) -> list[Any]:
        """This configuration as plain lists (how frames and stores hold it):
        ``[voters, learners, addresses]``, and the outgoing voters last while joint."""
        out = [list(self.voters), list(self.learners), [list(p) for p in self.addresses]]
        if self.outgoing is not None:
            out.append(list(self.outgoing))
        return out

    @classmethod
    def from_list(cls, value: list[Any]) -> Config:
        """The configuration :meth:`as_list` made (raises on anything else)."""
        outgoing = value[3] if len(value) == 4 else None
        return cls(voters=value[0], learners=value[1], addresses=value[2], outgoing=outgoing)

    def leave_joint(self) -> Config:
        """C_new: this joint configuration's incoming voters, learners and addresses
        (without the addresses of servers no longer in it)."""
        members = set(self.voters) | set(self.learners)
        addresses = [(n, a) for n, a in self.addresses if n in members]
        return Config(voters=self.voters, learners=self.learners, addresses=addresses)
