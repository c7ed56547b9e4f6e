"""The linearizability checker: histories, models, the search, and real clusters."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from histories import brute_force
from hypothesis import given, note, settings
from hypothesis import strategies as st

import trioraft
from trioraft import bench
from trioraft.testing import (
    History,
    LinearizabilityResult,
    Model,
    Operation,
    check_linearizability,
    counter_model,
    derive_seed,
    kv_model,
    open_cluster,
    outputs_match,
    run,
)

from machines import Counter

INF = float("inf")


def op(
    id: int,
    client: Any,
    kind: str,
    input: Any,
    output: Any,
    call: float,
    ret: float | None,
) -> Operation:
    return Operation(id, client, kind, input, output, call, ret)


def w(
    id: int, client: Any, amount: int, total: int | None, call: float, ret: float | None
) -> Operation:
    """A counter write (``total=None`` with ``ret=None``: unknown outcome)."""
    return op(id, client, "write", amount, total, call, ret)


def r(id: int, client: Any, total: int, call: float, ret: float) -> Operation:
    """A counter read."""
    return op(id, client, "read", None, total, call, ret)


def _call_key(o: Operation) -> tuple[float, float]:
    return (o.call, -0.5 if o.call_seq is None else o.call_seq)


def _ret_key(o: Operation) -> tuple[float, float]:
    if o.ret is None:
        return (INF, INF)
    return (o.ret, 0.5 if o.ret_seq is None else o.ret_seq)


def assert_witness(ops: Sequence[Operation], result: LinearizabilityResult, model: Model) -> None:
    """``result.linearization`` is a legal sequential history that explains ``ops``."""
    assert result.ok is True, str(result)
    order = result.linearization
    assert order is not None
    ids = [o.id for o in order]
    assert len(ids) == len(set(ids))
    by_id = {o.id: o for o in ops}
    assert {o.id for o in ops if not o.unknown} <= set(ids) <= set(by_id)
    # Real time: nothing placed after an operation that returned before it was called.
    latest_call: tuple[float, float] = (-INF, -INF)
    for o in order:
        assert _ret_key(o) > latest_call, f"#{o.id} is placed after an operation called later"
        latest_call = max(latest_call, _call_key(o))
    # The model explains every recorded output.
    state = model.init()
    for o in order:
        state, output = model.step(state, o.kind, o.input)
        if not o.unknown:
            assert outputs_match(output, o.output), (o, output)


def check(ops: Sequence[Operation], model: Model | None = None) -> LinearizabilityResult:
    model = model if model is not None else counter_model()
    result = check_linearizability(ops, model)
    if result.ok:
        assert_witness(ops, result, model)
    return result


# ----------------------------------------------------------------- hand-written histories
def test_empty_history_is_linearizable() -> None:
    result = check([])
    assert result.ok is True
    assert result.linearization == []
    assert bool(result)


def test_sequential_counter_history() -> None:
    ops = [
        w(0, "a", 5, 5, 0, 1),
        r(1, "b", 5, 2, 3),
        w(2, "a", 3, 8, 4, 5),
        r(3, "b", 8, 6, 7),
    ]
    result = check(ops)
    assert [o.id for o in result.linearization or []] == [0, 1, 2, 3]


@pytest.mark.parametrize("first", [1, 2])
def test_concurrent_writes_may_take_effect_in_either_order(first: int) -> None:
    # Two overlapping writes: their totals say which went first; both orders are legal.
    amounts = {1: 1, 2: 10}
    second = 3 - first
    totals = {first: amounts[first], second: 11}
    ops = [
        w(0, "a", amounts[1], totals[1], 0, 10),
        w(1, "b", amounts[2], totals[2], 1, 9),
        r(2, "c", 11, 12, 13),
    ]
    result = check(ops)
    assert [o.input for o in result.linearization or []][:2] == [amounts[first], amounts[second]]


@pytest.mark.parametrize("seen", [0, 1])
def test_read_concurrent_with_a_write_may_see_either_value(seen: int) -> None:
    ops = [w(0, "a", 1, 1, 0, 10), r(1, "b", seen, 2, 3)]
    assert check(ops).ok


def test_stale_read_after_a_completed_write_is_rejected() -> None:
    ops = [
        w(0, "a", 1, 1, 0, 1),
        r(1, "b", 1, 2, 3),
        r(2, "c", 0, 4, 5),  # stale: the write completed before this read began
    ]
    result = check(ops)
    assert result.ok is False
    assert not result
    assert [o.id for o in result.unordered] == [2]
    assert result.expected == {2: 1}
    assert [o.id for o in result.longest_prefix or []] == [0, 1]
    assert result.state == 1
    text = str(result)
    assert "#2 client 'c': read(None) returned 0, but the model would return 1" in text
    assert "returned at 5.000000" in text


def test_contradicting_write_outputs_are_rejected() -> None:
    # Two concurrent increments cannot both have produced the total 1.
    ops = [w(0, "a", 1, 1, 0, 2), w(1, "b", 1, 1, 1, 3)]
    result = check(ops)
    assert result.ok is False
    assert {o.id for o in result.unordered} == {1}
    assert result.expected == {1: 2}


def test_counter_totals_out_of_real_time_order_are_rejected() -> None:
    # b's write began after a's returned, yet a's total already includes it.
    ops = [w(0, "a", 1, 3, 0, 1), w(1, "b", 2, 2, 2, 3)]
    result = check(ops)
    assert result.ok is False
    assert [o.id for o in result.unordered] == [0]
    assert result.expected == {0: 1}
    assert result.longest_prefix == []


def test_reads_must_not_go_back_in_time() -> None:
    ops = [
        w(0, "a", 1, 1, 0, 10),
        r(1, "b", 1, 1, 2),
        r(2, "c", 0, 3, 4),  # concurrent with the write, but after a read that saw it
    ]
    result = check(ops)
    assert result.ok is False
    assert [o.id for o in result.unordered] == [2]


@pytest.mark.parametrize("seen", [0, 5])
def test_unknown_write_may_or_may_not_take_effect(seen: int) -> None:
    ops = [w(0, "a", 5, None, 0, None), r(1, "b", seen, 1, 2), r(2, "b", seen, 3, 4)]
    result = check(ops)
    assert result.ok is True
    placed = [o.id for o in result.linearization or []]
    assert (0 in placed) == (seen == 5)


def test_unknown_write_takes_effect_at_most_once_and_stays() -> None:
    assert check([w(0, "a", 5, None, 0, None), r(1, "b", 0, 1, 2), r(2, "b", 5, 3, 4)]).ok
    undone = check([w(0, "a", 5, None, 0, None), r(1, "b", 5, 1, 2), r(2, "b", 0, 3, 4)])
    assert undone.ok is False
    assert [o.id for o in undone.unordered] == [2]
    twice = check([w(0, "a", 5, None, 0, None), r(1, "b", 10, 1, 2)])
    assert twice.ok is False
    assert [o.id for o in twice.unordered] == [1]


def test_unknown_write_cannot_take_effect_before_its_call() -> None:
    result = check([r(0, "b", 5, 0, 1), w(1, "a", 5, None, 2, None)])
    assert result.ok is False
    assert [o.id for o in result.unordered] == [0]


def test_unknown_write_may_take_effect_after_later_operations() -> None:
    ops = [
        w(0, "a", 5, None, 0, None),
        w(1, "a", 1, 1, 10, 11),  # the same client went on; the first write still pending
        r(2, "b", 6, 12, 13),
    ]
    result = check(ops)
    assert [o.id for o in result.linearization or []] == [1, 0, 2]


def test_several_unknown_writes_in_a_row() -> None:
    # Three unknown writes that a new leader commits together, and two that are lost.
    ops = [w(i, f"c{i}", 10**i, None, i * 0.1, None) for i in range(5)]
    ops.append(r(5, "r", 10**1 + 10**2 + 10**4, 1, 2))
    ops.append(r(6, "r", 10**1 + 10**2 + 10**4, 3, 4))
    result = check(ops)
    assert sorted(o.id for o in result.linearization or []) == [1, 2, 4, 5, 6]
    assert check([*ops[:5], r(5, "r", 7, 1, 2)]).ok is False


def test_an_unknown_outcome_has_no_output_to_compare() -> None:
    with pytest.raises(ValueError, match="output None"):
        Operation(0, "a", "write", 1, 99, 0.0, None)
    assert Operation(0, "a", "write", 1, None, 0.0, None).status == "unknown"
    assert Operation(0, "a", "write", 1, 1, 0.0, 1.0).status == "ok"
    with pytest.raises(ValueError, match="before it is called"):
        Operation(0, "a", "write", 1, 1, 2.0, 1.0)
    with pytest.raises(ValueError, match="status"):
        Operation(0, "a", "write", 1, 1, 0.0, 1.0, "maybe")


def test_equal_times_without_sequence_numbers_count_as_overlapping() -> None:
    # Made by hand, a return and a call at the same time may be in either order.
    ops = [w(0, "a", 1, 1, 0, 1), r(1, "b", 0, 1, 2)]
    assert check(ops).ok


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct ids"):
        check_linearizability([r(0, "a", 0, 0, 1), r(0, "b", 0, 0, 1)], counter_model())


def test_result_explains_a_rejection_to_a_person() -> None:
    ops = [w(i, "a", 1, i + 1, 2 * i, 2 * i + 1) for i in range(12)]
    ops.append(r(12, "b", 3, 30, 31))
    result = check(ops)
    text = str(result)
    print(text)
    assert text.startswith("not linearizable: after the longest linearizable prefix found")
    assert "(12 of 13 operations)" in text
    assert "Model state after that prefix: 12" in text
    assert "#12 client 'b': read(None) returned 3, but the model would return 12" in text
    assert "called at 30.000000, returned at 31.000000" in text
    assert "The last 10 operations of that prefix:" in text
    assert "#11 client 'a': write(1) -> 12  [22.000000, 23.000000]" in text


# ------------------------------------------------------------------------------- models
def test_counter_model() -> None:
    model = counter_model(10)
    state = model.init()
    assert model.step(state, "write", 5) == (15, 15)
    assert model.step(15, "read", "anything") == (15, 15)
    with pytest.raises(ValueError):
        model.step(15, "delete", None)


def test_kv_model_steps() -> None:
    model = kv_model()
    s0 = model.init()
    s1, out = model.step(s0, "write", ("put", "x", 1))
    assert out == 1
    assert model.step(s1, "read", ("get", "x")) == (s1, 1)
    assert model.step(s1, "read", ("get", "y")) == (s1, None)
    s2, out = model.step(s1, "write", ("cas", "x", 1, 2))
    assert out is True
    assert model.step(s2, "read", ("get", "x"))[1] == 2
    assert model.step(s2, "write", ("cas", "x", 1, 3)) == (s2, False)
    s3, out = model.step(s2, "write", ("cas", "y", None, 7))
    assert out is True
    assert model.describe_state(s3) == "{'x': 2, 'y': 7}"
    # Lists (what JSON makes of tuples) work as well.
    s4, _ = model.step(s0, "write", ["put", "z", [1, 2]])
    assert outputs_match(model.step(s4, "read", ["get", "z"])[1], [1, 2])
    with pytest.raises(ValueError):
        model.step(s0, "write", ("delete", "x"))


def kv(
    id: int, client: Any, input: tuple[Any, ...], output: Any, call: float, ret: float | None
) -> Operation:
    return op(id, client, "read" if input[0] == "get" else "write", input, output, call, ret)


def test_kv_history_with_put_get_and_cas() -> None:
    ops = [
        kv(0, "a", ("put", "x", 1), 1, 0, 1),
        kv(1, "b", ("put", "y", 5), 5, 0, 3),
        kv(2, "a", ("cas", "x", 1, 2), True, 2, 5),
        kv(3, "c", ("cas", "x", 1, 3), False, 2.5, 4),
        kv(4, "b", ("get", "x"), 2, 6, 7),
        kv(5, "c", ("get", "y"), 5, 6, 7),
        kv(6, "c", ("get", "z"), None, 8, 9),
        kv(7, "d", ("put", "x", 9), None, 8, None),
    ]
    result = check(ops, kv_model())
    assert result.ok is True
    assert "in 3 independent parts" in result.reason


def test_kv_cas_that_cannot_have_succeeded_is_rejected() -> None:
    ops = [
        kv(0, "a", ("put", "x", 1), 1, 0, 1),
        kv(1, "b", ("cas", "x", 2, 3), True, 2, 3),  # the value was 1, never 2
        kv(2, "c", ("put", "y", 1), 1, 0, 1),
    ]
    result = check(ops, kv_model())
    assert result.ok is False
    assert result.partition == "x"
    assert [o.id for o in result.unordered] == [1]
    assert result.expected == {1: False}
    assert "the 2 operations on 'x'" in result.reason
    assert "Model state after that prefix: {'x': 1}" in str(result)


def test_model_from_function() -> None:
    def register(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        if kind == "write":
            return input, None
        return state, state

    model = Model.from_function(register, init=lambda: 0)
    assert model.name == "register"
    ops = [
        op(0, "a", "write", 1, None, 0, 2),
        op(1, "b", "write", 2, None, 1, 3),
        op(2, "c", "read", None, 1, 4, 5),
        op(3, "c", "read", None, 1, 6, 7),
    ]
    assert check(ops, model).ok
    flip = [*ops[:3], op(3, "c", "read", None, 2, 6, 7)]
    assert check(flip, model).ok is False
    assert Model.from_function(register, 7).init() == 7


def test_model_subclass() -> None:
    class Set(Model):
        name = "set"

        def init(self) -> Any:
            return frozenset()

        def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
            if kind == "add":
                return state | {input}, input not in state
            return state, sorted(state)

    ops = [
        op(0, "a", "add", 1, True, 0, 3),
        op(1, "b", "add", 1, False, 1, 2),
        op(2, "c", "list", None, [1], 4, 5),
    ]
    result = check(ops, Set())
    assert [o.id for o in result.linearization or []] == [0, 1, 2]
    assert check([*ops[:2], op(2, "c", "list", None, [], 4, 5)], Set()).ok is False


def test_model_from_state_machine_counter() -> None:
    model = Model.from_state_machine(Counter, 100)
    assert model.name == "Counter"
    ops = [
        w(0, "a", 1, 103, 0, 3),
        w(1, "b", 2, 102, 1, 2),
        r(2, "c", 103, 4, 5),
        op(3, "c", "read", "applied", [2, 1], 6, 7),
    ]
    result = check(ops, model)
    assert [o.id for o in result.linearization or []] == [1, 0, 2, 3]
    wrong_order = [*ops[:3], op(3, "c", "read", "applied", [1, 2], 6, 7)]
    rejected = check(wrong_order, model)
    assert rejected.ok is False
    assert rejected.expected == {3: [2, 1]}
    # The model can be used again: each check starts from a fresh machine.
    assert check(ops, model).ok


def test_model_from_state_machine_compares_exceptions_by_type_and_args() -> None:
    model = Model.from_state_machine(Counter)
    boom = ValueError("boom is not a number")
    ops = [op(0, "a", "write", "boom", boom, 0, 1), r(1, "b", 0, 2, 3)]
    assert check(ops, model).ok
    assert check([op(0, "a", "write", "boom", ValueError("other"), 0, 1)], model).ok is False
    assert check([op(0, "a", "write", "boom", TypeError(boom.args[0]), 0, 1)], model).ok is False
    assert check([op(0, "a", "write", "boom", None, 0, 1)], model).ok is False
    # The failed write was still applied (and recorded) by the machine.
    assert check([*ops, op(2, "b", "read", "applied", ["boom"], 4, 5)], model).ok


def test_model_from_state_machine_snapshot_keys() -> None:
    class Bag(trioraft.StateMachine):
        """A snapshot that is a dict of lists (unhashable) and a custom object."""

        def __init__(self) -> None:
            self.items: dict[str, list[int]] = {}

        def write(self, command: Any) -> Any:
            key, value = command
            self.items.setdefault(key, []).append(value)
            return len(self.items[key])

        def read(self, query: Any) -> Any:
            return list(self.items.get(query, []))

        def snapshot(self) -> Any:
            return self.items  # aliases the live state: the model must copy it

        def restore(self, snapshot: Any) -> None:
            self.items = snapshot

    model = Model.from_state_machine(Bag)
    ops = [
        op(0, "a", "write", ("k", 1), 1, 0, 4),
        op(1, "b", "write", ("k", 2), 2, 1, 3),
        op(2, "c", "read", "k", [1, 2], 5, 6),
    ]
    assert check(ops, model).ok
    assert check([*ops[:2], op(2, "c", "read", "k", [2, 1], 5, 6)], model).ok is False
    keyed = Model.from_state_machine(Bag, key=lambda snap: repr(sorted(snap.items())))
    assert check(ops, keyed).ok


class Tally(trioraft.StateMachine):
    """Only write and read: no snapshot() or restore(). Lists inside a dict, and an
    alias (``last`` is ``log``), which copies must keep."""

    def __init__(self) -> None:
        self.items: dict[str, list[int]] = {}
        self.log: list[Any] = []
        self.last = self.log

    def write(self, command: Any) -> Any:
        key, value = command
        self.items.setdefault(key, []).append(value)
        self.log.append(value)
        return len(self.items[key])

    def read(self, query: Any) -> Any:
        if query == "last":
            return list(self.last)
        return list(self.items.get(query, []))


def test_model_from_state_machine_without_snapshots() -> None:
    model = Model.from_state_machine(Tally)
    # b's write took effect first: the search tries a's first, and must find the state
    # it started from intact (a shallow copy would share the dict and its lists).
    ops = [
        op(0, "a", "write", ("k", 1), 2, 0, 4),
        op(1, "b", "write", ("k", 2), 1, 1, 3),
        op(2, "c", "read", "k", [2, 1], 5, 6),
        op(3, "c", "read", "last", [2, 1], 7, 8),
        op(4, "d", "write", ("j", 3), None, 0, None),
    ]
    result = check(ops, model)
    assert [o.id for o in result.linearization or []] == [1, 0, 2, 3]
    assert check([*ops, op(5, "c", "read", "j", [3], 9, 10)], model).ok
    rejected = check([*ops[:3], op(3, "c", "read", "last", [1, 2], 7, 8)], model)
    assert rejected.ok is False
    assert rejected.expected == {3: [2, 1]}
    text = str(rejected)
    assert "Model state after that prefix: Tally(items={'k': [2, 1]}, log=[2, 1]" in text
    # A model state is a machine instance the search never changes.
    state = model.init()
    after, output = model.step(state, "write", ("k", 7))
    assert output == 1
    assert state.snapshot.items == {} and after.snapshot.items == {"k": [7]}
    assert after.snapshot.last is after.snapshot.log
    assert model.step(after, "read", "k") == (after, [7])
    assert model.step(model.init(), "write", ("k", 7))[0] == after


def test_model_from_a_machine_with_slots_and_no_snapshots() -> None:
    class Register:
        __slots__ = ("value",)

        def __init__(self) -> None:
            self.value = 0

        def write(self, command: Any) -> Any:
            self.value = command
            return None

        def read(self, query: Any) -> Any:
            return self.value

    model = Model.from_state_machine(Register)
    ops = [
        op(0, "a", "write", 1, None, 0, 2),
        op(1, "b", "write", 2, None, 1, 3),
        op(2, "c", "read", None, 1, 4, 5),
    ]
    assert check(ops, model).ok
    assert check([*ops, op(3, "c", "read", None, 2, 6, 7)], model).ok is False


def test_model_from_state_machine_whose_snapshot_is_not_implemented() -> None:
    class Refuses(Tally):
        def snapshot(self) -> Any:
            raise NotImplementedError("no snapshots here")

        def restore(self, snapshot: Any) -> None:
            raise NotImplementedError("no snapshots here")

    model = Model.from_state_machine(Refuses)
    assert check(
        [op(0, "a", "write", ("k", 1), 1, 0, 1), op(1, "b", "read", "k", [1], 2, 3)], model
    ).ok


def test_model_from_a_machine_that_cannot_be_copied() -> None:
    class Locked(Tally):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

    with pytest.raises(TypeError, match=r"Locked cannot be copied .* snapshot\(\) and restore"):
        Model.from_state_machine(Locked)


class Registers(trioraft.StateMachine):
    """A dict of registers, no snapshots: ``("set", key, value)`` returns the previous
    value, ``("cas", key, old, new)`` whether it swapped, ``("get", key)`` the value."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        self.data: dict[Any, Any] = dict.fromkeys(keys, 0)

    def write(self, command: Any) -> Any:
        if command[0] == "cas":
            _, key, old, new = command
            if self.data.get(key) != old:
                return False
            self.data[key] = new
            return True
        _, key, value = command
        previous = self.data.get(key)
        self.data[key] = value
        return previous

    def read(self, query: Any) -> Any:
        if query[0] == "keys":
            return sorted(self.data)
        return self.data.get(query[1])


