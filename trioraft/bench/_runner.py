"""The benchmark's runner: which sections there are and in what order, running them, the
report's text, and the command line (``python -m trioraft.bench``). The method of each
section is described in :mod:`trioraft.bench._base` and in the section's module.

The sections are listed here, in the order they run (:data:`SECTIONS`): each section
module makes its :class:`~trioraft.bench._base.Section` as ``SECTION`` and registers
nothing by being imported. An application may add a section of its own with
:func:`register_section`.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import (
    catchup,
    clients,
    disk,
    election,
    floor,
    hostile,
    linearizability,
    memory,
    plots,
    reads,
    simulation,
    snapshot,
    tcp,
    throughput,
)
from ._base import (
    BenchOptions,
    Reporter,
    Result,
    Section,
    SkipSection,
    _concurrency_list,
    _directory_list,
    _loadavg,
    _meta,
    _non_negative_float,
    _non_negative_int,
    _positive_float,
    _positive_int,
    _stderr,
    section,
)

__all__ = ["SECTIONS", "main", "parse_args", "register_section", "render_report", "run_benchmark"]

#: Every section, in the order they run.
SECTIONS: dict[str, Section] = {
    s.name: s
    for s in (
        throughput.SECTION,
        floor.SECTION,
        election.SECTION,
        catchup.SECTION,
        simulation.SECTION,
        linearizability.SECTION,
        memory.SECTION,
        snapshot.SECTION,
        disk.SECTION,
        reads.SECTION,
        tcp.SECTION,
        hostile.SECTION,
        clients.SECTION,
    )
}


def register_section(
    name: str,
    title: str,
    run: Callable[[BenchOptions, Mapping[str, Result], Reporter], Result],
    render: Callable[[Result], list[str]],
    *,
    aliases: Sequence[str] = (),
    default: bool = True,
    options: Sequence[str] = (),
) -> Section:
    """Add a section of an application's own to :data:`SECTIONS`, to run after the
    others (the built-in ones are listed above, not registered)."""
    if name in SECTIONS:
        raise ValueError(f"a section named {name!r} is already registered")
    made = section(name, title, run, render, aliases=aliases, default=default, options=options)
    SECTIONS[name] = made
    return made


def run_benchmark(
    options: BenchOptions,
    *,
    skip: Sequence[str] = (),
    only: Sequence[str] = (),
    progress: Reporter | None = None,
) -> Result:
    """Run the registered sections, in order, and return the report:
    ``{"ok", "errors", "meta", "options", "sections", "skipped"}`` (JSON-able). With
    ``only``, just those sections; else every default section not named in ``skip``.

    ``ok`` is false when a section reported sanity-check failures (listed in ``errors``).
    """
    unknown = sorted((set(skip) | set(only)) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; sections are {list(SECTIONS)}")
    say = progress if progress is not None else _stderr
    meta = _meta()
    sections: dict[str, Result] = {}
    skipped: dict[str, str] = {}
    errors: list[str] = []
    for name, entry in SECTIONS.items():
        if only and name not in only:
            continue
        if name in skip or (not only and not entry.default):
            skipped[name] = "skipped on request" if name in skip else "runs only when named"
            continue
        try:
            result = entry.run(options, sections, say)
        except SkipSection as exc:
            skipped[name] = str(exc)
            say(f"{name}: skipped: {exc}")
            continue
        sections[name] = result
        errors.extend(f"{name}: {e}" for e in result.get("errors", ()))
    return {
        "ok": not errors,
        "errors": errors,
        "meta": {**meta, "load_after": _loadavg()},
        "options": options.as_json(),
        "sections": sections,
        "skipped": skipped,
    }


def _options_line(report: Mapping[str, Any]) -> str | None:
    """The options that apply to the sections the report holds, in :class:`BenchOptions`'
    order (``None`` when none does)."""
    used = {o for name in report["sections"] if name in SECTIONS for o in SECTIONS[name].options}
    shown = []
    for field in attrs.fields(BenchOptions):
        if field.name in used and field.name in report["options"]:
            value = report["options"][field.name]
            if isinstance(value, list):
                value = ",".join(map(str, value))
            elif isinstance(value, float):
                value = format(value, "g")
            shown.append(f"{field.name}={value}")
    return "options: " + " ".join(shown) if shown else None


def render_report(report: Mapping[str, Any]) -> str:
    """The human-readable form of a :func:`run_benchmark` report."""
    meta = report["meta"]
    build = f"{meta.get('build', 'pure')} build"
    if meta.get("build_reason"):
        build += f": {meta['build_reason']}"
    parts = [
        f"trioraft {meta['trioraft']} ({build}) benchmark: Python {meta['python']}, "
        f"trio {meta['trio']}, {meta['cpus']} CPUs, {meta['platform']}",
    ]
    options = _options_line(report)
    if options is not None:
        parts.extend(textwrap.wrap(options, 88, subsequent_indent="  "))
    if meta.get("load_before") is not None and meta.get("load_after") is not None:
        parts.append(
            f"load average (1/5/15 min) before: {'/'.join(map(str, meta['load_before']))}, "
            f"after: {'/'.join(map(str, meta['load_after']))} (other load skews the figures)"
        )
    for name, entry in SECTIONS.items():
        if name in report["sections"]:
            parts.append("")
            parts.append(f"== {entry.title} [{name}]")
            parts.extend(entry.render(report["sections"][name]))
        elif name in report["skipped"]:
            parts.append("")
            parts.append(f"== {entry.title} [{name}]: skipped ({report['skipped'][name]})")
    if report["errors"]:
        parts.append("")
        parts.extend(f"ERROR: {e}" for e in report["errors"])
    return "\n".join(parts)


@attrs.frozen
class _Flag:
    """A command-line option that sets the :class:`BenchOptions` field ``dest``; its
    default is that field's default."""

    flag: str
    type: Callable[[str], Any]
    help: str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


