"""Sequential specifications for the linearizability checker: :class:`Model`, the ready
models (:func:`counter_model`, :func:`kv_model`) and :func:`outputs_match`.

A model built from a :class:`~trioraft.StateMachine` lives in ``_machine_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Model", "counter_model", "kv_model", "outputs_match"]


def _loose(value: Any) -> Any:
    """Lists as tuples, recursively: what a JSON round trip does not preserve."""
    if isinstance(value, (list, tuple)):
        return tuple(_loose(v) for v in value)
    return value


def outputs_match(expected: Any, observed: Any) -> bool:
    """Whether an observed output is the one the model gives: equal values, lists and
    tuples alike (JSON turns one into the other), and two exceptions when they have the
    same type and the same ``args``."""
    try:
        if expected == observed:
            return True
    except Exception:
        return False
    if isinstance(expected, BaseException) or isinstance(observed, BaseException):
        return (
            isinstance(expected, BaseException)
            and type(expected) is type(observed)
            and outputs_match(expected.args, observed.args)
        )
    if isinstance(expected, (list, tuple)) and isinstance(observed, (list, tuple)):
        return len(expected) == len(observed) and all(
            outputs_match(a, b) for a, b in zip(expected, observed, strict=True)
        )
    return False


class Model:
    """A sequential specification: what one operation does to a state, and what it
    returns.

    Subclass it and override :meth:`init` and :meth:`step`, or build one from a function
    (:meth:`from_function`) or from your :class:`~trioraft.StateMachine`
    (:meth:`from_state_machine`). Ready models: :func:`counter_model`, :func:`kv_model`.

    **States must be hashable, and equal only when they behave the same**: the checker
    memoizes ``(operations linearized, state)`` pairs, and it never places an operation
    of unknown outcome that leaves the state equal (nothing could observe it). Use
    immutable values: numbers, strings, tuples, frozensets. A state must never be mutated
    in place: :meth:`step` returns a new one.
    """

    #: A name for messages.
    name = "model"

    def init(self) -> Any:
        """The initial state (hashable)."""
        raise NotImplementedError(f"{type(self).__name__} must implement init()")

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        """Apply operation ``kind(input)`` to ``state``: return ``(new_state, output)``.

        Must be deterministic and must not change ``state``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def outputs_match(self, expected: Any, observed: Any) -> bool:
        """Whether ``observed`` (recorded) is the ``expected`` output (the model's).
        By default :func:`outputs_match`."""
        return outputs_match(expected, observed)

    def describe_state(self, state: Any) -> str:
        """The state, for messages. By default its ``repr``."""
        return repr(state)

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        """The independent part of the state that operation ``kind(input)`` uses, if the
        model has such parts (P-compositionality).

        When every operation of a history has a key other than ``None``, the checker
        checks the operations of each key as a history of its own, which is much faster
        and equivalent when the model's state is a product of independent parts, one per
        key, that operations of other keys neither change nor observe (as the keys of
        :func:`kv_model`, or those a :meth:`from_state_machine` model is given). By
        default ``None``: the history is checked as a whole.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @staticmethod
    def from_function(
        step: Callable[[Any, str, Any], tuple[Any, Any]],
        init: Any,
        *,
        name: str | None = None,
    ) -> Model:
        """A model from a plain function ``step(state, kind, input) -> (new_state,
        output)``.

        ``init`` is the initial state (a hashable value), or a callable taking no
        arguments that returns it.
        """
        return _FunctionModel(step, init, name or str(getattr(step, "__name__", "function")))

    @staticmethod
    def from_state_machine(
        machine: Callable[..., Any],
        *args: Any,
        key: Callable[[Any], Hashable] | None = None,
        partition_key: Callable[[str, Any], Hashable | None] | None = None,
        name: str | None = None,
    ) -> Model:
        """A model from your :class:`~trioraft.StateMachine` class (or factory):
        ``machine(*args)`` makes the initial machine.

        Kind ``"write"`` calls the machine's ``write(input)`` and kind ``"read"`` calls
        ``read(input)`` (which must not change the state). An exception either raises is
        the output, and matches an observed exception of the same type with the same
        ``args`` (see :func:`outputs_match`).

        **Copies of the state.** When the machine's class implements ``snapshot()`` and
        ``restore()`` (both: overriding :class:`~trioraft.StateMachine`'s, and
        ``snapshot()`` not raising :exc:`NotImplementedError`), a model state is a deep
        copy of ``snapshot()``, put back with ``restore()`` of a deep copy. Otherwise
        (a machine with only ``write`` and ``read``), a model state is a machine instance
        that nothing changes any more: a read runs on it, a write on a deep copy of it
        (:func:`copy.deepcopy`'s meaning), which becomes the new state. Attributes that
        cannot be copied (locks, open files) need ``snapshot()`` and ``restore()``.

        **Memoization key** of a state (the snapshot, or the instance), in this order:

        1. ``key(snapshot)`` when ``key`` is given (given the instance, without snapshots);
        2. for an instance: its class and the key of its attributes (its ``__dict__``),
           made as for a snapshot; an instance with ``__slots__`` or its own copying
           hooks is keyed by its :mod:`pickle` bytes, or failing that by its ``repr``;
        3. the snapshot itself when it is hashable;
        4. the snapshot with its lists turned into tuples, dicts into frozensets of
           items and sets into frozensets (marked so that a list and a tuple stay
           different), when every leaf is hashable. Dict insertion order is ignored:
           if your machine's behaviour depends on it, give a ``key`` that encodes it;
        5. the snapshot's :mod:`pickle` bytes (two equal states may then differ, which
           only costs memoization);
        6. its ``repr``, as a last resort (two different states must not share one).

        **Checking by key.** ``partition_key(kind, input)``, when given, is the model's
        :meth:`partition_key`: the one independent part of the state (a key) that the
        operation uses. Give it only when what a command does and returns depends on its
        key's part of the state alone, and it changes no other part. Then the history's
        operations are checked key by key, which is far faster on large states.
        :meth:`command_key` reads the key of dict-like commands (``("set", key,
        value)``, ``("get", key)``...)::

            model = Model.from_state_machine(KeyValue, partition_key=Model.command_key)

        An operation whose key is ``None`` (a query over all the keys, say) makes the
        checker check the whole history at once. Without ``partition_key``, it always
        does: the model does not guess from the commands' shape whether a command such
        as ``("put", key, value)`` also reads or changes other keys.

        With snapshots, the model holds one machine instance: do not use it from two
        checks at once.
        """
        from ._machine_model import _StateMachineModel

        return _StateMachineModel(machine, args, key, partition_key, name)

    @staticmethod
    def command_key(kind: str, input: Any) -> Hashable | None:
        """The key of a dict-like command, for :meth:`from_state_machine`'s
        ``partition_key``: ``input[1]`` when ``input`` is a tuple or list of two items
        or more whose first is a string, such as ``("set", key, value)``, ``("get",
        key)``, ``("cas", key, old, new)`` or ``("delete", key)``; ``kind`` is not used.
        Any other input (``("keys",)``, ``None``), or an unhashable key, gives ``None``.
        Lists in the key count as tuples (JSON makes lists of tuples)."""
        if not isinstance(input, (tuple, list)) or len(input) < 2:
            return None
        if not isinstance(input[0], str):
            return None
        key = _loose(input[1])
        try:
            hash(key)
        except TypeError:
            return None
        return key  # type: ignore[no-any-return]


class _FunctionModel(Model):
    def __init__(
        self, step: Callable[[Any, str, Any], tuple[Any, Any]], init: Any, name: str
    ) -> None:
        self._step = step
        self._init = init
        self.name = name

    def init(self) -> Any:
        return self._init() if callable(self._init) else self._init

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        return self._step(state, kind, input)


def _counter_step(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    if kind == "write":
        total = state + input
        return total, total
    if kind == "read":
        return state, state
    raise ValueError(f"the counter model knows kinds 'write' and 'read', not {kind!r}")


def counter_model(start: int = 0) -> Model:
    """A counter, as the API's example: kind ``"write"`` adds its input to the total and
    returns the new total; kind ``"read"`` returns the total (its input is ignored). The
    state is the total."""
    return _FunctionModel(_counter_step, start, "counter")


def _kv_step(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    op = input[0]
    if op == "get":
        key = _loose(input[1])
        for k, v in state:
            if k == key:
                return state, v
        return state, None
    items = dict(state)
    if op == "put":
        _, key, value = input
        items[_loose(key)] = _loose(value)
        return frozenset(items.items()), value
    if op == "cas":
        _, key, old, new = input
        key = _loose(key)
        if outputs_match(items.get(key), old):
            items[key] = _loose(new)
            return frozenset(items.items()), True
        return state, False
    raise ValueError(f"the key-value model knows 'put', 'get' and 'cas', not {op!r}")


class _KVModel(_FunctionModel):
    def describe_state(self, state: Any) -> str:
        items = sorted(state, key=repr)
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}"

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        return _loose(input[1])  # type: ignore[no-any-return]


def kv_model() -> Model:
    """A key-value store. The input says what to do (the kind is not used):

    * ``("put", key, value)`` stores ``value`` and returns it;
    * ``("get", key)`` returns the value, or ``None`` when there is none;
    * ``("cas", key, old, new)`` stores ``new`` if the value is ``old`` (``None``: no
      value) and returns ``True``, else returns ``False``.

    The state is a frozenset of ``(key, value)`` items, so keys and values must be
    hashable (lists, as JSON returns tuples, are stored as tuples). Every operation uses
    one key, so the checker checks each key's operations separately
    (:meth:`Model.partition_key`).
    """
    return _KVModel(_kv_step, frozenset(), "key-value")
