"""The fuzz targets as Hypothesis tests, for HypoFuzz: ``hypothesis fuzz -n 1 --
fuzz/test_hypofuzz.py`` (see fuzz/README.md). Each test takes arbitrary bytes, as the
atheris harness does, so that the two fuzzers are compared on the same targets."""

from __future__ import annotations

import os
import sys
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
_SETTINGS = settings()
_BYTES = st.binary(max_size=targets.MAX_LEN)


@_SETTINGS
@given(_BYTES)
def test_wire_decode(data: bytes) -> None:
    targets.run_recording("wire_decode", data, _FINDINGS)


@_SETTINGS
@given(_BYTES)
def test_wire_gradually(data: bytes) -> None:
    targets.run_recording("wire_gradually", data, _FINDINGS)


@_SETTINGS
@given(_BYTES)
def test_handshake_parse(data: bytes) -> None:
    targets.run_recording("handshake_parse", data, _FINDINGS)


@_SETTINGS
@given(_BYTES)
def test_handshake_listener(data: bytes) -> None:
    targets.run_recording("handshake_listener", data, _FINDINGS)


@_SETTINGS
@given(_BYTES)
def test_handshake_dialler(data: bytes) -> None:
    targets.run_recording("handshake_dialler", data, _FINDINGS)


@_SETTINGS
@given(_BYTES)
def test_records_split(data: bytes) -> None:
    targets.run_recording("records_split", data, _FINDINGS)


@_SETTINGS
@given(_BYTES)
def test_frame_stream(data: bytes) -> None:
    targets.run_recording("frame_stream", data, _FINDINGS)
