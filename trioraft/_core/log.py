"""The in-memory Raft log, indexed from a snapshot offset.

Entries are numbered from 1. Everything up to ``snapshot_index`` has been compacted away
(only its last term is remembered), so the list holds indexes ``snapshot_index + 1`` to
``last_index``. Compaction can thus come without changing any caller.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from .messages import Entry

__all__ = ["RaftLog"]


class RaftLog:
    """A Raft log: a list of :class:`Entry` after a compacted prefix."""

    __slots__ = ("_entries", "snapshot_index", "snapshot_term")

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self.snapshot_index = 0
        self.snapshot_term = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"<RaftLog snapshot={self.snapshot_index}@{self.snapshot_term} "
            f"last={self.last_index}@{self.last_term}>"
        )

    @property
    def first_index(self) -> int:
        """The first index still held as an entry."""
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        """Index of the last entry (the snapshot index when the log is empty)."""
        return self.snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        """Term of the last entry (the snapshot's term when the log is empty)."""
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; ``None`` if compacted away or beyond the end."""
        offset = index - self.snapshot_index
        if offset == 0:
            return self.snapshot_term
        if 0 < offset <= len(self._entries):
            return self._entries[offset - 1].term
        return None

    def entry(self, index: int) -> Entry:
        """The entry at ``index`` (which must be held)."""
        offset = index - self.snapshot_index
        if not 0 < offset <= len(self._entries):
            raise IndexError(
                f"log index {index} not held (log holds {self.first_index}..{self.last_index})"
            )
        return self._entries[offset - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``lo`` to ``hi`` inclusive (clipped to what is held)."""
        base = self.snapshot_index + 1
        return self._entries[max(lo - base, 0) : max(hi - base + 1, 0)]

    def matches(self, index: int, term: int) -> bool:
        """Whether the entry at ``index`` has ``term`` (the AppendEntries consistency check)."""
        return self.term_at(index) == term

    def append(self, entry: Entry) -> None:
        """Append one entry, which must be the next index."""
        if entry.index != self.snapshot_index + len(self._entries) + 1:
            raise ValueError(f"entry index {entry.index} does not follow {self.last_index}")
        self._entries.append(entry)

    def extend(self, entries: Sequence[Entry]) -> None:
        """Append consecutive entries, the first of which must be the next index."""
        if not entries:
            return
        first, last = entries[0].index, entries[-1].index
        expected = self.snapshot_index + len(self._entries) + 1
        if first != expected or last != first + len(entries) - 1:
            raise ValueError(
                f"entries {first}..{last} ({len(entries)}) are not consecutive from {expected}"
            )
        self._entries.extend(entries)

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index``."""
        if index < self.snapshot_index:
            raise ValueError(
                f"cannot truncate into the snapshot (index {index} < {self.snapshot_index})"
            )
        del self._entries[index - self.snapshot_index :]

    def first_index_of_term(self, index: int) -> int:
        """The first held index whose term equals the term at ``index`` (which is held)."""
        term = self.term_at(index)
        assert term is not None
        # Terms never decrease along a log, so a binary search finds where a term starts.
        pos = bisect_left(self._entries, term, hi=index - self.snapshot_index, key=_term)
        return self.snapshot_index + 1 + pos

    def last_index_of_term(self, term: int) -> int | None:
        """The last held index with ``term``, or ``None`` if no held entry has it."""
        pos = bisect_right(self._entries, term, key=_term)
        if pos and self._entries[pos - 1].term == term:
            return self.snapshot_index + pos
        return None

    def reset(self, index: int, term: int, entries: Sequence[Entry] = ()) -> None:
        """Replace everything: entries up to ``index`` (of ``term``) are compacted away,
        ``entries`` follow."""
        self._entries = []
        self.snapshot_index = index
        self.snapshot_term = term
        self.extend(entries)

    def compact(self, index: int, term: int) -> None:
        """Forget every entry up to ``index`` (whose term is ``term``)."""
        if index <= self.snapshot_index:
            return
        if index >= self.last_index:
            self._entries = []
        else:
            del self._entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term


def _term(entry: Entry) -> int:
    return entry.term