#: The tunables set before the section flags, in the order ``--help`` lists them.
_FLAGS = (
    _Flag(
        "--seconds",
        _positive_float,
        "measured seconds per throughput run and per floor run (default %(default)s)",
    ),
    _Flag(
        "--warmup",
        _non_negative_float,
        "seconds of unmeasured writes before each throughput run (default %(default)s)",
    ),
    _Flag(
        "--concurrency",
        _concurrency_list,
        "comma-separated numbers of concurrent writers (default 1,16,256)",
    ),
    _Flag("--trials", _positive_int, "election trials (default %(default)s)"),
    # Ignored, and so not in --help: the Trio floor is trioraft.bench.floor, run in this
    # process (an external floor script, formerly); still accepted for old scripts.
    _Flag("--floor", Path, argparse.SUPPRESS, "PATH"),
    _Flag(
        "--catchup-entries",
        _positive_int,
        "log length a new server catches up with (default %(default)s)",
    ),
    _Flag(
        "--sim-seeds",
        _positive_int,
        "simulated runs in the simulation section (default %(default)s)",
    ),
    _Flag(
        "--sim-seconds",
        _positive_float,
        "virtual seconds per simulated run (default %(default)s)",
    ),
    _Flag(
        "--memory-writes",
        _concurrency_list,
        "comma-separated, ascending numbers of writes after which the memory section "
        "measures RSS and log length (default 100000,1000000)",
    ),
    _Flag(
        "--snapshot-mb",
        _positive_int,
        "megabytes of state the snapshot section installs on a new server (default %(default)s)",
    ),
    _Flag(
        "--disk-concurrency",
        _concurrency_list,
        "comma-separated numbers of concurrent writers on DiskStorage (default 1,16,256)",
    ),
    _Flag(
        "--disk-dirs",
        _directory_list,
        "disk section: 3 comma-separated existing directories, one per server (put each "
        "on a disk of its own to measure a disk per server); default: one temporary "
        "directory",
        "DIRS",
    ),
    _Flag(
        "--reads-concurrency",
        _concurrency_list,
        "comma-separated numbers of concurrent readers (default 1,16,256)",
    ),
)
#: The tunables set after the section flags: the plots, then the tcp and hostile sections'.
_LATE_FLAGS = (
    _Flag(
        "--plot",
        Path,
        "write SVG plots into DIR (needs matplotlib: pip install -e '.[bench]' in a checkout)",
        "DIR",
    ),
    _Flag(
        "--tcp-concurrency",
        _concurrency_list,
        "tcp section: comma-separated numbers of writes kept in flight on the leader "
        "(default 1,16,256,4096)",
    ),
    _Flag(
        "--tcp-seconds",
        _positive_float,
        "tcp section: measured seconds per throughput run (default %(default)s)",
    ),
    _Flag(
        "--tcp-elections",
        _positive_int,
        "tcp section: leader kills (SIGKILL) to time the election after (default %(default)s)",
    ),
    _Flag(
        "--tcp-readers",
        _non_negative_int,
        "tcp section: linearizable readers on the leader, then spread over the 3 servers "
        "(follower_reads), then under a lease; 0: no reads (default %(default)s)",
    ),
    _Flag(
        "--tcp-paired-rounds",
        _non_negative_int,
        "tcp section: rounds in which the systems compared take turns, each ratio within a "
        "round; 0: none (default %(default)s)",
    ),
    _Flag(
        "--tcp-paired-seconds",
        _positive_float,
        "tcp section: measured seconds per system and paired round (default %(default)s)",
    ),
    _Flag(
        "--hostile-seconds",
        _positive_float,
        "hostile section: measured seconds per window and per A/B turn (default %(default)s)",
    ),
    _Flag(
        "--hostile-rounds",
        _positive_int,
        "hostile section: rounds of the attacks (default %(default)s)",
    ),
    _Flag(
        "--hostile-frame-rounds",
        _non_negative_int,
        "hostile section: rounds of the A/B of sealed records against the handshake only; "
        "0: none (default %(default)s)",
    ),
)