class SnapshotRegisters(Registers):
    """The same, with snapshot() and restore()."""

    def snapshot(self) -> Any:
        return self.data

    def restore(self, snapshot: Any) -> None:
        self.data = snapshot


def test_command_key() -> None:
    assert Model.command_key("write", ("set", "x", 1)) == "x"
    assert Model.command_key("read", ["get", ["a", 1]]) == ("a", 1)
    assert Model.command_key("read", ("keys",)) is None
    assert Model.command_key("read", None) is None
    assert Model.command_key("write", (1, "x")) is None
    assert Model.command_key("write", ("set", {"un": "hashable"}, 1)) is None


@pytest.mark.parametrize("machine", [Registers, SnapshotRegisters])
def test_model_from_state_machine_checked_key_by_key(machine: type[Registers]) -> None:
    model = Model.from_state_machine(machine, "xyz", partition_key=Model.command_key)
    assert model.partition_key("write", ("set", "x", 1)) == "x"
    ops = [
        kv(0, "a", ("set", "x", 1), 0, 0, 2),
        kv(1, "b", ("set", "x", 2), 1, 1, 3),  # after a's: it returned a's value
        kv(2, "c", ("get", "x"), 2, 4, 5),
        kv(3, "a", ("set", "y", 7), None, 2.5, None),  # outcome unknown: it took effect
        kv(4, "b", ("get", "y"), 7, 6, 7),
        kv(5, "c", ("cas", "z", 0, 5), True, 0, 8),
        kv(6, "d", ("get", "z"), 0, 1, 2),
        kv(7, "d", ("get", "z"), 5, 9, 10),
    ]
    result = check(ops, model)
    assert result.ok is True
    assert "in 3 independent parts" in result.reason
    # One read in "y" answers a value nothing wrote: that part, and only it, fails.
    bad = [*ops[:4], kv(4, "b", ("get", "y"), 8, 6, 7), *ops[5:]]
    rejected = check(bad, model)
    assert rejected.ok is False
    assert rejected.partition == "y"
    assert [o.id for o in rejected.unordered] == [4]
    assert rejected.expected == {4: 7}
    assert "the 2 operations on 'y'" in rejected.reason
    # A read of every key has no key: the history is checked as a whole, still right.
    whole = [*ops, op(8, "e", "read", ("keys",), ["x", "y", "z"], 11, 12)]
    assert model.partition_key("read", ("keys",)) is None
    result = check(whole, model)
    assert result.ok is True
    assert "independent parts" not in result.reason
    assert check([*bad, whole[-1]], model).ok is False


