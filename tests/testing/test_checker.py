"""The checker's decision procedure (issue 22): parts searched in turns with growing
budgets, the search's shortcuts against brute force, ``kv_model``'s append, models
that see the output, ``Model.from_function``'s options, the readers of Porcupine's
logs, and the checker's modules free of import circles."""

from __future__ import annotations

import ast
import random
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest
from histories import brute_force
from hypothesis import given, note, settings
from hypothesis import strategies as st

import trioraft.testing
from trioraft.bench.porcupine import parse_go_bench, parse_jepsen_log, parse_kv_log
from trioraft.testing import (
    UNKNOWN,
    LinearizabilityResult,
    Model,
    Operation,
    check_linearizability,
    kv_model,
)

# A safety net only: each check below ends in well under a second when the checker
# works; if a part's search could hide another part's failure, it would give up here.
NET = 120.0


def op(
    id: int, input: Any, output: Any, call: float, ret: float | None, kind: str = "op"
) -> Operation:
    return Operation(id, id, kind, input, output, call, ret)


def assert_witness(ops: Sequence[Operation], result: LinearizabilityResult, model: Model) -> None:
    """The linearization respects real time, and the model gives every recorded output
    (each key's from the initial state, when the model has keys)."""
    assert result.ok is True, str(result)
    order = result.linearization or []
    assert {o.id for o in ops if not o.unknown} <= {o.id for o in order}
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            assert b.ret is None or b.ret >= a.call, f"#{b.id} returned before #{a.id} began"
    # Each key's operations from the initial state, when the model has keys (its state
    # may be one key's only).
    keys = [model.partition_key(o.kind, o.input) for o in ops]
    states: dict[Any, Any] = {}
    for o in order:
        key = model.partition_key(o.kind, o.input) if None not in keys else None
        state = states.get(key, model.init())
        ok, states[key] = model.step_with_output(
            state, o.kind, o.input, UNKNOWN if o.unknown else o.output
        )
        assert ok, o


