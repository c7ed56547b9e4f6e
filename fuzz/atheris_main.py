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
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: atheris_main.py {{{','.join(targets.TARGETS)}}} [libFuzzer options]")
    name, findings = sys.argv[1], os.environ.get("FUZZ_FINDINGS")

    def one_input(data: bytes) -> None:
        targets.run_recording(name, data, findings)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
