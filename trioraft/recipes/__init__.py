"""Ready-made replicated state machines (and, in time, the small async APIs over them).

* :class:`Counter`: the replicated counter of the demo, the soak runner and the benchmark.
"""

from .counter import Counter

__all__ = ["Counter"]
