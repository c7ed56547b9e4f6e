"""Porcupine's own test histories, when a checkout of Porcupine is at hand: set
``TRIORAFT_PORCUPINE`` to its directory (the data is not copied here). Every verdict must
be the one Porcupine's tests expect. Times are measured by ``python -m
trioraft.bench.porcupine``, not here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trioraft.bench.porcupine import PorcupineCase, load_cases
from trioraft.testing import check_linearizability, kv_model

SOURCE = os.environ.get("TRIORAFT_PORCUPINE")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCE, reason="set TRIORAFT_PORCUPINE to a checkout of Porcupine"),
]


def _cases() -> list[PorcupineCase]:
    return load_cases(Path(SOURCE)) if SOURCE else []


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case.name)
def test_verdict_is_porcupines(case: PorcupineCase) -> None:
    assert case.expected is not None, f"{case.name}: Porcupine's expected verdict not found"
    result = check_linearizability(case.ops, kv_model(), max_seconds=120)
    assert result.ok is case.expected, str(result)
