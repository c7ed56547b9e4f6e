"""The fuzz targets as Hypothesis tests, for HypoFuzz: ``hypothesis fuzz -n 1 --
fuzz/test_hypofuzz.py`` (see fuzz/README.md). Each test takes arbitrary bytes, as the
atheris harness does, so that the two fuzzers are compared on the same targets."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import targets

_FINDINGS = os.environ.get("FUZZ_FINDINGS")
# HypoFuzz fuzzes only tests that use the default database: set it for the whole run.
settings.register_profile(
    "trioraft-fuzz",
    deadline=None,
    max_examples=200,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    database=DirectoryBasedExampleDatabase(
        os.environ.get("FUZZ_HYPOTHESIS_DB", ".hypothesis/fuzz")
    ),
)
settings.load_profile("trioraft-fuzz")
_BYTES = st.binary(max_size=targets.MAX_LEN)


def _fuzz_test(name: str) -> Callable[[], None]:
    def test(data: bytes) -> None:
        targets.run_recording(name, data, _FINDINGS)

    test.__name__ = test.__qualname__ = f"test_{name}"
    # Hypothesis keys its database by the test's source, the same for every target.
    test._hypothesis_internal_add_digest = name.encode()  # type: ignore[attr-defined]
    return given(_BYTES)(test)  # type: ignore[no-any-return]


for _name in targets.TARGETS:
    globals()[f"test_{_name}"] = _fuzz_test(_name)
