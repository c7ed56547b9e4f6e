"""Quorums: the one place where a majority is computed.

Owns: what "a quorum agrees" means for elections (§3.4), commitment (Figure 2, §5.4.2's
term rule is the caller's), CheckQuorum (§6.2), ReadIndex and leases (§6.4): a majority
of the voters, never fewer than ``min_majority``; and while a configuration is joint
(C_old,new, dissertation §4.3), a majority of *each* of the two voter sets.

May not touch: anything else. It knows voters' names and what the caller tells it of
each voter (agreed, refused, a value), nothing of terms, logs or messages.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

__all__ = ["Quorum", "majority"]

T = TypeVar("T", int, float)


def majority(voters: int, min_majority: int | None = None) -> int:
    """How many of ``voters`` make a quorum: a strict majority, or ``min_majority`` if
    that is more."""
    return max(min_majority or 0, voters // 2 + 1)


class Quorum:
    """The quorum rule of a configuration: one voter set, or two while joint.

    ``voters`` are the (new) voters; ``outgoing`` the old ones while joint (§4.3), else
    ``None``. ``min_majority`` is a floor on each set's quorum.
    """

    __slots__ = ("_sets",)

    def __init__(
        self,
        voters: Collection[str],
        outgoing: Collection[str] | None = None,
        min_majority: int | None = None,
    ) -> None:
        sets = [tuple(voters)] if outgoing is None else [tuple(voters), tuple(outgoing)]
        self._sets = tuple((names, majority(len(names), min_majority)) for names in sets)

    @property
    def joint(self) -> bool:
        """Whether two voter sets must each agree."""
        return len(self._sets) == 2

    @property
    def voters(self) -> frozenset[str]:
        """Every voter of either set."""
        return frozenset(name for names, _ in self._sets for name in names)

    def possible(self) -> bool:
        """Whether the voters are enough to make a quorum at all (``min_majority`` may
        ask for more voters than a set has)."""
        return all(size <= len(names) for names, size in self._sets)

    def reached(self, agrees: Callable[[str], bool]) -> bool:
        """Whether a quorum of each set agrees (``agrees(name)``)."""
        return all(sum(1 for n in names if agrees(n)) >= size for names, size in self._sets)

    def lost(self, refuses: Callable[[str], bool]) -> bool:
        """Whether so many voters of some set refuse (``refuses(name)``) that the rest
        can no longer make its quorum."""
        return any(
            sum(1 for n in names if refuses(n)) > len(names) - size for names, size in self._sets
        )

    def agreed_value(self, value: Callable[[str], T]) -> T | None:
        """The highest value that a quorum of each set has reached (``value(name)``:
        each voter's, such as its match index, or the time it last acknowledged); ``None``
        if no quorum is possible. The commit index is the agreed match index (Figure 2)."""
        agreed: T | None = None
        for names, size in self._sets:
            if size > len(names):
                return None
            values = sorted((value(n) for n in names), reverse=True)
            here = values[size - 1]
            if agreed is None or here < agreed:
                agreed = here
        return agreed