def _add_flags(parser: argparse.ArgumentParser, flags: Sequence[_Flag]) -> None:
    defaults = BenchOptions()
    for f in flags:
        parser.add_argument(
            f.flag,
            type=f.type,
            default=getattr(defaults, f.dest),
            metavar=f.metavar,
            help=f.help,
        )


def _add_section_flags(parser: argparse.ArgumentParser) -> None:
    """``--json``, a ``--skip-<name>`` flag per section, and the sections to run."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on the last stdout line"
    )
    for name, entry in SECTIONS.items():
        parser.add_argument(
            f"--skip-{name}",
            *entry.aliases,
            dest=f"skip_{name}",
            action="store_true",
            help=f"skip the {name!r} section: {entry.title}",
        )
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)}); default: every section but "
        + ", ".join(n for n, s in SECTIONS.items() if not s.default),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trioraft.bench",
        description="Benchmark trioraft: throughput, latency, election time, catch-up, "
        "Trio floor ratio, memory, snapshots, disk, reads.",
    )
    _add_flags(parser, _FLAGS)
    _add_section_flags(parser)
    _add_flags(parser, _LATE_FLAGS)
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject what the option types alone cannot (``parser.error`` exits)."""
    if args.plot is not None and not plots.matplotlib_available():
        parser.error("--plot needs matplotlib: pip install -e '.[bench]' in a checkout")
    if list(args.memory_writes) != sorted(args.memory_writes):
        parser.error("--memory-writes must be ascending")
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchOptions, list[str], bool]:
    """Parse the command line into ``(options, sections to skip, json output?)``; the
    sections named on it, if any, are in ``options``' :data:`ONLY`."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    ONLY[:] = args.sections
    options = BenchOptions(**{f.dest: getattr(args, f.dest) for f in (*_FLAGS, *_LATE_FLAGS)})
    skip = [name for name in SECTIONS if getattr(args, f"skip_{name}")]
    return options, skip, bool(args.json)


#: The sections named on the last parsed command line (empty: the default sections).
ONLY: list[str] = []


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run the benchmark, print the table or the JSON line; returns the
    exit status (1 if a sanity check failed)."""
    options, skip, as_json = parse_args(argv)
    report = run_benchmark(options, skip=skip, only=ONLY)
    if as_json:
        print(json.dumps(report, allow_nan=False), flush=True)
    else:
        print(render_report(report), flush=True)
    for error in report["errors"]:
        _stderr(f"ERROR: {error}")
    if options.plot is not None:
        plots.write_plots(report, options.plot, progress=_stderr)
    return 0 if report["ok"] else 1
