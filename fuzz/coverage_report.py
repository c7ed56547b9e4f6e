"""How much of the decoders a corpus reaches: ``python fuzz/coverage_report.py
CORPUS_DIR`` replays ``CORPUS_DIR/<target>/*`` through the targets under coverage.py
(branch coverage) and prints, per module and per target, the lines and branches run.
Used to compare the corpora two fuzzers built in the same CPU time."""

from __future__ import annotations

import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["_codec.py", "_network/wire.py", "_network/handshake.py", "_network/frames.py",
           "_network/tcp.py"]  # fmt: skip


def _measure(corpus: Path, names: list[str]) -> coverage.Coverage:
    include = [str(ROOT / "trioraft" / module) for module in MODULES]
    cov = coverage.Coverage(branch=True, include=include, data_file=None)
    cov.start()
    from fuzz import targets  # imported while measured: module bodies count alike

    for name in names:
        for path in sorted((corpus / name).glob("*")):
            try:
                targets.run(targets.TARGETS[name], path.read_bytes())
            except Exception as exc:  # a finding: counted, and the replay goes on
                print(f"  {name}/{path.name}: {targets.signature(exc)}")
    cov.stop()
    return cov


def main(corpus: Path, names: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    cov = _measure(corpus, names)
    total = [0, 0, 0, 0]
    for module in MODULES:
        path = str(ROOT / "trioraft" / module)
        analysis = cov._analyze(path)
        numbers = analysis.numbers
        lines = (numbers.n_statements - numbers.n_missing, numbers.n_statements)
        branches = (numbers.n_branches - numbers.n_missing_branches, numbers.n_branches)
        total = [a + b for a, b in zip(total, (*lines, *branches), strict=True)]
        print(
            f"{module:24} lines {lines[0]:4}/{lines[1]:<4} branches {branches[0]:4}/{branches[1]}"
        )
    print(f"{'all':24} lines {total[0]:4}/{total[1]:<4} branches {total[2]:4}/{total[3]}")


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    main(folder, sys.argv[2:] or sorted(p.name for p in folder.iterdir() if p.is_dir()))