# ------------------------------------------------------------------ parts in turns
def _adder(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    """Per key: ``write (key, amount)`` adds and returns the total, ``read`` returns it."""
    if kind == "write":
        return state + input[1], state + input[1]
    return state, state


ADDERS = Model.from_function(
    _adder,
    0,
    partition_key=lambda kind, input: input[0],
    read_only=lambda kind, input: kind == "read",
)


def hard_part(key: str, first_id: int, writes: int, *, read: int = -1) -> list[Operation]:
    """``writes`` concurrent writes of unknown outcome, each of a power of two (every
    subset leaves a total of its own), then a read of ``read``: with -1, no subset
    explains it, and a rejection must try them all (2 ** writes)."""
    ops = [
        Operation(first_id + k, f"w{k}", "write", (key, 2**k), None, 0.0, None)
        for k in range(writes)
    ]
    ops.append(Operation(first_id + writes, "r", "read", (key,), read, 1.0, 2.0))
    return ops


def stale_part(key: str, first_id: int) -> list[Operation]:
    """A write of 1 that returned, then a read of 0: stale."""
    return [
        Operation(first_id, "a", "write", (key, 1), 1, 0.0, 1.0),
        Operation(first_id + 1, "b", "read", (key,), 0, 2.0, 3.0),
    ]


def test_a_part_whose_search_explodes_does_not_hide_a_failing_one() -> None:
    # The first key's rejection would take 2 ** 26 configurations; the second key's
    # stale read is found in its first turn.
    ops = [*hard_part("hard", 0, 26), *stale_part("stale", 100)]
    result = check_linearizability(ops, ADDERS, max_seconds=NET)
    assert result.ok is False, str(result)
    assert result.partition == "stale"
    assert [o.id for o in result.unordered] == [101]
    assert result.expected == {101: 1}
    assert "the 2 operations on 'stale'" in result.reason


def test_budgets_grow_until_the_failing_part_is_decided() -> None:
    # The second key fails only after some 2 ** 12 configurations, several times the
    # first turn's budget: the turns go on, with growing budgets, while the first key
    # stays undecided.
    ops = [*hard_part("hard", 0, 26), *hard_part("slow", 100, 12)]
    result = check_linearizability(ops, ADDERS, max_seconds=NET)
    assert result.ok is False, str(result)
    assert result.partition == "slow"
    assert result.explored >= 2**12 + 1000  # the first key had its turns too


def test_an_undecided_part_makes_the_check_undecided() -> None:
    ops = [*stale_part("fine", 0), *hard_part("hard", 10, 26)]
    ops[1] = Operation(1, "b", "read", ("fine",), 1, 2.0, 3.0)  # no longer stale
    result = check_linearizability(ops, ADDERS, max_seconds=0.2)
    assert result.ok is None
    assert result.timed_out
    assert result.partition == "hard"
    assert "undecided" in result.reason and "'hard'" in result.reason


def test_parts_that_are_all_linearizable_are_merged() -> None:
    ops = [*hard_part("a", 0, 3, read=5), *hard_part("b", 10, 3, read=3)]
    result = check_linearizability(ops, ADDERS)
    assert "in 2 independent parts" in result.reason
    assert_witness(ops, result, ADDERS)


# ------------------------------------------------------------- the search's shortcuts
def test_a_write_that_leaves_the_state_equal_is_not_placed_at_once() -> None:
    # Writing the value already there leaves the state equal, but it is not a read: it
    # must still be ordered like any write. Here it comes after the put of 6.
    ops = [
        op(0, ("put", "a", 2), 2, 0.0, 1.0),
        op(1, ("put", "a", 6), 6, 1.5, 2.3),
        op(2, ("put", "a", 2), 2, 2.1, 2.6),
        op(3, ("get", "a"), 2, 2.4, 4.4),
    ]
    result = check_linearizability(ops, kv_model())
    assert_witness(ops, result, kv_model())
    assert [o.id for o in result.linearization or []] == [0, 1, 2, 3]


def test_reads_declared_read_only_are_placed_at_once() -> None:
    # Two concurrent writes and twelve concurrent reads, and a last read that says which
    # write came last: the search tries the wrong order first. Declared read-only, a
    # read is placed as soon as it fits, so that wrong order costs a few
    # configurations; not declared, the reads' orders multiply them.
    def register(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        return (input, None) if kind == "write" else (state, state)

    ops = [op(0, 1, None, 0.0, 5.0, "write"), op(1, 2, None, 0.0, 5.0, "write")]
    ops += [op(i, None, 1 if i % 2 else 2, 0.0, 5.0, "read") for i in range(2, 14)]
    ops.append(op(14, None, 1, 6.0, 7.0, "read"))
    plain = Model.from_function(register, 0)
    declared = Model.from_function(register, 0, read_only=lambda kind, input: kind == "read")
    fast = check_linearizability(ops, declared)
    slow = check_linearizability(ops, plain)
    assert fast.ok is slow.ok is True
    print(f"configurations: {fast.explored} declared, {slow.explored} not")
    assert fast.explored <= 2 * len(ops)
    assert slow.explored > 4 * fast.explored


def test_an_unknown_write_is_placed_only_where_it_changes_something() -> None:
    # Ten writes of unknown outcome of the same value, and reads that need one of them.
    ops = [op(i, ("put", "k", 7), None, 0.0, None) for i in range(10)]
    ops += [op(10, ("get", "k"), None, 1.0, 2.0), op(11, ("get", "k"), 7, 3.0, 4.0)]
    result = check_linearizability(ops, kv_model())
    assert_witness(ops, result, kv_model())
    placed = [o.id for o in result.linearization or [] if o.unknown]
    assert len(placed) == 1
    # A read of a value none of them wrote tries each (not every subset) and rejects.
    bad = [*ops[:11], op(11, ("get", "k"), 8, 3.0, 4.0)]
    rejected = check_linearizability(bad, kv_model())
    assert rejected.ok is False
    assert [o.id for o in rejected.unordered] == [11]
    assert rejected.explored < 50


def _histories(
    draw: st.DrawFn, inputs: list[Any], outputs: list[Any], run: Callable[[list[Any]], list[Any]]
) -> list[Operation]:
    """Up to six operations with small integer times (so that times tie), whose outputs
    ``run`` gives from a sequential run at random points of their intervals (the inputs
    in that order), some then changed to one of ``outputs``, some outcomes lost."""
    n = draw(st.integers(0, 6))
    raw = []
    for i in range(n):
        call = draw(st.integers(0, 5))
        ret = call + draw(st.integers(0, 3))
        point = draw(st.floats(call, ret))
        raw.append((point, i, call, ret, draw(st.sampled_from(inputs))))
    raw.sort()
    given = dict(zip((i for _, i, *_ in raw), run([input for *_, input in raw]), strict=True))
    ops = []
    for _, i, call, ret, input in sorted(raw, key=lambda item: item[1]):
        kind = "read" if input[0] == "get" else "write"
        fate = draw(st.sampled_from(["ok", "ok", "ok", "changed", "unknown"]))
        if fate == "unknown":
            ops.append(Operation(i, i, kind, input, None, call, None))
        else:
            output = draw(st.sampled_from(outputs)) if fate == "changed" else given[i]
            ops.append(Operation(i, i, kind, input, output, call, ret))
    return ops


def _kv_run(inputs: list[Any]) -> list[Any]:
    model = kv_model()
    state, outputs = model.init(), []
    for input in inputs:
        state, output = model.step(state, "", input)
        outputs.append(output)
    return outputs


@st.composite
def kv_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to six operations on one or two keys, among them puts of the value already
    there, appends and compare-and-sets."""
    keys = ["x", "y"] if draw(st.booleans()) else ["x"]
    inputs: list[Any] = []
    for key in keys:
        inputs += [("put", key, "a"), ("put", key, "b"), ("append", key, "a")]
        inputs += [("append", key, "b"), ("get", key), ("cas", key, "a", "b")]
        inputs += [("cas", key, None, "a"), ("get", key)]
    outputs = [None, "a", "b", "aa", "ab", "ba", "bb", True, False]
    return _histories(draw, inputs, outputs, _kv_run)


@st.composite
def register_histories(draw: st.DrawFn) -> list[Operation]:
    """Puts of two values and gets of one key: puts that leave the value as it was
    are frequent."""
    inputs = [("put", "x", "a"), ("put", "x", "b"), ("get", "x")]
    return _histories(draw, inputs, [None, "a", "b"], _kv_run)


@settings(max_examples=400, deadline=None)
@given(ops=st.one_of(kv_histories(), register_histories()))
def test_kv_histories_agree_with_brute_force(ops: list[Operation]) -> None:
    note("\n".join(o.describe() for o in ops))
    model = kv_model()
    result = check_linearizability(ops, model)
    assert result.ok is brute_force(ops, model)
    if result.ok:
        assert_witness(ops, result, model)
    else:
        assert result.unordered
        for o in result.unordered:
            assert o.id in result.expected
            assert not model.outputs_match(result.expected[o.id], o.output)


def random_kv_history(rng: random.Random) -> list[Operation]:
    """What :func:`kv_histories` draws, from a ``random.Random``: up to six operations
    of a correct run on one key (two values, so that a put often leaves the value as it
    was), some outputs changed, some outcomes lost."""
    inputs = [("put", "x", "a"), ("put", "x", "b"), ("get", "x"), ("get", "x")]
    inputs += [("append", "x", "a"), ("cas", "x", "a", "b")]
    raw = []
    for i in range(rng.randint(1, 6)):
        call = rng.randint(0, 5)
        ret = call + rng.randint(0, 3)
        raw.append((rng.uniform(call, ret), i, call, ret, rng.choice(inputs)))
    raw.sort()
    given = dict(zip((i for _, i, *_ in raw), _kv_run([input for *_, input in raw]), strict=True))
    ops = []
    for _, i, call, ret, input in sorted(raw, key=lambda item: item[1]):
        kind = "read" if input[0] == "get" else "write"
        fate = rng.choice(["ok"] * 6 + ["changed", "unknown"])
        if fate == "unknown":
            ops.append(Operation(i, i, kind, input, None, call, None))
        else:
            output = rng.choice([None, "a", "b", "ab"]) if fate == "changed" else given[i]
            ops.append(Operation(i, i, kind, input, output, call, ret))
    return ops


def test_random_kv_histories_agree_with_brute_force() -> None:
    # The histories where a shortcut goes wrong are rare (a few in a thousand): many
    # seeds, cheap ones. A failure names its seed; random_kv_history(Random(seed))
    # rebuilds the history.
    model = kv_model()
    for seed in range(2000):
        ops = random_kv_history(random.Random(seed))
        result = check_linearizability(ops, model)
        expected = brute_force(ops, model)
        history = "\n".join(o.describe() for o in ops)
        assert result.ok is expected, f"seed {seed}: {result.reason}\n{history}"


# --------------------------------------------------------- models that see the output
def flaky_register(state: Any, kind: str, input: Any, output: Any) -> tuple[bool, Any]:
    """A register whose write may fail: ``"ok"`` (it took effect) or ``"failed"`` (it
    did not); a read returns the value. An unknown outcome may have taken effect."""
    if kind == "read":
        return output is UNKNOWN or output == state, state
    if output == "failed":
        return True, state
    return output in ("ok", UNKNOWN), input


FLAKY = Model.from_function(
    flaky_register, 0, sees_output=True, read_only=lambda kind, input: kind == "read"
)


def test_a_step_that_sees_the_output_decides_the_new_state() -> None:
    ops = [
        op(0, 5, "failed", 0.0, 1.0, "write"),
        op(1, None, 0, 2.0, 3.0, "read"),  # the failed write left no trace
        op(2, 7, "ok", 4.0, 5.0, "write"),
        op(3, None, 7, 6.0, 7.0, "read"),
    ]
    assert_witness(ops, check_linearizability(ops, FLAKY), FLAKY)
    seen = [*ops[:1], op(1, None, 5, 2.0, 3.0, "read"), *ops[2:]]
    result = check_linearizability(seen, FLAKY)
    assert result.ok is False
    assert [o.id for o in result.unordered] == [1]
    assert result.expected == {}  # such a model cannot say what it would have returned
    assert "returned 5; called at 2.000000" in str(result)
    with pytest.raises(NotImplementedError, match="sees the output"):
        FLAKY.step(0, "read", None)


def test_a_step_that_sees_the_output_is_given_unknown_for_an_unknown_outcome() -> None:
    outputs = []

    def register(state: Any, kind: str, input: Any, output: Any) -> tuple[bool, Any]:
        outputs.append(output)
        return flaky_register(state, kind, input, output)

    model = Model.from_function(register, 0, sees_output=True)
    ops = [op(0, 5, None, 0.0, None, "write"), op(1, None, 5, 1.0, 2.0, "read")]
    result = check_linearizability(ops, model)
    assert_witness(ops, result, model)
    assert UNKNOWN in outputs
    assert repr(UNKNOWN) == "UNKNOWN"


class _SomeFail(Model):
    """The flaky register as a subclass overriding ``step_with_output``."""

    def init(self) -> Any:
        return 0

    def step_with_output(self, state: Any, kind: str, input: Any, output: Any) -> tuple[bool, Any]:
        return flaky_register(state, kind, input, output)


def _flaky_run(inputs: list[Any]) -> list[Any]:
    state, outputs = 0, []
    for k, input in enumerate(inputs):
        if input[0] == "get":
            outputs.append(state)
        elif k % 3 == 2:
            outputs.append("failed")
        else:
            state = input[1]
            outputs.append("ok")
    return outputs


@st.composite
def flaky_histories(draw: st.DrawFn) -> list[Operation]:
    inputs = [("write", 1), ("write", 2), ("get",)]
    ops = _histories(draw, inputs, ["ok", "failed", 0, 1, 2], _flaky_run)
    return [
        Operation(
            o.id,
            o.client,
            o.kind,
            o.input[1] if o.kind == "write" else None,
            o.output,
            o.call,
            o.ret,
        )
        for o in ops
    ]


@settings(max_examples=300, deadline=None)
@given(ops=flaky_histories())
def test_models_that_see_the_output_agree_with_brute_force(ops: list[Operation]) -> None:
    note("\n".join(o.describe() for o in ops))
    for model in (FLAKY, _SomeFail()):
        result = check_linearizability(ops, model)
        assert result.ok is brute_force(ops, model)
        if result.ok:
            assert_witness(ops, result, model)


# ----------------------------------------------------------------- kv_model's append
def test_kv_append_steps() -> None:
    model = kv_model()
    s1, out = model.step(model.init(), "write", ("append", "k", "ab"))
    assert out == "ab"
    s2, out = model.step(s1, "write", ("append", "k", "cd"))
    assert out == "cd"
    assert model.step(s2, "read", ("get", "k")) == (s2, "abcd")
    s3, _ = model.step(s2, "write", ["append", "t", [1]])
    s3, _ = model.step(s3, "write", ["append", "t", [2, 3]])
    assert model.step(s3, "read", ("get", "t"))[1] == (1, 2, 3)
    with pytest.raises(ValueError, match="cannot append 'x' to 5"):
        model.step(model.step(s1, "write", ("put", "n", 5))[0], "write", ("append", "n", "x"))
    assert model.read_only("read", ("get", "k"))
    assert not model.read_only("write", ("append", "k", "x"))


def test_kv_history_with_appends() -> None:
    ops = [
        op(0, ("append", "k", "x1 "), "x1 ", 0.0, 3.0),
        op(1, ("append", "k", "x2 "), "x2 ", 1.0, 4.0),
        op(2, ("get", "k"), "x2 ", 2.0, 2.5),
        op(3, ("get", "k"), "x2 x1 ", 5.0, 6.0),
        op(4, ("append", "j", "y"), "y", 0.0, 1.0),
        op(5, ("get", "j"), None, 0.5, 0.6),
    ]
    result = check_linearizability(ops, kv_model())
    assert_witness(ops, result, kv_model())
    assert "in 2 independent parts" in result.reason
    # Both appends returned before this read began: it cannot miss one.
    missed = [*ops[:3], op(3, ("get", "k"), "x2 ", 5.0, 6.0), *ops[4:]]
    rejected = check_linearizability(missed, kv_model())
    assert rejected.ok is False
    assert rejected.partition == "k"
    assert rejected.expected == {3: "x2 x1 "}
    assert "Model state after that prefix: {'k': 'x2 x1 '}" in str(rejected)


@pytest.mark.parametrize(
    ("input", "message"),
    [
        (("delete", "k"), "knows 'get', 'put', 'append' and 'cas', not 'delete'"),
        (("put", "k"), r"a key-value input is \('get', key\)"),
        ("put k 1", "not 'put k 1'"),
    ],
)
def test_kv_model_refuses_inputs_it_does_not_know(input: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_linearizability([op(0, input, None, 0.0, 1.0)], kv_model())


# ------------------------------------------------------------- Model.from_function
def test_from_function_partition_key_checks_each_key_on_its_own() -> None:
    def register(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        return (input[1], None) if kind == "write" else (state, state)

    def key(kind: str, input: Any) -> Hashable:
        return input[0]

    by_key = Model.from_function(register, 0, partition_key=key)
    assert by_key.partition_key("write", ("a", 1)) == "a"
    ops = [
        op(0, ("a", 1), None, 0.0, 1.0, "write"),
        op(1, ("b", 2), None, 0.0, 1.0, "write"),
        op(2, ("a",), 1, 2.0, 3.0, "read"),
        op(3, ("b",), 2, 2.0, 3.0, "read"),
    ]
    result = check_linearizability(ops, by_key)
    assert "in 2 independent parts" in result.reason
    assert_witness(ops, result, by_key)
    # The same register without the key: one state for both, so the reads conflict.
    assert check_linearizability(ops, Model.from_function(register, 0)).ok is False


def test_from_function_refuses_what_is_not_a_function() -> None:
    with pytest.raises(TypeError, match="step must be a function"):
        Model.from_function(5, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="partition_key must be a function or None"):
        Model.from_function(lambda s, k, i: (s, s), 0, partition_key="k")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="read_only must be a function or None"):
        Model.from_function(lambda s, k, i: (s, s), 0, read_only=True)  # type: ignore[arg-type]


def test_a_history_must_hold_operations() -> None:
    with pytest.raises(TypeError, match="a history holds Operation objects, not 5"):
        check_linearizability([5], kv_model())  # type: ignore[list-item]
    with pytest.raises(TypeError, match="a history is a History or an iterable"):
        check_linearizability(5, kv_model())  # type: ignore[arg-type]


# ------------------------------------------------------------- Porcupine's logs
# Made up here, in the formats of Porcupine's test data.
KV_LOG = """\
{:process 0, :type :invoke, :f :append, :key "1", :value "x 0 0 y"}
{:process 1, :type :invoke, :f :get, :key "1", :value nil}
{:process 0, :type :ok, :f :append, :key "1", :value "x 0 0 y"}
{:process 1, :type :ok, :f :get, :key "1", :value ""}
{:process 1, :type :invoke, :f :get, :key "1", :value nil}
{:process 1, :type :ok, :f :get, :key "1", :value "x 0 0 y"}
{:process 2, :type :invoke, :f :put, :key "2", :value "x 2 0 y"}
{:process 2, :type :ok, :f :put, :key "2", :value "x 2 0 y"}
{:process 0, :type :invoke, :f :get, :key "2", :value nil}
{:process 0, :type :ok, :f :get, :key "2", :value "x 2 0 y"}
{:process 3, :type :invoke, :f :put, :key "2", :value "x 3 0 y"}
"""

JEPSEN_LOG = """\
INFO  jepsen.util - 0	:invoke	:write	3
INFO  jepsen.util - 1	:invoke	:read	nil
INFO  jepsen.util - 0	:ok	:write	3
INFO  jepsen.util - 1	:ok	:read	3
INFO  jepsen.util - 2	:invoke	:cas	[3 4]
INFO  jepsen.util - 2	:info	:cas	:timed-out
INFO  jepsen.util - 3	:invoke	:cas	[1 2]
INFO  jepsen.util - 3	:fail	:cas	[1 2]
INFO  jepsen.util - 4	:invoke	:read	nil
INFO  jepsen.util - 4	:fail	:read	:timed-out
INFO  jepsen.util - 1	:invoke	:read	nil
INFO  jepsen.util - 1	:ok	:read	4
"""


def test_porcupine_kv_log() -> None:
    ops = parse_kv_log(KV_LOG)
    assert [o.input for o in ops] == [
        ("append", "1", "x 0 0 y"),
        ("get", "1"),
        ("get", "1"),
        ("put", "2", "x 2 0 y"),
        ("get", "2"),
        ("put", "2", "x 3 0 y"),
    ]
    assert ops[1].output is None  # Porcupine's "" of a key never written
    assert (ops[1].call, ops[1].ret) == (1, 3)
    assert ops[5].unknown  # it never returned
    result = check_linearizability(ops, kv_model())
    assert_witness(ops, result, kv_model())
    stale = parse_kv_log(
        KV_LOG.replace(':value "x 0 0 y"}\n{:process 2', ':value ""}\n{:process 2')
    )
    assert check_linearizability(stale, kv_model()).ok is False


def test_porcupine_jepsen_log() -> None:
    ops = parse_jepsen_log(JEPSEN_LOG)
    assert [(o.input, o.output, o.unknown) for o in ops] == [
        (("put", "x", 3), 3, False),
        (("get", "x"), 3, False),
        (("cas", "x", 3, 4), None, True),  # :info: it may have taken effect
        (("cas", "x", 1, 2), False, False),
        (("get", "x"), None, True),  # timed out
        (("get", "x"), 4, False),
    ]
    result = check_linearizability(ops, kv_model())
    assert_witness(ops, result, kv_model())
    never = parse_jepsen_log(JEPSEN_LOG.replace(":read\t4", ":read\t5"))
    assert check_linearizability(never, kv_model()).ok is False


def test_go_bench_output() -> None:
    text = (
        "BenchmarkKv50ClientsBad-2   \t      20\t  32525298 ns/op\n"
        "BenchmarkKv50ClientsBad-2   \t      20\t  30000000 ns/op\n"
        "BenchmarkEtcdJepsen002    \t      20\t 234467840 ns/op\n"
    )
    assert parse_go_bench(text) == {"Kv50ClientsBad": 0.03, "EtcdJepsen002": 0.23446784}


# ---------------------------------------------------------------- import structure
CHECKER = ["_checker", "_history", "_machine_model", "_models", "_operation", "_search"]


def _imports(tree: ast.Module) -> set[str]:
    """The sibling modules a module imports, at any depth of its body."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_checkers_modules_import_each_other_without_a_circle() -> None:
    root = Path(trioraft.testing.__file__).parent
    trees = {name: ast.parse((root / f"{name}.py").read_text()) for name in CHECKER}
    graph = {name: _imports(tree) & set(CHECKER) for name, tree in trees.items()}
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name not in order:
            for other in sorted(graph[name]):
                visit(other, (*path, name))
            order.append(name)

    for name in CHECKER:
        visit(name, ())
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
                assert not inner, f"{name}.{node.name} imports inside a function"
