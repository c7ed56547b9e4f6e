"""Ready-made replicated state machines, with small async APIs over a client.

* :class:`Counter`: the replicated counter of the demo, the soak runner and the benchmark.
* :class:`DictMachine` and :class:`ReplicatedDict`: a replicated dict (``get``, ``set``,
  ``delete``, ``compare_and_set``, ``items``) with linearizable reads.
* :class:`LockMachine` and :class:`ReplicatedLock`: named locks with fencing tokens, held
  by a client session and released when it expires; :class:`FencedResource` refuses
  stale holders.
"""

from .counter import Counter
from .kvdict import DictMachine, ReplicatedDict
from .lock import FencedResource, LockMachine, ReplicatedLock, StaleToken

__all__ = [
    "Counter",
    "DictMachine",
    "FencedResource",
    "LockMachine",
    "ReplicatedDict",
    "ReplicatedLock",
    "StaleToken",
]
