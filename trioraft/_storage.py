"""MemoryStorage: what a server persists (term, vote, log, commit index, snapshot)."""

from __future__ import annotations

from typing import Any

import attrs

from ._core.log import RaftLog
from ._core.messages import Config

__all__ = ["MemoryStorage", "Snapshot"]


@attrs.frozen
class Snapshot:
    """A state machine snapshot covering the log up to ``index`` (of term ``term``)."""

    index: int
    term: int
    config: Config
    data: Any


class MemoryStorage:
    """A server's persistent state, kept in memory.

    It holds exactly what Raft requires to survive a crash (Figure 2: ``currentTerm``,
    ``votedFor``, ``log[]``), plus the commit index, the latest snapshot and the
    configuration the cluster started from. A server writes it before it answers any
    message, so handing the storage of a stopped server to a new server of the same name
    restarts that server as if it had crashed and come back (crash-restart).

    A storage belongs to one server name, and only one running server may use it at a time.
    """

    def __init__(self) -> None:
        self.term = 0
        self.voted_for: str | None = None
        self.log = RaftLog()
        self.commit_index = 0
        self.snapshot: Snapshot | None = None
        #: The configuration in force before any log entry (set once, at first start).
        self.base_config: Config | None = None
        #: The name of the server this storage belongs to (set at first start).
        self.owner: str | None = None
        #: The identity of the cluster this server belongs to ("" until it is known).
        self.cluster_id = ""
        self._in_use = False

    def __repr__(self) -> str:
        return (
            f"<MemoryStorage owner={self.owner!r} term={self.term} voted_for={self.voted_for!r} "
            f"log={self.log!r} commit={self.commit_index}>"
        )

    def acquire(self, name: str) -> None:
        """Claim this storage for the server ``name`` (done by the server when it starts)."""
        if self._in_use:
            raise ValueError(f"storage of {self.owner!r} is already in use by a running server")
        if self.owner is not None and self.owner != name:
            raise ValueError(
                f"storage belongs to server {self.owner!r}; it cannot be used by {name!r}"
            )
        self.owner = name
        self._in_use = True

    def release(self) -> None:
        """Give the storage back (done by the server when it stops)."""
        self._in_use = False

    @property
    def in_use(self) -> bool:
        """Whether a running server holds this storage."""
        return self._in_use
