"""MemoryNetwork: servers in one process, talking over in-memory queues, with seeded faults."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from heapq import heappop, heappush
from typing import Any

import attrs
import trio

from .._core.messages import Message
from .._errors import MalformedMessage, NameInUse
from .._views import read_only

__all__ = ["MemoryEndpoint", "MemoryNetwork", "NetworkStatistics"]

#: ``observer(event, message)`` with event one of "sent", "delivered", "dropped".
Observer = Callable[[str, Message], None]
#: ``fault_observer(kind, details)`` with kind one of "partition", "isolate", "heal",
#: "loss", "delay", "duplication", and details a dict of JSON-able values.
FaultObserver = Callable[[str, dict[str, Any]], None]


@attrs.frozen
class NetworkStatistics:
    """Counters of a :class:`MemoryNetwork` since it was made."""

    sent: int
    delivered: int
    dropped: int
    in_flight: int
    servers: tuple[str, ...]
    #: Extra copies made by :meth:`MemoryNetwork.set_duplication`.
    duplicated: int = 0


def _check_name(name: Any, what: str = "server name") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {what} must be a non-empty string, got {name!r}")
    return name


def check_rate(kind: str, rate: Any) -> None:
    """``ValueError`` unless ``rate`` is a probability (for ``set_loss``,
    ``set_duplication`` and the testing toolkit's faults alike)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"{kind} rate must be a number in [0, 1], got {rate!r}")


def check_delay(low: Any, high: Any) -> None:
    """``ValueError`` unless ``[low, high]`` is a range of seconds (for ``set_delay`` and
    the testing toolkit's ``Delay``)."""
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < math.inf):
            raise ValueError(f"delays must be finite numbers >= 0, got {v!r}")
    if low > high:
        raise ValueError(f"delay low ({low}) is above high ({high})")


