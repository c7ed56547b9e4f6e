"""Records: the plain data classes of the write path (messages, entries, a Ready).

A record lists its fields in :attr:`Record.FIELDS`, as ``(name, type)`` pairs in the
order of its constructor (and, for a message, of the wire). Like a frozen attrs class,
it equals a record of the same class whose fields are equal, hashes as its fields do,
and shows its fields in its repr. Its fields are ``Final``: mypy refuses to rebind them,
and the compiled build makes them read-only (the pure one does not check at run time).

Not attrs: a frozen attrs class sets each field through ``object.__setattr__`` (a
15-field Ready cost 1.9 us to build), and mypyc cannot make an attrs class native. A
record's constructor is plain assignments, built positionally on the hot path, and a
native class in the compiled build.

Owns nothing at run time; every room may use it.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

__all__ = ["Fields", "Record", "evolve", "fields"]

#: A record's fields: ``(name, type)`` pairs.
Fields = tuple[tuple[str, Any], ...]


R = TypeVar("R", bound="Record")


def fields(*pairs: tuple[str, Any]) -> Fields:
    """The ``FIELDS`` of a record class: its ``(name, type)`` pairs, in order."""
    return pairs


class Record:
    """The base of every record: equality, hash and repr from :attr:`FIELDS`."""

    __slots__ = ()

    #: ``(name, type)`` of each field, in the order of the constructor's parameters.
    FIELDS: ClassVar[Fields] = ()

    def values(self) -> tuple[Any, ...]:
        """The fields' values, in the order of :attr:`FIELDS`."""
        return tuple([getattr(self, name) for name, _ in self.FIELDS])

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self.values() == other.values()

    def __ne__(self, other: object) -> bool:
        if other is self:
            return False
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self.values() != other.values()

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, *self.values()))

    def __repr__(self) -> str:
        shown = ", ".join([f"{name}={getattr(self, name)!r}" for name, _ in self.FIELDS])
        return f"{self.__class__.__name__}({shown})"


def evolve(record: R, **changes: Any) -> R:
    """A copy of ``record`` with the fields named in ``changes`` replaced (as
    ``attrs.evolve`` does)."""
    unknown = set(changes) - {name for name, _ in record.FIELDS}
    if unknown:
        raise TypeError(f"{type(record).__name__} has no field {sorted(unknown)[0]!r}")
    values = {name: changes.get(name, getattr(record, name)) for name, _ in record.FIELDS}
    return type(record)(**values)
