"""The core's types: roles, the errors a leader raises of its own, its constants, and
the small records of a read index request and of a snapshot being received.

Owns nothing at run time; every room may use it.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import Any, TypeVar

from .._errors import RaftError

_T = TypeVar("_T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the pure build does not need mypy_extensions

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[_T], _T]:
        """mypyc's class options (``mypy_extensions.mypyc_attr``), which mypyc reads
        when it compiles: at run time, a decorator that changes nothing."""
        return lambda cls: cls


__all__ = [
    "APPLY_BATCH",
    "INF",
    "MAX_READ_REQUESTS",
    "MAX_TERM_GAP",
    "RETIRING_TICKS",
    "IncomingSnapshot",
    "LeaderNotReady",
    "ReadRequest",
    "Role",
    "TransferInProgress",
    "TransferOutcome",
    "mypyc_attr",
    "rng_nonce",
]

INF = math.inf
#: Most committed entries handed to the runtime in one Ready (it applies them in one go).
APPLY_BATCH = 1024
#: Requests for a read index a follower keeps in flight at once (§6.4): the reads that
#: arrive while they are answered go in the next one, without waiting for those answers.
MAX_READ_REQUESTS = 4
#: How far above its own a term a message may carry (2**32: more elections than any
#: cluster holds while one of its servers is away). A message past it is malformed, so
#: no single message can use up the terms left below the wire's bound (2**63 - 1).
MAX_TERM_GAP = 2**32
#: Leader ticks (each the longest election timeout) a removed server that does not
#: answer is still told of its removal; if it campaigns later, it is told again.
RETIRING_TICKS = 5


class Role(enum.Enum):
    """A server's role in its current term."""

    FOLLOWER = "follower"
    #: Running a PreVote round (dissertation §9.6): it has not changed its term yet.
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class TransferOutcome(enum.Enum):
    """How a leadership transfer stands, as :meth:`RaftNode.transfer_outcome
    <trioraft._core.RaftNode.transfer_outcome>` reports it (§3.10)."""

    #: Under way: the target is being brought up to date, or campaigning.
    PENDING = "pending"
    #: The target leads (as this server knows it).
    DONE = "done"
    #: This server still leads: it gave the transfer up (the target did not catch up
    #: within an election timeout).
    ABANDONED = "abandoned"
    #: Another server than the target was elected.
    OTHER_ELECTED = "other_elected"


class TransferInProgress(RaftError):
    """The leader is handing over leadership and takes no new entries (§3.10)."""


class LeaderNotReady(RaftError):
    """The leader has not yet committed an entry of its own term (its no-op).

    Membership changes wait for it (the fix to single-server changes described on the
    raft-dev list and in the dissertation's errata).
    """


class ReadRequest:
    """A follower's request for a read index, in flight for a batch of reads (§6.4),
    asked of ``leader`` in ``term``."""

    __slots__ = ("leader", "reads", "retry_at", "term", "ticket")

    def __init__(
        self, ticket: int, leader: str, term: int, retry_at: float, reads: list[int]
    ) -> None:
        self.ticket = ticket
        self.leader = leader
        self.term = term
        self.retry_at = retry_at
        self.reads = reads


class IncomingSnapshot:
    """A snapshot a follower is receiving, chunk by chunk (kept as received, joined
    once at the end: one copy of the snapshot, not one per chunk). ``key`` identifies
    the transfer: sender, term, index, snapshot term, size, checksum, transfer number."""

    __slots__ = ("chunks", "held", "key")

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.chunks: list[bytes] = []
        self.held = 0

    def add(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self.held += len(data)


def rng_nonce(rng: random.Random) -> int:
    """32 bits that depend on the state of ``rng`` without drawing from it (so that the
    node's random choices stay those its seed gives)."""
    return random.Random(repr(rng.getstate())).getrandbits(32)
