"""The steps of a :class:`~trioraft.testing.Model` made of a
:class:`~trioraft.StateMachine`
(:meth:`Model.from_state_machine <trioraft.testing.Model.from_state_machine>`): this
module's :class:`_StateMachineSteps` is that model's ``init``, ``step`` and
``partition_key``, and ``_models`` joins it to :class:`~trioraft.testing.Model`.

A model state is a copy of the machine's state: the machine instance itself when the
machine cannot snapshot, else a copy of what its ``snapshot()`` returns. A step runs the
machine's own ``write`` or ``read`` on it. Copies have :func:`copy.deepcopy`'s meaning;
dicts, lists and sets whose items are all plain values (numbers, strings, bytes,
``None``) are copied with one C-level call instead of item by item.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from .._state_machine import StateMachine

__all__: list[str] = []

#: The types of values that need no copy and are their own memoization key.
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


def _atomic(values: Iterable[Any]) -> bool:
    return _ATOMS.issuperset(map(type, values))


# --------------------------------------------------------------------------- copies
def _copy(value: Any, memo: dict[int, Any]) -> Any:
    """A deep copy of ``value`` (``copy.deepcopy(value, memo)``), with the containers of
    plain values copied in one call. ``memo`` keeps shared and cyclic references shared
    and cyclic in the copy, as :func:`copy.deepcopy`'s does."""
    cls = type(value)
    if cls in _ATOMS:
        return value
    done = memo.get(id(value), memo)
    if done is not memo:
        return done
    result: Any
    if cls is dict:
        if _atomic(value.values()) and _atomic(value):
            result = value.copy()
        else:
            result = memo[id(value)] = {}
            for k, v in value.items():
                result[_copy(k, memo)] = _copy(v, memo)
            return result
    elif cls is list:
        if _atomic(value):
            result = value.copy()
        else:
            result = memo[id(value)] = []
            result.extend(_copy(v, memo) for v in value)
            return result
    elif cls is set and _atomic(value):
        result = value.copy()
    elif (cls is tuple or cls is frozenset) and _atomic(value):
        return value
    else:
        return copy.deepcopy(value, memo)
    memo[id(value)] = result
    return result


def _deep_copy(value: Any) -> Any:
    return _copy(value, {})


def _plain_instances(cls: type) -> bool:
    """Whether instances of ``cls`` are copied by :func:`copy.deepcopy` as a new instance
    with a deep copy of their ``__dict__``, so that :func:`_copy_instance` may do that
    itself (no slots, nor any of the hooks that change how objects are copied)."""
    if any("__slots__" in vars(c) for c in cls.__mro__[:-1]):
        return False
    for name in ("__deepcopy__", "__setstate__", "__getnewargs__", "__getnewargs_ex__"):
        if hasattr(cls, name):
            return False
    for name in ("__new__", "__reduce__", "__reduce_ex__", "__getstate__"):
        if getattr(cls, name, None) is not getattr(object, name, None):
            return False
    return True


def _copy_instance(machine: Any, plain: bool) -> Any:
    """A deep copy of a machine instance."""
    if not plain:
        return copy.deepcopy(machine)
    new = object.__new__(type(machine))
    new.__dict__.update(_copy(machine.__dict__, {id(machine): new}))
    return new


