"""The ``floor`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ._base import (
    _REPO_ROOT,
    BenchOptions,
    Progress,
    Result,
    SkipSection,
    _num,
    _table,
    register_section,
)

_FLOOR_RELATIVE = Path("..") / "shared" / "anchors" / "trio_floor.py"


# ----------------------------------------------------------------------------- floor
def find_floor(explicit: Path | None = None) -> Path | None:
    """The Trio floor script: ``explicit`` if given (and it exists), else
    ``../shared/anchors/trio_floor.py`` relative to the working directory, then relative
    to the repository root. ``None`` if none exists."""
    if explicit is not None:
        return explicit if explicit.is_file() else None
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = (base / _FLOOR_RELATIVE).resolve()
        if candidate.is_file():
            return candidate
    return None


def run_floor(path: Path, concurrency: int, seconds: float) -> Result:
    """Run the floor script once as a subprocess of this Python; return its JSON object,
    plus ``cpu_share``: the child's CPU seconds over its wall seconds (startup included),
    where the platform tells (``None`` elsewhere)."""
    before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(path), "--concurrency", str(concurrency), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{path} --concurrency {concurrency} failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    wall = time.perf_counter() - started
    after = _children_cpu()
    data = json.loads(lines[-1])
    if not isinstance(data, dict) or "floor_writes_per_s" not in data:
        raise RuntimeError(f"{path} printed no floor_writes_per_s: {lines[-1][:200]!r}")
    data["cpu_share"] = (
        (after - before) / wall if before is not None and after is not None else None
    )
    return data


def _children_cpu() -> float | None:
    """CPU seconds used by this process's finished children, where the platform tells."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_floor_section(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``floor`` section: the Trio floor per concurrency, and trioraft's ratio to it."""
    path = find_floor(options.floor)
    if path is None:
        where = (
            str(options.floor)
            if options.floor is not None
            else f"{_FLOOR_RELATIVE} from {Path.cwd()} or {_REPO_ROOT}"
        )
        raise SkipSection(f"trio_floor.py not found ({where}); pass --floor PATH")
    ours: dict[int, float] = {}
    if "throughput" in results:
        ours = {r["concurrency"]: r["writes_per_s"] for r in results["throughput"]["runs"]}
    runs: list[Result] = []
    for c in options.concurrency:
        progress(f"floor: C={c}, {options.seconds:g} s ...")
        data = run_floor(path, c, options.seconds)
        floor = float(data["floor_writes_per_s"])
        row: Result = {
            "concurrency": c,
            "floor_writes_per_s": floor,
            "floor_p50_ms": data.get("p50_ms"),
            "floor_p99_ms": data.get("p99_ms"),
            "trioraft_writes_per_s": ours.get(c),
            "floor_cpu_share": data.get("cpu_share"),
            "ratio": ours[c] / floor if c in ours and floor > 0 else None,
        }
        progress(
            f"floor: C={c}: {floor:,.0f} writes/s"
            + (f", trioraft/floor = {row['ratio']:.3f}" if row["ratio"] is not None else "")
        )
        runs.append(row)
    return {"path": str(path), "runs": runs}


def render_floor(result: Result) -> list[str]:
    """Table lines for the ``floor`` section."""
    num = _num
    rows = [
        [
            str(r["concurrency"]),
            num(r["trioraft_writes_per_s"], ",.0f"),
            num(r["floor_writes_per_s"], ",.0f"),
            num(r["ratio"], ".3f"),
            num(r["floor_p50_ms"], ".3f"),
            num(r["floor_p99_ms"], ".3f"),
            num(r["floor_cpu_share"], ".2f"),
        ]
        for r in result["runs"]
    ]
    lines = _table(
        [
            "C",
            "trioraft w/s",
            "floor w/s",
            "ratio",
            "floor p50 ms",
            "floor p99 ms",
            "floor CPU share",
        ],
        rows,
    )
    lines.append(f"floor: {result['path']}")
    return lines


register_section(
    "floor",
    "Against the Trio floor (same run)",
    run_floor_section,
    render_floor,
    aliases=("--no-floor",),
)