def random_register_history(seed: int) -> list[Operation]:
    """Up to eight operations on two or three keys with small integer times (so that
    times tie), from a sequential run at random points, some outputs then changed,
    some outcomes lost."""
    rng = random.Random(seed)
    keys = "xyz"[: rng.randint(1, 3)]
    raw = []
    for i in range(rng.randint(0, 8)):
        call = rng.randint(0, 6)
        ret = call + rng.randint(0, 3)
        key = rng.choice(keys)
        command = rng.choice(
            [("set", key, 1), ("set", key, 2), ("cas", key, 1, 2), ("get", key), ("get", key)]
        )
        raw.append((rng.uniform(call, ret), i, call, ret, command))
    machine = Registers()
    outputs = {}
    for _, i, _, _, command in sorted(raw):
        outputs[i] = machine.read(command) if command[0] == "get" else machine.write(command)
    ops = []
    for _, i, call, ret, command in raw:
        fate = rng.choice(["ok", "ok", "ok", "changed", "unknown"])
        kind = "read" if command[0] == "get" else "write"
        if fate == "unknown":
            ops.append(Operation(i, i, kind, command, None, call, None))
            continue
        output = outputs[i] if fate == "ok" else rng.choice([None, 1, 2, True, False])
        ops.append(Operation(i, i, kind, command, output, call, ret))
    return ops


