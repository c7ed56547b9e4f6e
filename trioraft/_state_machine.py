"""The base class users derive their replicated state machines from."""

from __future__ import annotations

from typing import Any

__all__ = ["StateMachine"]


class StateMachine:
    """A deterministic state machine replicated by Raft (ExRaft's ``StateMachine``).

    Each server makes its own instance (``machine(init_arg)``). Subclasses implement
    :meth:`write` and :meth:`read`; :meth:`snapshot` / :meth:`restore` are optional.
    Both ``write`` and ``read`` are plain methods and must be deterministic: every
    replica applies the same commands in the same order and must end in the same state.
    Commands are values: in one process every replica is handed the same object, so
    neither ``write`` nor the caller may mutate a command once written, and ``read`` must
    not change the state.

    Optional hooks, called on every server when defined:

    * ``on_role_change(role)``: this server's :class:`~trioraft.Role` changed.
    * ``on_membership_change(voters, learners)``: a configuration entry was applied, in
      log order (frozensets of names).
    * ``validate(command)``: called by the leader before it appends a write; raising
      rejects the write (the writer gets the exception, nothing is appended).
    * ``on_session_expired(client_id)``: a client session expired (see
      :func:`trioraft.open_client`); called at the same log position on every server, so
      it may change the state (a lock held by that client is released, for example).
    """

    def write(self, command: Any) -> Any:
        """Apply ``command``; the return value is the reply the writer receives.

        Called on every server, in log order. An exception raised here does not stop
        the server: the writer's ``await server.write(...)`` raises it, and every replica
        raises it identically, so the state stays the same everywhere.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement write(command)")

    def read(self, query: Any) -> Any:
        """Answer ``query`` from the current state, without changing it."""
        raise NotImplementedError(f"{type(self).__name__} must implement read(query)")

    def snapshot(self) -> Any:
        """Return the state, for log compaction (optional)."""
        raise NotImplementedError(f"{type(self).__name__} does not support snapshots")

    def restore(self, snapshot: Any) -> None:
        """Replace the state with one returned by :meth:`snapshot` (optional)."""
        raise NotImplementedError(f"{type(self).__name__} does not support snapshots")
