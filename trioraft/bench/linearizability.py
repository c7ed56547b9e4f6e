"""The ``linearizability`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

import trioraft
import trioraft.testing

from ._base import (
    BenchOptions,
    Reporter,
    Result,
    _records_table,
    section,
)


# ------------------------------------------------------------------- linearizability
def simulated_counter_history(
    operations: int, clients: int, seed: int, *, corrupt: bool = False
) -> list[Any]:
    """A history a correct counter service could produce: ``clients`` clients, each
    calling one operation after another with random durations, each operation taking
    effect at a random instant within its call (two writes for every read). With
    ``corrupt``, one read answers a value no linearization explains."""
    from ..testing import Operation

    rng = random.Random(seed)
    pending: list[tuple[float, float, float, int, str, int]] = []
    clock = [0.0] * clients
    for op_id in range(operations):
        client = op_id % clients
        call = clock[client] + rng.uniform(0, 1)
        ret = call + rng.uniform(0.1, 5)
        clock[client] = ret
        kind = "write" if rng.random() < 2 / 3 else "read"
        amount = rng.randint(1, 10**9) if kind == "write" else 0
        pending.append((rng.uniform(call, ret), call, ret, client, kind, amount))
    total = 0
    ops = []
    for op_id, (_, call, ret, client, kind, amount) in enumerate(sorted(pending)):
        total += amount
        ops.append(Operation(op_id, client, kind, amount or None, total, call, ret))
    ops.sort(key=lambda o: o.call)
    if corrupt:
        victim = next(i for i in range(len(ops) // 2, len(ops)) if ops[i].kind == "read")
        ops[victim] = attrs.evolve(ops[victim], output=ops[victim].output - 1)
    return ops


def _timed(
    model: Any, good: list[Any], bad: list[Any], replayed: Callable[[], Iterable[Any]]
) -> Result:
    """Time the check of the correct history ``good`` and of the corrupted ``bad``
    against ``model``, and the replay through it of the operations ``replayed()``
    (those that took effect, in order; their ordering is timed too): the baseline."""
    from ..testing import check_linearizability

    start = time.perf_counter()
    state = model.init()
    for op in replayed():
        state, _ = model.step(state, op.kind, op.input)
    replay_s = max(time.perf_counter() - start, 1e-9)
    start = time.perf_counter()
    accepted = check_linearizability(good, model)
    good_s = time.perf_counter() - start
    start = time.perf_counter()
    rejected = check_linearizability(bad, model)
    bad_s = time.perf_counter() - start
    if accepted.ok is not True or rejected.ok is not False:
        raise AssertionError("the linearizability checker decided a simulated history wrongly")
    return {
        "accept_s": good_s,
        "reject_s": bad_s,
        "replay_s": replay_s,
        "accept_ratio": good_s / replay_s,
        "explored_accept": accepted.explored,
        "explored_reject": rejected.explored,
    }


def measure_linearizability(operations: int = 1000, clients: int = 10, seed: int = 0) -> Result:
    """Check time of a correct and of a corrupted ``operations``-operation history from
    ``clients`` clients, against the time to replay the same operations sequentially
    through the model (the baseline: what checking costs when nothing is concurrent)."""
    from ..testing import counter_model

    model = counter_model()
    good = simulated_counter_history(operations, clients, seed)
    bad = simulated_counter_history(operations, clients, seed, corrupt=True)

    def replayed() -> list[Any]:
        return sorted(good, key=lambda o: o.output if o.kind == "write" else -1)

    return {"operations": operations, "clients": clients, **_timed(model, good, bad, replayed)}


class RegisterDict(trioraft.StateMachine):
    """The state machine of the linearizability section's second case: a dict of
    ``keys`` keys (``"k0"``, ``"k1"``...). ``("set", key, value)`` stores ``value`` and
    returns the previous value; ``("get", key)`` returns the value. Like many a service's
    machine, it has ``write`` and ``read`` only, no ``snapshot``/``restore``."""

    def __init__(self, keys: int) -> None:
        self.data: dict[str, Any] = {f"k{i}": 0 for i in range(keys)}

    def write(self, command: Any) -> Any:
        """Apply ``("set", key, value)``."""
        _, key, value = command
        previous = self.data.get(key)
        self.data[key] = value
        return previous

    def read(self, query: Any) -> Any:
        """Answer ``("get", key)``."""
        return self.data.get(query[1])


def simulated_dict_history(
    operations: int, clients: int, keys: int, seed: int, *, corrupt: bool = False
) -> tuple[list[Any], list[int]]:
    """A history a correct :class:`RegisterDict` service could produce, and the ids of the
    operations that took effect, in the order they did.

    Each of ``clients`` clients calls one operation after another, pausing 0 to 50 ms
    between them; an operation lasts 2 to 20 ms and takes effect at a random instant
    within it (timings like those of clients of a 3-server cluster in a test, on the
    virtual clock: about 15 operations in flight at a time with 50 clients). Half the
    operations are sets of a unique value, half are gets; a fifth go to 10 hot keys and
    the rest to any of ``keys`` keys. 3% lose their outcome (unknown): half of those
    took effect, half never did. With ``corrupt``, one get answers a value no
    linearization explains."""
    from ..testing import Operation

    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    free_at = [rng.uniform(0, 0.05) for _ in range(clients)]
    raw: list[tuple[float, float, float, int, str, tuple[Any, ...], str]] = []
    for k in range(operations):
        client = min(range(clients), key=free_at.__getitem__)
        call = free_at[client] + rng.uniform(0, 0.05)
        ret = free_at[client] = call + rng.uniform(0.002, 0.02)
        key = rng.choice(names[:10] if rng.random() < 0.2 else names)
        kind, input = (
            ("write", ("set", key, k + 1)) if rng.random() < 0.5 else ("read", ("get", key))
        )
        fate = rng.choice(["applied", "vanished"]) if rng.random() < 0.03 else "ok"
        raw.append((call, ret, rng.uniform(call, ret), client, kind, input, fate))
    raw.sort()
    machine = RegisterDict(keys)
    outputs: dict[int, Any] = {}
    applied = sorted(
        (i for i, item in enumerate(raw) if item[6] != "vanished"), key=lambda i: raw[i][2]
    )
    for i in applied:
        _, _, _, _, kind, input, _ = raw[i]
        outputs[i] = machine.write(input) if kind == "write" else machine.read(input)
    ops = [
        Operation(i, client, kind, input, outputs[i], call, ret)
        if fate == "ok"
        else Operation(i, client, kind, input, None, call, None)
        for i, (call, ret, _, client, kind, input, fate) in enumerate(raw)
    ]
    if corrupt:
        middle = ops[len(ops) // 2 :]
        victim = next(op for op in middle if op.kind == "read" and not op.unknown)
        ops[victim.id] = attrs.evolve(victim, output=-1)
    return ops, applied


def measure_dict_linearizability(
    operations: int = 1050, clients: int = 50, keys: int = 1000, seed: int = 0
) -> Result:
    """Check time of a correct and of a corrupted history of a :class:`RegisterDict`
    service (:func:`simulated_dict_history`), against a model made of the machine class
    (:meth:`~trioraft.testing.Model.from_state_machine`, checking key by key with
    :meth:`~trioraft.testing.Model.command_key`), and the time to replay the operations
    that took effect through the same model, in order (the baseline)."""
    from ..testing import Model

    model = Model.from_state_machine(RegisterDict, keys, partition_key=Model.command_key)
    good, applied = simulated_dict_history(operations, clients, keys, seed)
    bad, _ = simulated_dict_history(operations, clients, keys, seed, corrupt=True)
    return {
        "operations": operations,
        "clients": clients,
        "keys": keys,
        "keys_used": len({op.input[1] for op in good}),
        "unknown": sum(op.unknown for op in good),
        **_timed(model, good, bad, lambda: (good[i] for i in applied)),
    }


def run_linearizability(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
) -> Result:
    """The ``linearizability`` section: :func:`measure_linearizability`, with
    :func:`measure_dict_linearizability` under ``"dict_machine"``."""
    progress("linearizability: checking 1,000-operation counter histories ...")
    result = measure_linearizability()
    progress("linearizability: checking 1,050 operations on a 1,000-key state machine ...")
    result["dict_machine"] = measure_dict_linearizability()
    return result


def render_linearizability(result: Result) -> list[str]:
    """Table lines for the ``linearizability`` section."""
    cases = [{"history": "counter", **result}]
    if "dict_machine" in result:
        dm = result["dict_machine"]
        cases.append({"history": f"dict machine, {dm['keys']:,} keys", **dm})
    for case in cases:
        case.update({f"{k}_ms": case[f"{k}_s"] * 1e3 for k in ("accept", "reject", "replay")})
    lines = _records_table(
        cases,
        "history: {history} | ops: {operations:,} | clients: {clients} | "
        "accept ms: {accept_ms:.1f} | reject ms: {reject_ms:.1f} | replay ms: {replay_ms:.2f} | "
        "accept/replay: {accept_ratio:.0f}",
    )
    lines.append(
        "histories simulated from a seed; reject: one read corrupted; replay: the operations "
        "that took effect applied in order through the model (the baseline)"
    )
    if "dict_machine" in result:
        dm = result["dict_machine"]
        lines.append(
            f"dict machine: Model.from_state_machine (write/read only, no snapshot) checked key "
            f"by key ({dm['keys_used']} keys used), {dm['unknown']} operations of unknown outcome"
        )
    return lines


SECTION = section(
    "linearizability",
    "Linearizability checking (1,000-operation histories)",
    run_linearizability,
    render_linearizability,
)
