"""Plots of a benchmark report, as SVG files: ``python -m trioraft.bench --plot DIR``.

matplotlib is an optional dependency (``pip install -e '.[bench]'`` in a checkout); it is imported
only here, only when plots are asked for, with its ``Agg`` backend. Each plot is drawn
when the sections it needs ran:

* ``election_cdf.svg`` (``election``): CDF of the election time over deterministic
  trials, for several election timeout ranges, as Figure 16 of the Raft paper
  (:func:`~trioraft.bench.election.measure_election_times`, computed here).
* ``write_latency_cdf.svg`` (``throughput``): CDF of the write latency, per concurrency.
* ``throughput.svg`` (``throughput``, with ``floor``, ``disk`` when they ran): writes/s
  against concurrency.
* ``memory.svg`` (``memory``): RSS and the longest log against writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._base import Reporter
from .election import FIGURE16_TIMEOUTS, measure_election_times

__all__ = ["matplotlib_available", "write_plots"]

_INSTALL = (
    "plots need matplotlib: pip install -e '.[bench]' in a checkout (or pip install matplotlib)"
)


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(_INSTALL) from None
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "trioraft-bench"  # stable ids: diffable SVGs
    import matplotlib.pyplot as plt

    return plt


def _log_x(ax: Any, ticks: Sequence[float]) -> None:
    """A logarithmic x axis labelled at ``ticks`` (plain numbers, no minor labels)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if low <= t <= high]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
_TICKS_MS = (150, 200, 300, 500, 1000, 2000, 5000, 10_000)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


