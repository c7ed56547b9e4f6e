"""ServerOptions: every option a server takes, the core's and the runtime's."""

from __future__ import annotations

from typing import Any

import attrs

from ._clock import Clock
from ._core.options import CoreOptions, check_known, check_seconds

__all__ = ["ServerOptions"]


@attrs.frozen(kw_only=True)
class ServerOptions(CoreOptions):
    """Every option a server takes (``trioraft.start_server(..., **options)``).

    The Raft options are those of the core (:class:`~trioraft._core.CoreOptions`); the
    runtime adds ``seed``, ``storage``, ``tracer``, ``session_timeout`` and ``clock``.
    Construct with :meth:`from_kwargs` to get a :class:`ValueError` naming any unknown
    option; every value is checked when the object is built.
    """

    #: Seed of this server's random number generator (election timeouts).
    seed: int | None = None
    #: The storage to use (or to restart from): a :class:`~trioraft.MemoryStorage` or a
    #: :class:`~trioraft.DiskStorage`; a new ``MemoryStorage`` when ``None``.
    storage: Any = None
    #: ``tracer(event)`` is called with a :class:`~trioraft.TraceEvent` for each role or
    #: term change, commit, proposal and apply of this server (see ``trioraft.testing``).
    tracer: Any = None
    #: A client session with no activity for this many seconds (of the time the leaders
    #: stamp into the log) expires (dissertation §6.3). Give every server the same.
    session_timeout: float = 3600.0
    #: Internal, for ``trioraft.testing``: the clock this server reads (the time its
    #: core is given, its timers and waits); ``None``: Trio's. A simulated cluster gives
    #: each server its own (``Cluster.set_clock_rate``, ``Cluster.jump_clock``).
    clock: Any = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if self.tracer is not None and not callable(self.tracer):
            raise ValueError(f"tracer must be callable, got {self.tracer!r}")
        check_seconds("session_timeout", self.session_timeout)
        if self.clock is not None and not isinstance(self.clock, Clock):
            raise ValueError(f"clock must be a trioraft clock or None, got {self.clock!r}")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> ServerOptions:
        """Build from keyword options, rejecting unknown names with a clear ``ValueError``."""
        check_known(cls, options)
        return cls(**options)
