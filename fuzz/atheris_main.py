#!/usr/bin/env python
"""Run one target under atheris (libFuzzer): ``python fuzz/atheris_main.py TARGET
[libFuzzer options] [CORPUS_DIR ...]``. See fuzz/README.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["trioraft", "fuzz"]):
    from fuzz import targets


def main() -> None:
    # libFuzzer runs this script again for -merge (its path, the options, no target
    # name): the target travels in the environment.
    name = os.environ.get("FUZZ_TARGET")
    if name is None:
        if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
            sys.exit(f"usage: atheris_main.py {{{','.join(targets.TARGETS)}}} [options]")
        name = os.environ["FUZZ_TARGET"] = sys.argv.pop(1)
    findings = os.environ.get("FUZZ_FINDINGS")

    def one_input(data: bytes) -> None:
        targets.run_recording(name, data, findings)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