def _cdf(values: Sequence[float], points: int = 1000) -> tuple[list[float], list[float]]:
    """Step-plot coordinates of the empirical CDF of ascending ``values`` (the finite
    ones; infinite ones count in the total). Beyond ``points`` values, about ``points``
    evenly spaced ranks are kept, with the top 1% (the tail) whole up to ``points``
    values more: an SVG stays small."""
    n = len(values)
    finite = [v for v in values if math.isfinite(v)]
    ranks = list(range(len(finite)))
    if len(finite) > 2 * points:
        tail = max(len(finite) - max(len(finite) // 100, 1), len(finite) - points)
        step = max(tail // points, 1)
        ranks = [*range(0, tail, step), *range(tail, len(finite))]
    return [finite[r] for r in ranks], [(r + 1) / n for r in ranks]


def _cdf_plot(
    plt: Any,
    path: Path,
    curves: Sequence[tuple[str, Sequence[float]]],
    ticks: Sequence[float],
    xlabel: str,
    of: str,
    title: str,
    legend: str,
) -> Path:
    """One step curve per ``(label, ascending values)``: the empirical CDFs of ``of``
    (trials, writes), against a logarithmic x axis labelled at ``ticks``."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, values in curves:
        xs, ys = _cdf(values)
        ax.step(xs, ys, where="post", label=label)
    _log_x(ax, ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"cumulative share of {of}")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title=legend, fontsize="small")
    return _save(plt, fig, path)


def plot_election(plt: Any, trials: int, path: Path, progress: Reporter) -> Path:
    """The election time CDF per timeout range (:data:`FIGURE16_TIMEOUTS`)."""
    curves = []
    for low, high in FIGURE16_TIMEOUTS:
        progress(f"plots: election, timeouts {low * 1e3:g}-{high * 1e3:g} ms, {trials} trials")
        times = sorted(measure_election_times(trials, (low, high)))
        missing = sum(1 for t in times if not math.isfinite(t))
        label = f"{low * 1e3:g}-{high * 1e3:g} ms" + (f" ({missing} capped)" if missing else "")
        curves.append((label, [t * 1e3 for t in times]))
    title = "Election after the leader stops (3 servers, messages delayed 5-10 ms)"
    axis = "time without a leader (ms, virtual clock)"
    return _cdf_plot(plt, path, curves, _TICKS_MS, axis, "trials", title, "election timeout")


def plot_latency(plt: Any, latencies: Mapping[int, Sequence[float]], path: Path) -> Path:
    """The write latency CDF per concurrency."""
    curves = [(f"C={c}", [v * 1e3 for v in values]) for c, values in sorted(latencies.items())]
    title = "Write latency, 3 servers in one process (real clock)"
    return _cdf_plot(plt, path, curves, _TICKS, "write latency (ms)", "writes", title, "writers")


def plot_throughput(plt: Any, sections: Mapping[str, Any], path: Path) -> Path:
    """Writes/s against concurrency: trioraft, the Trio floor, and the disk section."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lines: list[tuple[str, list[tuple[int, float]]]] = []
    runs = sections["throughput"]["runs"]
    lines.append(("trioraft (memory)", [(r["concurrency"], r["writes_per_s"]) for r in runs]))
    if "floor" in sections:
        floor = sections["floor"]["runs"]
        lines.append(("Trio floor", [(r["concurrency"], r["floor_writes_per_s"]) for r in floor]))
    if "disk" in sections:
        disk = [r for r in sections["disk"]["runs"] if r["storage"] == "disk"]
        lines.append(
            ("trioraft (DiskStorage)", [(r["concurrency"], r["writes_per_s"]) for r in disk])
        )
    for label, points in lines:
        ax.plot([c for c, _ in points], [w for _, w in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent writers (C)")
    ax.set_ylabel("writes/s")
    ax.set_title("Write throughput, 3 servers in one process")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(plt, fig, path)


def plot_memory(plt: Any, memory: Mapping[str, Any], path: Path) -> Path:
    """RSS and the longest log against the number of writes."""
    samples = memory["samples"]
    writes = [s[0] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    top.plot(writes, [s[1] for s in samples], color="tab:blue")
    top.scatter(
        [r["writes"] for r in memory["checkpoints"]],
        [r["rss_mb"] for r in memory["checkpoints"]],
        color="tab:red",
        zorder=3,
        label="checkpoints",
    )
    top.set_ylim(bottom=0)
    top.set_ylabel("RSS (MB)")
    top.set_title("Memory under endless writes (3 servers in one process)")
    top.legend(fontsize="small", loc="lower right")
    bottom.plot(writes, [s[2] for s in samples], color="tab:green", label="longest log")
    bottom.axhline(memory["log_bound"], color="grey", linestyle="--", label="threshold + trailing")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("writes")
    bottom.set_ylabel("log entries")
    bottom.legend(fontsize="small")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return _save(plt, fig, path)


def write_plots(
    report: Mapping[str, Any],
    directory: str | Path,
    *,
    latencies: Mapping[int, Sequence[float]] | None = None,
    progress: Reporter | None = None,
) -> list[Path]:
    """Write the SVG plots of ``report`` (a :func:`~trioraft.bench.run_benchmark` report)
    into ``directory`` (created if missing); return the files written. ``latencies``:
    the throughput section's write latencies by concurrency (by default those it kept
    in memory, :data:`trioraft.bench.throughput.LATENCIES`). Raises :class:`RuntimeError`
    when matplotlib is missing."""
    from .throughput import LATENCIES

    plt = _pyplot()
    say: Reporter = progress if progress is not None else (lambda line: None)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    sections = report["sections"]
    kept = latencies if latencies is not None else LATENCIES
    jobs: list[tuple[bool, Callable[[], Path]]] = [
        (
            "election" in sections,
            lambda: plot_election(plt, report["options"]["trials"], out / "election_cdf.svg", say),
        ),
        (bool(kept), lambda: plot_latency(plt, kept, out / "write_latency_cdf.svg")),
        ("throughput" in sections, lambda: plot_throughput(plt, sections, out / "throughput.svg")),
        ("memory" in sections, lambda: plot_memory(plt, sections["memory"], out / "memory.svg")),
    ]
    written = [job() for wanted, job in jobs if wanted]
    for path in written:
        say(f"plots: wrote {path}")
    return written
