"""Write out HypoFuzz's corpus as files, one folder per target, as libFuzzer keeps its
own: ``python fuzz/export_hypofuzz.py HYPOTHESIS_DB OUT``. (HypoFuzz keeps each test's
covering inputs in the Hypothesis database as choice sequences; each is drawn again
through the test's strategy to get the bytes the test ran on.)"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

from hypothesis.database import DirectoryBasedExampleDatabase, choices_from_bytes
from hypothesis.internal.conjecture.data import ConjectureData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import targets, test_hypofuzz

CORPUS_KEY = b".hypofuzz.corpus"


def _keys(database: str) -> dict[str, bytes]:
    """Each test's database key, as HypoFuzz's own records of its runs give it (the
    key depends on how the test was collected, so it is read, not computed)."""
    keys = {}
    for path in Path(database).glob("*/*"):
        data = path.read_bytes()
        if data.startswith(b'{"database_key"'):
            record = json.loads(data)
            name = record.get("nodeid", "").rpartition("::test_")[2]
            keys[name] = base64.b64decode(record["database_key"])
    return keys


def main(database: str, out: str) -> None:
    db = DirectoryBasedExampleDatabase(database)
    keys = _keys(database)
    for name in targets.TARGETS:
        if name not in keys:
            print(f"{name}: not fuzzed")
            continue
        key = keys[name]
        folder = Path(out, name)
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for value in db.fetch(key + CORPUS_KEY):
            choices = choices_from_bytes(value)
            if choices is None:
                continue
            data = ConjectureData.for_choices(choices)
            try:
                drawn = data.draw(test_hypofuzz._BYTES)
            except Exception:  # a choice sequence that no longer fits the strategy
                continue
            (folder / hashlib.sha1(drawn).hexdigest()).write_bytes(drawn)
            count += 1
        print(f"{name}: {count} inputs")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