class MemoryNetwork:
    """An in-process network for trioraft servers, with fault injection.

    Each registered server has an inbox; a message is put in the addressee's inbox at
    once, or after a random delay (so messages can overtake each other), and possibly
    twice (:meth:`set_duplication`). A message crosses only if its path is open both
    when it is sent and when it is delivered. Every random choice (loss, delay,
    duplication) comes from the network's own ``random.Random``, seeded by ``seed``.
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self._rng = random.Random(seed)
        self._endpoints: dict[str, MemoryEndpoint] = {}
        self._clients = 0  # the count behind _client_name()
        self._group_of: dict[str, int] | None = None
        self._isolated: set[str] = set()
        self._loss = 0.0
        self._delay = (0.0, 0.0)
        self._duplication = 0.0
        self._duplicated = 0
        self._sent = 0
        self._delivered = 0
        self._dropped = 0
        self._observers: list[Observer] = []
        self._fault_observers: list[FaultObserver] = []

    def __repr__(self) -> str:
        return f"<MemoryNetwork servers={sorted(self._endpoints)}>"

    # ------------------------------------------------------------ registration
    def register(self, name: str) -> MemoryEndpoint:
        """Attach a server under ``name``; raises :class:`~trioraft.NameInUse` if taken."""
        _check_name(name)
        if name in self._endpoints:
            raise NameInUse(f"a server named {name!r} is already registered on this network")
        endpoint = MemoryEndpoint(self, name)
        self._endpoints[name] = endpoint
        return endpoint

    def _client_name(self) -> str:
        """A free name for a client that was given none: ``client-1``, ``client-2``... in
        this network's own count, so two runs of one seeded scenario in one process name
        their clients alike."""
        while True:
            self._clients += 1
            name = f"client-{self._clients}"
            if name not in self._endpoints:
                return name

    def _unregister(self, endpoint: MemoryEndpoint) -> None:
        if self._endpoints.get(endpoint.name) is endpoint:
            del self._endpoints[endpoint.name]

    @property
    def servers(self) -> tuple[str, ...]:
        """Names of the servers registered now, sorted."""
        return tuple(sorted(self._endpoints))

    # ----------------------------------------------------------------- faults
    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: each group (an iterable of names) can talk only within
        itself. A server in no group is cut off from all. This sets the network's whole
        shape: it replaces any earlier partition *and* any isolation."""
        group_of: dict[str, int] = {}
        for i, group in enumerate(groups):
            if isinstance(group, str):
                raise ValueError(
                    f"partition() takes groups of names; got the single name {group!r} "
                    f"(write partition([{group!r}], ...))"
                )
            for name in group:
                _check_name(name)
                if name in group_of:
                    raise ValueError(f"{name!r} appears in more than one partition group")
                group_of[name] = i
        self._group_of = group_of
        self._isolated.clear()
        self._fault(
            "partition",
            groups=[sorted(n for n, g in group_of.items() if g == i) for i in range(len(groups))],
        )

    def isolate(self, name: str) -> None:
        """Cut ``name`` off from every other server, on top of the shape in force (until
        :meth:`heal` or the next :meth:`partition`)."""
        self._isolated.add(_check_name(name))
        self._fault("isolate", name=name)

    def heal(self) -> None:
        """Remove every partition and isolation. Loss and delay stay as set."""
        self._group_of = None
        self._isolated.clear()
        self._fault("heal")

    def set_loss(self, rate: float) -> None:
        """Drop each message with probability ``rate`` (0 to 1)."""
        check_rate("loss", rate)
        self._loss = float(rate)
        self._fault("loss", rate=self._loss)

    def set_duplication(self, rate: float) -> None:
        """Deliver each message twice with probability ``rate`` (0 to 1): the copy takes
        its own random delay, so it may arrive before or after the original."""
        check_rate("duplication", rate)
        self._duplication = float(rate)
        self._fault("duplication", rate=self._duplication)

    def set_delay(self, low: float, high: float) -> None:
        """Delay each message by a random time in ``[low, high]`` seconds (so messages
        can be reordered). ``set_delay(0, 0)`` delivers at once again."""
        check_delay(low, high)
        self._delay = (float(low), float(high))
        self._fault("delay", low=self._delay[0], high=self._delay[1])

    def connected(self, a: str, b: str) -> bool:
        """Whether a message from ``a`` to ``b`` may cross now (ignoring loss)."""
        if a in self._isolated or b in self._isolated:
            return False
        group_of = self._group_of
        if group_of is None:
            return True
        ga = group_of.get(a)
        return ga is not None and ga == group_of.get(b)

    # --------------------------------------------------------------- traffic
    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(event, message)`` for every message sent, delivered or dropped."""
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        """Stop calling ``observer``."""
        self._observers.remove(observer)

    def add_fault_observer(self, observer: FaultObserver) -> None:
        """Call ``observer(kind, details)`` whenever a fault is set or healed."""
        self._fault_observers.append(observer)

    def remove_fault_observer(self, observer: FaultObserver) -> None:
        """Stop calling ``observer``."""
        self._fault_observers.remove(observer)

    def _fault(self, kind: str, **details: Any) -> None:
        for observer in self._fault_observers:
            observer(kind, details)

    loss: float = read_only("_loss", "The current message loss rate.")
    duplication: float = read_only("_duplication", "The current duplication rate.")
    delay: tuple[float, float] = read_only("_delay", "The current delay range ``(low, high)``.")

    def _notify(self, event: str, message: Message) -> None:
        for observer in self._observers:
            observer(event, message)

    def _route(self, message: Message) -> None:
        self._sent += 1
        if self._observers:
            self._notify("sent", message)
        target = self._endpoints.get(message.dst)
        if (
            target is None
            or not self.connected(message.src, message.dst)
            or (self._loss and self._rng.random() < self._loss)
        ):
            self._drop(message)
            return
        low, high = self._delay
        now = trio.current_time()
        target._put(now + self._rng.uniform(low, high) if high else now, now, message)
        if self._duplication and self._rng.random() < self._duplication:
            self._duplicated += 1
            target._put(now + self._rng.uniform(low, high) if high else now, now, message)

    def _drop(self, message: Message) -> None:
        self._dropped += 1
        if self._observers:
            self._notify("dropped", message)

    def statistics(self) -> NetworkStatistics:
        """Message counters (Trio's ``statistics()`` convention)."""
        return NetworkStatistics(
            sent=self._sent,
            delivered=self._delivered,
            dropped=self._dropped,
            in_flight=sum(len(e._heap) for e in self._endpoints.values()),
            servers=self.servers,
            duplicated=self._duplicated,
        )


class MemoryEndpoint:
    """A server's inbox and outbox on a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, name: str) -> None:
        self._network = network
        self._name = name
        self._heap: list[tuple[float, int, Message]] = []
        self._counter = 0
        self._wakeup = trio.Event()
        #: While the receiver waits for the first message in flight to be due: the wait's
        #: scope, whose deadline is that message's delivery time.
        self._due: trio.CancelScope | None = None
        self._closed = False

    @property
    def name(self) -> str:
        """The registered name."""
        return self._name

    def send(self, message: Message) -> None:
        """Send ``message`` (from this server) without blocking."""
        if not isinstance(message, Message):
            raise MalformedMessage(f"only Raft messages can be sent, got {message!r}")
        if message.src != self._name:
            raise MalformedMessage(f"{self._name!r} cannot send a message from {message.src!r}")
        if self._closed:
            return
        self._network._route(message)

    def _put(self, at: float, now: float, message: Message) -> None:
        heappush(self._heap, (at, self._counter, message))
        self._counter += 1
        due = self._due
        if due is None or at <= now:
            self._wakeup.set()
        elif at < due.deadline:  # due before the one waited for: wake the receiver then
            due.deadline = at
        # else: due after the one waited for, which wakes the receiver first

    async def receive_batch(self) -> list[Message]:
        """Wait for messages; return every one that is due (in delivery order)."""
        heap = self._heap
        network = self._network
        waited = False
        while True:
            if self._closed:
                raise trio.ClosedResourceError(f"endpoint {self._name!r} is closed")
            now = trio.current_time()
            if heap and heap[0][0] <= now:
                out: list[Message] = []
                while heap and heap[0][0] <= now:
                    message = heappop(heap)[2]
                    # The path must still be open at delivery time.
                    if network.connected(message.src, self._name):
                        out.append(message)
                    else:
                        network._drop(message)
                if out:
                    network._delivered += len(out)
                    if network._observers:
                        for message in out:
                            network._notify("delivered", message)
                    if not waited:
                        await trio.lowlevel.checkpoint()  # always a checkpoint, as in trio
                    return out
                continue
            self._wakeup = trio.Event()
            waited = True
            if heap:
                with trio.CancelScope(deadline=heap[0][0]) as self._due:
                    try:
                        await self._wakeup.wait()
                    finally:
                        self._due = None
            else:
                await self._wakeup.wait()

    def close(self) -> None:
        """Leave the network; messages in flight to this endpoint are dropped."""
        if self._closed:
            return
        self._closed = True
        for _, _, message in self._heap:
            self._network._drop(message)
        self._heap.clear()
        self._network._unregister(self)
        self._wakeup.set()
