"""Sequential specifications for the linearizability checker: :class:`Model`, the ready
models (:func:`counter_model`, :func:`kv_model`), :func:`outputs_match` and
:data:`UNKNOWN`.

A model built from a :class:`~trioraft.StateMachine` steps through the machinery of
``_machine_model``.

Besides its public methods, a model gives the checker one *transition* per operation
(``Model._steps``): a function from a state to the state the operation leaves
when it returns its recorded output there, or :data:`_REFUSED` when it cannot. The
ready models make theirs without the general machinery (no tuple of state and output,
no output comparison at run time), and :func:`kv_model` checked key by key keeps one
key's value as its state, as a hand-written model of one key would.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, NamedTuple

from ._machine_model import _StateMachineSteps
from ._operation import Operation

__all__ = ["UNKNOWN", "Model", "counter_model", "kv_model", "outputs_match"]

#: A transition: the state after an operation, or :data:`_REFUSED`.
Transition = Callable[[Any], Any]


class _Steps(NamedTuple):
    """What a model gives the checker for the operations of one part of a history."""

    #: The part's initial state.
    initial: Any
    #: One transition per operation.
    transitions: list[Transition]
    #: Whether each operation is read-only (:meth:`Model.read_only`).
    read_only: list[bool]
    #: The function that turns a state of the transitions into one of the model.
    public: Transition
    #: For each read-only operation that returns its output in one state only, that
    #: state (its transition is then not called); ``_ANY`` for the others.
    needs: list[Any]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: The output :meth:`Model.step_with_output` is given for an operation of unknown
#: outcome (the caller never saw what it returned, if it took effect at all).
UNKNOWN: Final[Any] = _Sentinel("UNKNOWN")

#: What a transition returns when its operation cannot return its recorded output.
_REFUSED: Final[Any] = _Sentinel("REFUSED")

#: In ``_Steps.needs``: no one state.
_ANY: Final[Any] = _Sentinel("ANY")

#: The value of a key that has none, in :func:`kv_model`'s states of one key.
_ABSENT: Final[Any] = _Sentinel("ABSENT")


def _loose(value: Any) -> Any:
    """Lists as tuples, recursively: what a JSON round trip does not preserve."""
    if isinstance(value, (list, tuple)):
        return tuple(_loose(v) for v in value)
    return value


_SEQUENCES = (tuple, list)


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


def _same(state: Any) -> Any:
    return state


# ----------------------------------------------------------------- transitions
# (Their data are defaults rather than a closure's cells: fewer objects to collect.)
def _equals(output: Any) -> Transition:
    """A read that fits in the state equal to its plain ``output``."""

    def transition(state: Any, output: Any = output) -> Any:
        return state if state == output else _REFUSED

    return transition


def _adds(amount: Any) -> Transition:
    def transition(state: Any, amount: Any = amount) -> Any:
        return state + amount

    return transition


def _puts(value: Any) -> Transition:
    def transition(state: Any, value: Any = value) -> Any:
        return value

    return transition


def _appends(value: Any) -> Transition:
    def transition(state: Any, value: Any = value) -> Any:
        return value if state is _ABSENT else _appended(state, value)

    return transition


def _stepped(
    step: Callable[[Any, str, Any], tuple[Any, Any]],
    match: Callable[[Any, Any], bool],
    kind: str,
    input: Any,
    output: Any,
) -> Transition:
    """The transition of an operation of known outcome, from ``step`` and ``match``."""

    def transition(
        state: Any,
        step: Any = step,
        match: Any = match,
        args: Any = (kind, input),
        output: Any = output,
    ) -> Any:
        new, out = step(state, *args)
        return new if match(out, output) else _REFUSED

    return transition


def _stepped_blind(
    step: Callable[[Any, str, Any], tuple[Any, Any]], kind: str, input: Any
) -> Transition:
    """The transition of an operation of unknown outcome, from ``step``."""

    def transition(state: Any, step: Any = step, kind: str = kind, input: Any = input) -> Any:
        return step(state, kind, input)[0]

    return transition


def _observed(
    step: Callable[[Any, str, Any, Any], tuple[bool, Any]], kind: str, input: Any, output: Any
) -> Transition:
    """The transition of an operation, from a step that sees the output."""

    def transition(state: Any, step: Any = step, args: Any = (kind, input, output)) -> Any:
        ok, new = step(state, *args)
        return new if ok else _REFUSED

    return transition


# ------------------------------------------------------------------------ Model
class Model:
    """A sequential specification: what one operation does to a state, and what it
    returns.

    Subclass it and override :meth:`init` and :meth:`step` (or
    :meth:`step_with_output`), or build one from a function (:meth:`from_function`) or
    from your :class:`~trioraft.StateMachine` (:meth:`from_state_machine`). Ready
    models: :func:`counter_model`, :func:`kv_model`.

    **States must be hashable, and equal only when they behave the same**: the checker
    memoizes ``(operations linearized, state)`` pairs, places at once an operation that
    returns its output and leaves the state equal (a read: nothing could tell it from
    one placed later), and never places an operation of unknown outcome that leaves the
    state equal (nothing could observe it). Use immutable values: numbers, strings,
    tuples, frozensets. A state must never be mutated in place: :meth:`step` returns a
    new one.
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

    def step_with_output(self, state: Any, kind: str, input: Any, output: Any) -> tuple[bool, Any]:
        """Whether operation ``kind(input)`` may return ``output`` from ``state``, and the
        state it then leaves: ``(ok, new_state)`` (``new_state`` does not matter when
        ``ok`` is false). This is how the checker steps the model.

        ``output`` is what the caller recorded, or :data:`UNKNOWN` for an operation of
        unknown outcome (return the state it leaves if it took effect; ``ok`` false says
        it could not have taken effect there). Override it for a *nondeterministic*
        specification, one whose step must see the output to know the new state (a
        write that may fail and leave the state as it was, an allocation that may return
        any free slot), as Porcupine's ``Step(state, input, output)`` does.

        By default: :meth:`step`, then :meth:`outputs_match` of its output with the
        recorded one (any output for :data:`UNKNOWN`)."""
        new_state, expected = self.step(state, kind, input)
        return output is UNKNOWN or self.outputs_match(expected, output), new_state

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
        checks the operations of each key as a history of their own, each from
        :meth:`init`, which is much faster and equivalent when the model's state is a
        product of independent parts, one per key, that operations of other keys neither
        change nor observe (as the keys of :func:`kv_model`, or those a
        :meth:`from_state_machine` or :meth:`from_function` model is given). By default
        ``None``: the history is checked as a whole.
        """
        return None

    def _parts(self, ops: Sequence[Operation]) -> dict[Hashable, list[Operation]]:
        """For the checker: the operations of each key (:meth:`partition_key`), in the
        order of ``ops``, or all of them under ``None`` when one has no key."""
        parts: dict[Hashable, list[Operation]] = {}
        for op in ops:
            key = self.partition_key(op.kind, op.input)
            if key is None:
                return {None: list(ops)}
            parts.setdefault(key, []).append(op)
        return parts or {None: list(ops)}

    def read_only(self, kind: str, input: Any) -> bool:
        """Whether operation ``kind(input)`` never changes the state, whatever the state
        (a read). By default ``False``.

        The checker places such an operation as soon as it returns its recorded output:
        when a configuration has a linearization, it has one that begins with that
        operation (nothing can tell it from the same operation placed later). Reads then
        cost one step each, instead of multiplying the orders the search tries. Say
        ``True`` only when it holds for every state: an operation that merely happens to
        leave one state as it was (writing the value already there) must be ordered like
        any other.
        """
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def _steps(self, key: Hashable | None, ops: Sequence[Operation], initial: Any) -> _Steps:
        """For the checker: the steps of the operations ``ops``, all those of the part of
        key ``key`` (``None``: the whole history), from ``initial``, the result of
        :meth:`init` (made once for all the parts)."""
        read_only = [self.read_only(op.kind, op.input) for op in ops]
        seen = self._raw_step_with_output()
        if seen is not None:
            made = [_observed(seen, op.kind, op.input, _seen_output(op)) for op in ops]
            return _Steps(initial, made, read_only, _same, [_ANY] * len(ops))
        step = self._raw_step()
        match = self.outputs_match if _overrides(self, "outputs_match") else outputs_match
        transitions = [
            _stepped_blind(step, op.kind, op.input)
            if op.unknown
            else _stepped(step, match, op.kind, op.input, op.output)
            for op in ops
        ]
        return _Steps(initial, transitions, read_only, _same, [_ANY] * len(ops))

    def _raw_step_with_output(self) -> Callable[[Any, str, Any, Any], tuple[bool, Any]] | None:
        """The function the checker calls for :meth:`step_with_output`, or ``None`` to
        call :meth:`step` and :meth:`outputs_match` itself."""
        return self.step_with_output if _overrides(self, "step_with_output") else None

    def _raw_step(self) -> Callable[[Any, str, Any], tuple[Any, Any]]:
        """The function the checker calls for :meth:`step` (one call fewer when it can)."""
        return self.step

    @staticmethod
    def from_function(
        step: Callable[..., tuple[Any, Any]],
        init: Any,
        *,
        name: str | None = None,
        partition_key: Callable[[str, Any], Hashable | None] | None = None,
        read_only: Callable[[str, Any], bool] | None = None,
        sees_output: bool = False,
    ) -> Model:
        """A model from a plain function ``step(state, kind, input) -> (new_state,
        output)``.

        ``init`` is the initial state (a hashable value), or a callable taking no
        arguments that returns it.

        ``partition_key(kind, input)``, when given, is the model's :meth:`partition_key`:
        the key of the one independent part of the state that the operation uses. Each
        key's operations are then checked as a history of their own, from ``init``, so
        ``step`` may as well keep the state of one key only (a register's value), as
        Porcupine's partitioned models do.

        ``read_only(kind, input)``, when given, is the model's :meth:`read_only`: whether
        the operation never changes the state (a read), which the checker uses to place
        it at once.

        With ``sees_output=True``, ``step`` is called as ``step(state, kind, input,
        output)`` and returns ``(ok, new_state)``: whether the operation may return the
        recorded ``output`` there, and the state it leaves (see
        :meth:`step_with_output`; ``output`` is :data:`UNKNOWN` for an operation of
        unknown outcome). Such a model has no :meth:`step`, so a rejection cannot say
        what it would have returned instead.
        """
        if not callable(step):
            raise TypeError(f"step must be a function, not {step!r}")
        for what, given in (("partition_key", partition_key), ("read_only", read_only)):
            if given is not None and not callable(given):
                raise TypeError(f"{what} must be a function or None, not {given!r}")
        label = name or str(getattr(step, "__name__", "function"))
        made = _ObservingFunctionModel if sees_output else _FunctionModel
        return made(step, init, label, partition_key, read_only)

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


def _overrides(model: Model, name: str) -> bool:
    """Whether ``model``'s class has its own ``name``, not :class:`Model`'s."""
    return getattr(type(model), name) is not getattr(Model, name)


class _FunctionModel(Model):
    def __init__(
        self,
        step: Callable[..., tuple[Any, Any]],
        init: Any,
        name: str,
        partition_key: Callable[[str, Any], Hashable | None] | None = None,
        read_only: Callable[[str, Any], bool] | None = None,
    ) -> None:
        self._step = step
        self._init = init
        self._key = partition_key
        self._read_only = read_only
        self.name = name

    def init(self) -> Any:
        return self._init() if callable(self._init) else self._init

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        return self._step(state, kind, input)

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        return None if self._key is None else self._key(kind, input)

    def read_only(self, kind: str, input: Any) -> bool:
        return self._read_only is not None and bool(self._read_only(kind, input))

    def _raw_step(self) -> Callable[[Any, str, Any], tuple[Any, Any]]:
        return self._step if type(self).step is _FunctionModel.step else self.step


class _ObservingFunctionModel(_FunctionModel):
    """:meth:`Model.from_function` with ``sees_output=True``."""

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        raise NotImplementedError(
            f"model {self.name!r} sees the output: it has no step(state, kind, input); "
            "call step_with_output(state, kind, input, output)"
        )

    def step_with_output(self, state: Any, kind: str, input: Any, output: Any) -> tuple[bool, Any]:
        ok, new_state = self._step(state, kind, input, output)
        return bool(ok), new_state

    def _raw_step_with_output(self) -> Callable[[Any, str, Any, Any], tuple[bool, Any]]:
        return self._step


def _seen_output(op: Operation) -> Any:
    """The output a step that sees it is given: :data:`UNKNOWN` for an unknown outcome."""
    return UNKNOWN if op.ret is None else op.output


class _StateMachineModel(_StateMachineSteps, Model):
    """See :meth:`Model.from_state_machine` (the steps are ``_machine_model``'s)."""

    def read_only(self, kind: str, input: Any) -> bool:
        return kind == "read"  # the model never changes its state on a read


def _needs(ops: Sequence[Operation], reads: list[bool]) -> list[Any]:
    """``_Steps.needs`` when a read returns the state itself (a counter's total, a key's
    value): the state in which each read of known, plain output (not ``None``) fits."""
    return [
        op.output
        if read and op.ret is not None and op.output is not None and op.output.__class__ in _PLAIN
        else _ANY
        for op, read in zip(ops, reads, strict=True)
    ]


# ---------------------------------------------------------------------- counter
#: Outputs that equal a value exactly when :func:`outputs_match` says they match it.
_PLAIN = frozenset({type(None), bool, int, float, str, bytes})


def _match(expected: Any, observed: Any) -> bool:
    """:func:`outputs_match`, without its call when both values are plain."""
    if expected.__class__ in _PLAIN and observed.__class__ in _PLAIN:
        return bool(expected == observed)
    return outputs_match(expected, observed)


def _counter_step(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    if kind == "write":
        total = state + input
        return total, total
    if kind == "read":
        return state, state
    raise ValueError(f"the counter model knows kinds 'write' and 'read', not {kind!r}")


def _unused(state: Any) -> Any:
    """The transition of a read the checker matches by ``_Steps.needs``: never called."""
    raise AssertionError("a read matched by the state it needs was stepped")


def _counter_transition(op: Operation) -> Transition:
    kind, amount, output = op.kind, op.input, op.output
    if kind not in ("write", "read"):
        _counter_step(0, kind, amount)  # raises the error that names the kind
    if op.ret is None:
        return _same if kind == "read" else _adds(amount)
    if output.__class__ not in _PLAIN:
        return _stepped(_counter_step, outputs_match, kind, amount, output)
    if kind == "read":
        return _equals(output)

    def write(state: Any, amount: Any = amount, output: Any = output) -> Any:
        total = state + amount
        return total if total == output else _REFUSED

    return write


class _CounterModel(_FunctionModel):
    def read_only(self, kind: str, input: Any) -> bool:
        return kind == "read"

    def _steps(self, key: Hashable | None, ops: Sequence[Operation], initial: Any) -> _Steps:
        reads = [op.kind == "read" for op in ops]
        needs = _needs(ops, reads)
        transitions = [
            _unused if need is not _ANY else _counter_transition(op)
            for op, need in zip(ops, needs, strict=True)
        ]
        return _Steps(initial, transitions, reads, _same, needs)


def counter_model(start: int = 0) -> Model:
    """A counter, as the API's example: kind ``"write"`` adds its input to the total and
    returns the new total; kind ``"read"`` returns the total (its input is ignored). The
    state is the total."""
    return _CounterModel(_counter_step, start, "counter")


# -------------------------------------------------------------------- key-value
_KV_ARITY = {"get": 2, "put": 3, "append": 3, "cas": 4}


def _kv_verb(input: Any) -> str:
    """The verb of a key-value input, checked: ``ValueError`` when it is not one."""
    if input.__class__ in _SEQUENCES and input and _KV_ARITY.get(input[0]) == len(input):
        return input[0]  # type: ignore[no-any-return]
    if isinstance(input, (tuple, list)) and input and input[0] not in _KV_ARITY:
        raise ValueError(
            f"the key-value model knows 'get', 'put', 'append' and 'cas', not {input[0]!r}"
        )
    raise ValueError(
        "a key-value input is ('get', key), ('put', key, value), ('append', key, value) "
        f"or ('cas', key, old, new), not {input!r}"
    )


def _appended(current: Any, value: Any) -> Any:
    try:
        return current + value
    except TypeError:
        raise ValueError(f"cannot append {value!r} to {current!r}") from None


def _kv_step(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    verb = _kv_verb(input)
    key = _loose(input[1])
    if verb == "get":
        for k, v in state:
            if k == key:
                return state, v
        return state, None
    items = dict(state)
    if verb == "cas":
        if not outputs_match(items.get(key), input[2]):
            return state, False
        items[key] = _loose(input[3])
        return frozenset(items.items()), True
    value = _loose(input[2])
    if verb == "append" and key in items:
        value = _appended(items[key], value)
    items[key] = value
    return frozenset(items.items()), input[2]


def _kv_get(output: Any) -> Transition:
    """A get of one key's value (``_ABSENT`` when it has none) that returned ``output``."""
    if type(output) in _PLAIN:
        if output is None:
            return lambda state: state if state is _ABSENT or state is None else _REFUSED
        return _equals(output)

    def get(state: Any, output: Any = output) -> Any:
        return state if outputs_match(None if state is _ABSENT else state, output) else _REFUSED

    return get


def _kv_transition(op: Operation) -> Transition:
    """The transition of a key-value operation on the value of its key alone."""
    input, unknown, output = op.input, op.ret is None, op.output
    verb = _kv_verb(input)
    if verb == "get":
        return _same if unknown else _kv_get(output)
    if verb == "cas":
        old, new = input[2], _loose(input[3])
        if_true = unknown or _match(True, output)
        if_false = unknown or _match(False, output)

        def cas(
            state: Any,
            old: Any = old,
            new: Any = new,
            if_true: bool = if_true,
            if_false: bool = if_false,
        ) -> Any:
            if outputs_match(None if state is _ABSENT else state, old):
                return new if if_true else _REFUSED
            return state if if_false else _REFUSED

        return cas
    value = input[2]
    if not (unknown or _match(value, output)):
        return lambda state: _REFUSED
    if value.__class__ in _SEQUENCES:
        value = _loose(value)
    return _puts(value) if verb == "put" else _appends(value)


class _KVModel(_FunctionModel):
    def describe_state(self, state: Any) -> str:
        items = sorted(state, key=repr)
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}"

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        _kv_verb(input)
        return _loose(input[1])  # type: ignore[no-any-return]

    def _parts(self, ops: Sequence[Operation]) -> dict[Hashable, list[Operation]]:
        parts: dict[Hashable, list[Operation]] = {}
        try:
            for op in ops:
                key = op.input[1]
                if key.__class__ in _SEQUENCES:
                    key = _loose(key)
                elif key is None:
                    return {None: list(ops)}
                part = parts.get(key)
                if part is None:
                    parts[key] = [op]
                else:
                    part.append(op)
        except (TypeError, IndexError, KeyError):
            return super()._parts(ops)  # which says what is wrong with which input
        return parts

    def read_only(self, kind: str, input: Any) -> bool:
        return _kv_verb(input) == "get"

    def _steps(self, key: Hashable | None, ops: Sequence[Operation], initial: Any) -> _Steps:
        if key is None:  # the whole store: the general way
            return super()._steps(key, ops, initial)

        def store(value: Any) -> Any:
            return frozenset() if value is _ABSENT else frozenset({(key, value)})

        gets: list[bool] = []
        needs: list[Any] = []
        transitions: list[Transition] = []
        for op in ops:
            get = _kv_verb(op.input) == "get"
            output = op.output
            gets.append(get)
            if get and op.ret is not None and output is not None and output.__class__ in _PLAIN:
                needs.append(output)
                transitions.append(_unused)
            else:
                needs.append(_ANY)
                transitions.append(_kv_transition(op))
        return _Steps(_ABSENT, transitions, gets, store, needs)


def kv_model() -> Model:
    """A key-value store. The input says what to do (the kind is not used):

    * ``("put", key, value)`` stores ``value`` and returns it;
    * ``("append", key, value)`` stores the key's value followed by ``value`` (its
      ``+``: strings and tuples concatenate; a key without a value gets ``value``
      itself) and returns ``value``, as Porcupine's key-value model does;
    * ``("get", key)`` returns the value, or ``None`` when there is none;
    * ``("cas", key, old, new)`` stores ``new`` if the value is ``old`` (``None``: no
      value) and returns ``True``, else returns ``False``.

    The state is a frozenset of ``(key, value)`` items, so keys and values must be
    hashable (lists, as JSON returns tuples, are stored as tuples). Every operation uses
    one key, so the checker checks each key's operations separately
    (:meth:`Model.partition_key`), with the key's value alone as the state. Any other
    input raises :exc:`ValueError`.
    """
    return _KVModel(_kv_step, frozenset(), "key-value")