# ------------------------------------------------------------------------------ keys
class _Tag:
    """Marks frozen containers in snapshot keys so that a list and a tuple differ."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_LIST, _DICT, _SET, _PICKLED, _REPR, _INSTANCE = (
    _Tag("list"),
    _Tag("dict"),
    _Tag("set"),
    _Tag("pickled"),
    _Tag("repr"),
    _Tag("instance"),
)


def _freeze(value: Any) -> Any:
    cls = type(value)
    if cls is dict:
        try:  # when every value is hashable, as its frozen form would be
            return (_DICT, frozenset(value.items()))
        except TypeError:
            pass
    elif cls is list and _atomic(value):
        return (_LIST, tuple(value))
    if isinstance(value, (str, bytes, int, float, complex, type(None))):
        return value
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, list):
        return (_LIST, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return (_DICT, frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (_SET, frozenset(_freeze(v) for v in value))
    hash(value)  # TypeError for any other unhashable value
    return value


def _snapshot_key(snapshot: Any) -> Hashable:
    try:
        hash(snapshot)
        return snapshot  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        return _freeze(snapshot)  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        return (_PICKLED, pickle.dumps(snapshot))
    except Exception:
        return (_REPR, repr(snapshot))


def _instance_key(machine: Any, plain: bool) -> Hashable:
    """The memoization key of a machine instance: its class and its attributes."""
    if plain:
        return (_INSTANCE, type(machine), _snapshot_key(machine.__dict__))
    try:
        return (_PICKLED, pickle.dumps(machine))
    except Exception:
        return (_REPR, repr(machine))  # with its id, unless the class says better


# ----------------------------------------------------------------------------- model
class _MachineState:
    """A state of a :class:`~trioraft.StateMachine` model: a snapshot (or a machine
    instance, which nothing changes any more) and its memoization key, computed when
    first needed (most states the search makes are dropped before that)."""

    __slots__ = ("_hash", "_key", "_model", "snapshot")

    def __init__(self, snapshot: Any, model: _StateMachineSteps) -> None:
        self.snapshot = snapshot
        self._model = model
        self._hash: int | None = None
        self._key: Hashable = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._key = self._model._key_of(self.snapshot)
            self._hash = hash(self._key)
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            isinstance(other, _MachineState)
            and hash(self) == hash(other)
            and self._key == other._key
        )

    def __repr__(self) -> str:
        return self._model._describe(self.snapshot)


def _implements_snapshots(machine: Any) -> bool:
    """Whether the machine's class has ``snapshot`` and ``restore`` of its own."""
    for name in ("snapshot", "restore"):
        method = getattr(type(machine), name, None)
        if not callable(method) or method is getattr(StateMachine, name):
            return False
    return True


def _apply(machine: Any, write: bool, input: Any) -> Any:
    try:
        return machine.write(input) if write else machine.read(input)
    except Exception as exc:
        return exc


class _StateMachineSteps:
    """The steps of a model made of a state machine (see :meth:`Model.from_state_machine
    <trioraft.testing.Model.from_state_machine>`), for ``_models`` to join to
    :class:`~trioraft.testing.Model`.

    With snapshots, steps run on one machine instance, ``_machine``, which holds the
    state ``_loaded``. Without, a state is a machine instance that nothing changes: a
    read runs on it, and a write on a copy of it, which becomes the new state.
    """

    def __init__(
        self,
        machine: Callable[..., Any],
        args: tuple[Any, ...],
        key: Callable[[Any], Hashable] | None,
        partition_key: Callable[[str, Any], Hashable | None] | None,
        name: str | None,
    ) -> None:
        self._factory = machine
        self._args = args
        self._key = key
        self._partition_key = partition_key
        self.name = name or str(getattr(machine, "__name__", "state machine"))
        self._machine: Any = None
        self._loaded: _MachineState | None = None
        self._snapshots = False
        self._plain = False
        state = self.init()  # fail now if the machine cannot be made, or copied
        if not self._snapshots:
            try:
                _copy_instance(state.snapshot, self._plain)
            except Exception as exc:
                raise TypeError(
                    f"{self.name} cannot be copied to serve as a model ({exc}): give it "
                    "snapshot() and restore()"
                ) from exc

    def init(self) -> Any:
        machine = self._factory(*self._args)
        self._loaded = None
        self._snapshots = _implements_snapshots(machine)
        if self._snapshots:
            self._machine = machine
            try:
                return self._capture()
            except NotImplementedError:
                self._snapshots = False
        self._machine = None
        self._plain = _plain_instances(type(machine))
        return _MachineState(machine, self)

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        if kind not in ("write", "read"):
            raise ValueError(f"a state machine model knows kinds 'write' and 'read', not {kind!r}")
        write = kind == "write"
        if self._snapshots:
            if self._loaded is not state:
                self._machine.restore(_deep_copy(state.snapshot))
                self._loaded = state
            output = _apply(self._machine, write, input)
            return (self._capture() if write else state), output
        if not write:
            return state, _apply(state.snapshot, False, input)
        machine = _copy_instance(state.snapshot, self._plain)
        output = _apply(machine, True, input)
        return _MachineState(machine, self), output

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        if self._partition_key is None:
            return None
        return self._partition_key(kind, input)

    def _capture(self) -> _MachineState:
        state = _MachineState(_deep_copy(self._machine.snapshot()), self)
        self._loaded = state
        return state

    def _key_of(self, snapshot: Any) -> Hashable:
        if self._key is not None:
            return self._key(snapshot)
        if self._snapshots:
            return _snapshot_key(snapshot)
        return _instance_key(snapshot, self._plain)

    def _describe(self, snapshot: Any) -> str:
        own_repr = any("__repr__" in vars(c) for c in type(snapshot).__mro__[:-1])
        if self._snapshots or not self._plain or own_repr:
            return repr(snapshot)
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(snapshot).items())
        return f"{type(snapshot).__name__}({fields})"