@pytest.mark.parametrize("machine", [Registers, SnapshotRegisters])
@settings(max_examples=300, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_checking_key_by_key_agrees_with_checking_the_whole(
    machine: type[Registers], seed: int
) -> None:
    ops = random_register_history(seed)
    note("\n".join(o.describe() for o in ops))
    by_key = check(ops, Model.from_state_machine(machine, partition_key=Model.command_key))
    whole = check(ops, Model.from_state_machine(machine))
    assert by_key.ok is whole.ok, f"seed {seed}: by key {by_key.reason}; whole {whole.reason}"
    if by_key.ok is False:
        assert by_key.unordered


def test_bench_dict_machine_case() -> None:
    ops, applied = bench.simulated_dict_history(200, 20, 50, seed=4)
    assert len(ops) == 200 and len({o.client for o in ops}) == 20
    assert {o.id for o in ops if not o.unknown} <= set(applied)
    result = bench.measure_dict_linearizability(operations=200, clients=20, keys=50, seed=4)
    assert result["accept_s"] > 0 and result["reject_s"] > 0 and result["replay_s"] > 0
    lines = bench.render_linearizability(
        {**bench.measure_linearizability(100, 4), "dict_machine": result}
    )
    assert any(line.lstrip().startswith("dict machine, 50 keys") for line in lines)


def test_outputs_match() -> None:
    assert outputs_match(1, 1)
    assert outputs_match((1, [2, 3]), [1, (2, 3)])
    assert not outputs_match((1, 2), [1, 2, 3])
    assert outputs_match(ValueError("x"), ValueError("x"))
    assert not outputs_match(ValueError("x"), KeyError("x"))
    assert not outputs_match(ValueError("x"), "x")
    assert not outputs_match(None, 0)


# ------------------------------------------------------------------------------ history
def test_history_with_explicit_times() -> None:
    history = History()
    a = history.invoke("a", "write", 5, time=0.0)
    b = history.invoke("b", "read", None, time=1.0)
    c = history.invoke("c", "write", 7, time=1.5)
    d = history.invoke("d", "write", 9, time=1.6)
    assert len(history) == 4
    b.ok(5, time=2.0)
    a.ok(5, time=3.0)
    c.unknown()
    d.fail()
    assert [p.id for p in history.pending] == []
    ops = history.operations
    assert [(o.id, o.status, o.call, o.ret, o.output) for o in ops] == [
        (0, "ok", 0.0, 3.0, 5),
        (1, "ok", 1.0, 2.0, 5),
        (2, "unknown", 1.5, None, None),
    ]
    assert len(history) == 3
    assert [(o.call_seq, o.ret_seq) for o in ops] == [(0, 5), (1, 4), (2, None)]
    with pytest.raises(RuntimeError, match="already finished"):
        a.ok(5, time=4.0)
    with pytest.raises(RuntimeError, match="already finished"):
        d.unknown()
    assert history.check(counter_model()).ok
    text = str(history)
    assert text.splitlines()[0] == "<History 3 operations, 1 unknown>"
    assert "#2 client 'c': write(7) -> ?  [1.500000, never returned (outcome unknown)]" in text
    assert history.describe(limit=1).splitlines()[-1] == "  ... and 2 more"


def test_pending_operations_count_as_unknown() -> None:
    history = History()
    history.invoke("a", "write", 5, time=0.0)
    history.invoke("b", "read", None, time=1.0).ok(5, time=2.0)
    assert [o.status for o in history.operations] == ["unknown", "ok"]
    assert check_linearizability(history, counter_model()).ok


def test_history_json_round_trip() -> None:
    history = History()
    put = history.invoke(1, "write", ("put", "x", [1, 2]), time=0.0)
    get = history.invoke(2, "read", ("get", "x"), time=0.5)
    put.ok([1, 2], time=1.0)
    get.ok((1, 2), time=2.0)
    history.invoke("c", "write", ("put", "y", 3), time=2.5).unknown()
    data = history.to_json()
    assert data[0] == {
        "id": 0,
        "client": 1,
        "kind": "write",
        "input": ("put", "x", [1, 2]),
        "output": [1, 2],
        "call": 0.0,
        "ret": 1.0,
        "status": "ok",
        "call_seq": 0,
        "ret_seq": 2,
    }
    text = json.dumps(data)
    again = History.from_json(text)
    assert [o.id for o in again.operations] == [0, 1, 2]
    assert again.operations[1].output == [1, 2]  # tuples come back as lists
    assert again.to_json() == json.loads(text)
    assert History.from_json(json.loads(text)).to_json() == again.to_json()
    assert check(again.operations, kv_model()).ok
    assert check(history.operations, kv_model()).ok
    # New operations continue the ids and the sequence numbers.
    later = again.invoke("d", "read", ("get", "y"), time=3.0)
    assert (later.id, later.call_seq) == (3, 5)


async def test_history_records_trio_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    history = History()
    start = trio.current_time()
    first = history.invoke("a", "write", 1)
    await trio.sleep(1)
    first.ok(1)
    second = history.invoke("b", "read", None)  # the same virtual time as first's return
    second.ok(0)
    ops = history.operations
    assert (ops[0].call, ops[0].ret) == (start, start + 1)
    assert ops[1].call == ops[1].ret == ops[0].ret
    # The sequence numbers say the read began after the write returned: a stale read.
    result = check_linearizability(history, counter_model())
    assert result.ok is False
    assert [o.id for o in result.unordered] == [1]
    # Without them, equal times count as overlapping.
    bare = [attrs.evolve(o, call_seq=None, ret_seq=None) for o in ops]
    assert check(bare).ok


async def test_operation_context_manager_with_trioraft_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    history = History()

    async with history.operation("a", "write", 1) as pending:
        await trio.sleep(0.5)
        pending.output = 1

    async def failing(exc: BaseException) -> None:
        with pytest.raises(type(exc)):
            async with history.operation("b", "write", 2):
                await trio.sleep(0.1)
                raise exc

    await failing(trioraft.NotLeader("s2"))  # definitely not applied: dropped
    await failing(trioraft.ServerStopped("stopped"))  # refused: dropped
    await failing(trioraft.OutcomeUnknown("lost leadership"))  # unknown
    await failing(trioraft.StoppedOutcomeUnknown("stopped"))  # unknown (a ServerStopped too)
    await failing(ValueError("raised by the state machine"))  # unknown

    with trio.move_on_after(0.2) as scope:  # cancelled: unknown
        async with history.operation("c", "write", 3):
            await trio.sleep_forever()
    assert scope.cancelled_caught

    async with history.operation("d", "read", None) as pending:
        pending.fail()  # finished by hand: left as it is

    ops = history.operations
    assert [(o.id, o.client, o.status) for o in ops] == [
        (0, "a", "ok"),
        (3, "b", "unknown"),
        (4, "b", "unknown"),
        (5, "b", "unknown"),
        (6, "c", "unknown"),
    ]
    assert ops[0].output == 1
    assert ops[0].ret == ops[0].call + 0.5
    assert history.pending == []
    assert check(ops).ok


async def test_operation_context_manager_with_a_real_cluster(
    autojump_clock: trio.testing.MockClock,
) -> None:
    history = History()
    async with open_cluster(Counter, 3, seed=5) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        follower = next(s for s in cluster.servers.values() if s is not leader)
        with pytest.raises(trioraft.NotLeader):
            async with history.operation("a", "write", 1) as pending:
                pending.output = await follower.write(1)
        async with history.operation("a", "write", 2) as pending:
            pending.output = await leader.write(2)
        async with history.operation("b", "read", None) as pending:
            pending.output = await leader.read(None)
        await leader.stop()
        with pytest.raises(trioraft.ServerStopped):
            async with history.operation("b", "write", 3) as pending:
                pending.output = await leader.write(3)
    assert [(o.id, o.kind, o.output) for o in history.operations] == [
        (1, "write", 2),
        (2, "read", 2),
    ]
    assert check(history.operations).ok


# ------------------------------------------------------------------ timeouts and speed
def simulate(
    model: Model,
    make_input: Callable[[random.Random, int], tuple[str, Any]],
    *,
    seed: int,
    n_ops: int = 1000,
    n_clients: int = 10,
    unknown_rate: float = 0.0,
) -> list[Operation]:
    """A history of a correct system: each client calls one operation at a time, every
    operation takes effect at a random instant of its interval, and the intervals of
    different clients overlap at random. With ``unknown_rate``, that share of the
    operations lose their outcome; half of those never take effect."""
    rng = random.Random(seed)
    free_at = [rng.uniform(0, 1) for _ in range(n_clients)]
    raw = []
    for k in range(n_ops):
        client = min(range(n_clients), key=free_at.__getitem__)
        call = free_at[client] + rng.uniform(0, 0.5)
        ret = call + rng.uniform(0.05, 3.0)
        free_at[client] = ret
        kind, input = make_input(rng, k)
        fate = "ok"
        if rng.random() < unknown_rate:
            fate = rng.choice(["applied", "vanished"])
        raw.append([call, ret, rng.uniform(call, ret), client, kind, input, None, fate])
    state = model.init()
    for item in sorted(raw, key=lambda item: item[2]):
        if item[7] != "vanished":
            state, item[6] = model.step(state, item[4], item[5])
    raw.sort(key=lambda item: item[0])
    return [
        Operation(i, client, kind, input, output, call, ret)
        if fate == "ok"
        else Operation(i, client, kind, input, None, call, None)
        for i, (call, ret, _, client, kind, input, output, fate) in enumerate(raw)
    ]


def counter_input(rng: random.Random, k: int) -> tuple[str, Any]:
    return ("write", rng.randint(1, 10)) if rng.random() < 0.5 else ("read", None)


def kv_input(rng: random.Random, k: int) -> tuple[str, Any]:
    key = rng.choice("abcde")
    x = rng.random()
    if x < 0.4:
        return "write", ("put", key, k)
    if x < 0.8:
        return "read", ("get", key)
    return "write", ("cas", key, rng.randint(0, k), k)


MODELS: dict[str, tuple[Callable[[], Model], Any]] = {
    "counter": (counter_model, counter_input),
    "kv": (kv_model, kv_input),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_1000_operations_from_10_clients(
    name: str, record_property: Callable[[str, object], None]
) -> None:
    make_model, make_input = MODELS[name]
    model = make_model()
    ops = simulate(model, make_input, seed=derive_seed("linearizability", name))
    assert len(ops) == 1000
    assert len({o.client for o in ops}) == 10
    started = time.perf_counter()
    result = check_linearizability(ops, model)
    wall = time.perf_counter() - started
    print(f"\n{name}: 1000 operations accepted in {wall:.3f} s ({result.explored} configs)")
    record_property(f"{name}_accepted_seconds", wall)
    assert_witness(ops, result, model)

    # Corrupt one output, in the middle: a read returns a value no one ever wrote.
    rng = random.Random(derive_seed("corrupt", name))
    victim = rng.choice([o for o in ops[300:700] if o.kind == "read"])
    corrupted = [o if o is not victim else attrs.evolve(o, output=-1) for o in ops]
    started = time.perf_counter()
    bad = check_linearizability(corrupted, model)
    wall = time.perf_counter() - started
    print(f"{name}: the corrupted history rejected in {wall:.3f} s ({bad.explored} configs)")
    print(str(bad))
    record_property(f"{name}_rejected_seconds", wall)
    assert bad.ok is False
    assert victim.id in [o.id for o in bad.unordered]
    assert bad.expected[victim.id] != -1


def test_1000_operations_with_a_corrupted_write_total() -> None:
    model = counter_model()
    ops = simulate(model, counter_input, seed=7)
    victim = next(o for o in ops[500:] if o.kind == "write")
    corrupted = [o if o is not victim else attrs.evolve(o, output=o.output + 1) for o in ops]
    result = check_linearizability(corrupted, model)
    assert result.ok is False
    assert victim.id in [o.id for o in result.unordered]


def big_writes(rng: random.Random, k: int) -> tuple[str, Any]:
    # Large random increments: the totals tell apart which writes took effect.
    return ("write", rng.randint(1, 10**6)) if rng.random() < 0.5 else ("read", None)


@pytest.mark.parametrize(
    ("name", "make_model", "make_input"),
    [
        ("counter", counter_model, big_writes),
        ("kv", kv_model, kv_input),
    ],
)
def test_unknown_outcomes_in_a_long_history(
    name: str,
    make_model: Callable[[], Model],
    make_input: Callable[[random.Random, int], tuple[str, Any]],
) -> None:
    # 4% of the operations lose their outcome; half of those took effect, at some point
    # of their interval, and half never did. The checker must find out which is which.
    model = make_model()
    ops = simulate(model, make_input, seed=3, unknown_rate=0.04)
    unknown = [o for o in ops if o.unknown]
    assert len(unknown) > 20
    started = time.perf_counter()
    result = check_linearizability(ops, model)
    wall = time.perf_counter() - started
    print(f"\n{name}: {len(unknown)} unknown outcomes among 1000, accepted in {wall:.3f} s")
    assert_witness(ops, result, model)
    # Reading a total that no set of the writes (known or not) can explain is rejected.
    victim = next(o for o in ops[300:] if o.kind == "read" and not o.unknown)
    ops[victim.id] = attrs.evolve(victim, output=-1)
    rejected = check_linearizability(ops, model)
    print(f"{name}: the corrupted history rejected in {rejected.seconds:.3f} s")
    assert rejected.ok is False
    assert victim.id in [o.id for o in rejected.unordered]


def test_max_seconds_gives_up() -> None:
    # Twenty writes of unknown outcome, indistinguishable, and a read no subset of them
    # explains: a rejection must try every subset. Give up at once instead.
    ops = [w(i, i, 1, None, 0, None) for i in range(20)]
    ops.append(r(20, "r", -1, 1, 2))
    result = check_linearizability(ops, counter_model(), max_seconds=0)
    assert result.ok is None
    assert result.timed_out
    assert not result
    assert result.reason.startswith("undecided: gave up after")
    assert result.longest_prefix is not None
    assert all(o.unknown for o in result.longest_prefix)
    assert [o.id for o in result.unordered] == [20]
    text = str(result)
    print(text)
    assert "At the deepest point reached so far:" in text
    assert "#20 client 'r': read(None) returned -1; called at 1.000000" in text


def test_checking_by_parts_agrees_with_checking_the_whole() -> None:
    class Whole(Model):
        name = "key-value, as a whole"

        def __init__(self) -> None:
            self.kv = kv_model()

        def init(self) -> Any:
            return self.kv.init()

        def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
            return self.kv.step(state, kind, input)

    for seed in range(5):
        ops = simulate(kv_model(), kv_input, seed=seed, n_ops=60)
        lost = set(random.Random(seed).sample(range(60), 4))
        ops = [
            attrs.evolve(o, output=None, ret=None, status="unknown") if o.id in lost else o
            for o in ops
        ]
        by_parts = check(ops, kv_model())
        whole = check(ops, Whole())
        assert by_parts.ok is whole.ok is True
        victim = next(o for o in ops[30:] if o.kind == "read" and not o.unknown)
        ops[victim.id] = attrs.evolve(victim, output=-1)
        assert check(ops, kv_model()).ok is check(ops, Whole()).ok is False


# ------------------------------------------------------------ against brute force
@st.composite
def small_histories(draw: st.DrawFn, model: Model) -> list[Operation]:
    """Up to six operations with small integer times (so that times tie), produced by
    a sequential run at random points, some outputs then changed, some outcomes lost."""
    n = draw(st.integers(0, 6))
    raw = []
    input: Any
    for i in range(n):
        call = draw(st.integers(0, 6))
        ret = call + draw(st.integers(0, 3))
        point = draw(st.floats(call, ret))
        if model.name == "counter":
            kind, input = draw(
                st.sampled_from([("write", 1), ("write", 2), ("read", None), ("read", None)])
            )
        else:
            key = draw(st.sampled_from("xy"))
            input = draw(
                st.sampled_from(
                    [("put", key, 1), ("put", key, 2), ("get", key), ("cas", key, 1, 2)]
                )
            )
            kind = "read" if input[0] == "get" else "write"
        raw.append((point, i, call, ret, kind, input))
    state = model.init()
    outputs = {}
    for _, i, _, _, kind, input in sorted(raw):
        state, outputs[i] = model.step(state, kind, input)
    ops = []
    for _, i, call, ret, kind, input in raw:
        fate = draw(st.sampled_from(["ok", "ok", "ok", "changed", "unknown"]))
        if fate == "unknown":
            ops.append(Operation(i, i, kind, input, None, call, None))
        else:
            output = outputs[i]
            if fate == "changed":
                output = draw(st.sampled_from([None, 0, 1, 2, 3, True, False]))
            ops.append(Operation(i, i, kind, input, output, call, ret))
    return ops


@pytest.mark.parametrize("make_model", [counter_model, kv_model])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_agrees_with_brute_force(make_model: Callable[[], Model], data: st.DataObject) -> None:
    model = make_model()
    ops = data.draw(small_histories(model))
    result = check_linearizability(ops, model)
    assert result.ok is brute_force(ops, model), "\n".join(o.describe() for o in ops)
    if result.ok:
        assert_witness(ops, result, model)
    else:
        assert result.unordered
        assert all(not outputs_match(result.expected[o.id], o.output) for o in result.unordered)


# ------------------------------------------------------------------------ real clusters
async def client_loop(
    history: History,
    cluster: trioraft.testing.Cluster,
    client: int,
    done: trio.Event,
    seed: int,
    read: Callable[[], Any],
) -> None:
    rng = random.Random(derive_seed(seed, "client", client))
    while not done.is_set():
        await trio.sleep(rng.uniform(0, 0.05))
        leader = cluster.leader()
        if leader is None:
            await trio.sleep(0.05)
            continue
        try:
            with trio.move_on_after(1.0):  # a cancelled operation has an unknown outcome
                if rng.random() < 0.5:
                    # Large random increments, so that the totals tell writes apart.
                    amount = rng.randint(1, 10**6)
                    async with history.operation(client, "write", amount) as pending:
                        pending.output = await leader.write(amount)
                else:
                    async with history.operation(client, "read", None) as pending:
                        pending.output = await read()
        except trioraft.RaftError:
            await trio.sleep(0.02)


async def faulty_cluster_history(seed: int) -> History:
    history = History()
    async with open_cluster(Counter, 3, seed=seed) as cluster:
        with trio.fail_after(10):
            await cluster.wait_for_leader()
        done = trio.Event()

        async def linearizable_read() -> Any:
            leader = cluster.leader()
            if leader is None:
                raise trioraft.NotLeader(None)
            return await leader.read(None)

        async def faults() -> None:
            rng = random.Random(derive_seed(seed, "faults"))
            cluster.network.set_delay(0.001, 0.02)
            for _ in range(8):
                await trio.sleep(rng.uniform(0.2, 0.6))
                choice = rng.random()
                leader = cluster.leader()
                crashed = None
                if choice < 0.4:
                    cluster.network.isolate(rng.choice(sorted(cluster.servers)))
                elif choice < 0.6:
                    cluster.network.set_loss(0.2)
                elif choice < 0.8 and leader is not None:
                    cluster.network.isolate(leader.name)
                elif leader is not None:
                    crashed = leader.name
                    await cluster.crash(crashed)
                await trio.sleep(rng.uniform(0.2, 0.8))
                cluster.network.heal()
                cluster.network.set_loss(0)
                if crashed is not None:
                    await cluster.restart(crashed)
            await trio.sleep(0.5)
            done.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(faults)
                for client in range(10):
                    nursery.start_soon(
                        client_loop, history, cluster, client, done, seed, linearizable_read
                    )
    return history


def summary(history: History) -> str:
    ops = history.operations
    unknown = sum(o.unknown for o in ops)
    writes = sum(o.kind == "write" for o in ops)
    return f"{len(ops)} operations ({writes} writes, {unknown} of unknown outcome)"


@pytest.mark.parametrize("seed", [0, 13])
def test_real_cluster_under_faults_is_linearizable(seed: int) -> None:
    history = run(faulty_cluster_history, seed, seed=seed)
    result = check_linearizability(history, counter_model(), max_seconds=60)
    print(f"\nseed {seed}: {summary(history)}; {result.reason}, {result.seconds:.3f} s")
    assert len(history) > 500
    assert any(o.unknown for o in history.operations)
    assert result.ok is True, str(result)
    assert_witness(history.operations, result, counter_model())


async def follower_read_service(seed: int) -> History:
    """A broken service: it answers reads from one follower's local state (read_dirty),
    and that follower is cut off for a while."""
    history = History()
    async with open_cluster(Counter, 3, seed=seed) as cluster:
        with trio.fail_after(10):
            leader = await cluster.wait_for_leader()
        follower = next(name for name in sorted(cluster.servers) if name != leader.name)
        done = trio.Event()

        async def dirty_read() -> Any:
            return await cluster.servers[follower].read_dirty(None)

        async def partition() -> None:
            await trio.sleep(0.5)
            cluster.network.isolate(follower)
            await trio.sleep(1.0)
            cluster.network.heal()
            await trio.sleep(0.5)
            done.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partition)
                for client in range(10):
                    nursery.start_soon(
                        client_loop, history, cluster, client, done, seed, dirty_read
                    )
    return history


def test_stale_reads_from_a_follower_are_rejected() -> None:
    seed = 4
    history = run(follower_read_service, seed, seed=seed)
    result = check_linearizability(history, counter_model(), max_seconds=60)
    print(f"\n{summary(history)}\n{result}")
    assert result.ok is False
    stale = [o for o in result.unordered if o.kind == "read"]
    assert stale
    # Each blamed read returned less than the total the model had when it could go next.
    assert all(o.output < result.expected[o.id] for o in stale)


async def deposed_leader_service(seed: int) -> tuple[History, float]:
    """A broken service: writes go to the leader, but reads are answered from the local
    state (read_dirty) of the server that led when the service started, without
    confirming that it still leads (as ``read`` does). Then that server is cut off: a
    new leader is elected and takes the writes, and the reads go stale."""
    history = History()
    async with open_cluster(Counter, 3, seed=seed) as cluster:
        with trio.fail_after(10):
            old_leader = await cluster.wait_for_leader()
        done = trio.Event()
        isolated_at = INF

        async def partition() -> None:
            nonlocal isolated_at
            await trio.sleep(0.5)
            isolated_at = trio.current_time()
            cluster.network.isolate(old_leader.name)
            await trio.sleep(1.0)
            cluster.network.heal()
            await trio.sleep(0.5)
            done.set()

        async def local_read() -> Any:
            return await old_leader.read_dirty(None)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partition)
                for client in range(10):
                    nursery.start_soon(
                        client_loop, history, cluster, client, done, seed, local_read
                    )
    return history, isolated_at


def test_stale_reads_from_a_deposed_leader_are_rejected() -> None:
    seed = 2
    history, isolated_at = run(deposed_leader_service, seed, seed=seed)
    result = check_linearizability(history, counter_model(), max_seconds=60)
    print(f"\n{summary(history)}; leader isolated at {isolated_at:.6f}\n{result}")
    assert result.ok is False
    # Everything before the partition is linearizable...
    assert check_linearizability(
        [o for o in history.operations if o.call < isolated_at], counter_model()
    ).ok
    # ... and the reads to blame were served by the old leader after it was cut off.
    stale = [o for o in result.unordered if o.kind == "read"]
    assert stale
    assert all(o.call > isolated_at and o.output < result.expected[o.id] for o in stale)
