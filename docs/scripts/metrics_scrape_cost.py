"""What scraping ``serve --metrics`` costs a cluster's writes (docs/metrics.rst).

Three ``python -m trioraft serve --metrics`` processes on loopback (their data on
/dev/shm), a client in this process keeping C=256 writes in flight. Each round runs
three arms in rotating order, each a window of writes after a second's settling:
A, no scraper; B, a scraper process fetching every server's /metrics once a second;
C, the same 50 times a second (the effect of one scrape a second, amplified 50 times to
stand out of a shared machine's noise). Per window: writes/s, and the three server
processes' CPU seconds per write (from /proc). Ratios are within a round.

    PYTHONPATH=. python docs/scripts/metrics_scrape_cost.py [ROUNDS] [SECONDS]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any

import trio

import trioraft
from trioraft.testing import free_tcp_ports

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
C = 256
PERIODS = {"A": None, "B": 1.0, "C": 0.02}  # seconds between scrapes, per arm
SCRAPER = """
import sys, time, urllib.request
period, urls = float(sys.argv[1]), sys.argv[2:]
while True:
    started = time.monotonic()
    for url in urls:
        urllib.request.urlopen(url, timeout=5).read()
    time.sleep(max(0, period - (time.monotonic() - started)))
"""


def start_servers(data: str) -> tuple[list[subprocess.Popen[bytes]], dict[str, str], list[str]]:
    ports = free_tcp_ports(6)
    names = ["a", "b", "c"]
    raft = {n: f"127.0.0.1:{p}" for n, p in zip(names, ports[:3], strict=True)}
    urls = [f"http://127.0.0.1:{p}/metrics" for p in ports[3:]]
    procs = []
    for n, url in zip(names, urls, strict=True):
        command = [sys.executable, "-m", "trioraft", "serve", "--name", n, "--listen", raft[n],
                   *[f"--peer={m}={raft[m]}" for m in names if m != n],
                   "--machine", "trioraft.recipes:Counter", "--data-dir", f"{data}/{n}",
                   "--metrics", url.removeprefix("http://").removesuffix("/metrics")]  # fmt: skip
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    return procs, raft, urls


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for proc in procs:
        with open(f"/proc/{proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def measure(
    procs: list[subprocess.Popen[bytes]], raft: dict[str, str], urls: list[str]
) -> list[dict[str, float]]:
    done = 0

    async def writer(client: trioraft.Client) -> None:
        nonlocal done
        while True:
            await client.write(1)
            done += 1

    async def window(arm: str) -> tuple[float, float]:
        period = PERIODS[arm]
        scraper = None
        if period is not None:
            scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(period), *urls])
        await trio.sleep(1.0)
        start, began, cpu = done, trio.current_time(), cpu_seconds(procs)
        await trio.sleep(SECONDS)
        writes = done - start
        rate, per_write = (
            writes / (trio.current_time() - began),
            (cpu_seconds(procs) - cpu) / writes,
        )
        if scraper is not None:
            scraper.kill()
            scraper.wait()
        return rate, per_write

    results = []
    async with trioraft.open_client(list(raft.values())) as client:
        with trio.fail_after(30):
            await client.write(0)
        async with trio.open_nursery() as nursery:
            for _ in range(C):
                nursery.start_soon(writer, client)
            await trio.sleep(3)  # warm up
            for r in range(ROUNDS):
                got: dict[str, float] = {}
                for arm in ["ABC", "BCA", "CAB"][r % 3]:
                    got[arm], got["cpu" + arm] = await window(arm)
                results.append(got)
                print(f"round {r}: " + "  ".join(
                    f"{a} {got[a]:.0f}/s {got['cpu' + a] * 1e6:.0f} us/write" for a in "ABC"
                ), flush=True)  # fmt: skip
            nursery.cancel_scope.cancel()
    return results


def summary(results: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"A_writes_per_s_median": statistics.median(g["A"] for g in results)}
    for arm in "BC":
        rates = [g[arm] / g["A"] for g in results]
        cpus = [g["cpu" + arm] / g["cpuA"] for g in results]
        out[arm] = {
            "writes_per_s_ratio_quartiles": statistics.quantiles(rates, n=4),
            "cpu_per_write_ratio_quartiles": statistics.quantiles(cpus, n=4),
        }
    return out


def main() -> None:
    data = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    procs, raft, urls = start_servers(data)
    try:
        print(json.dumps(summary(trio.run(measure, procs, raft, urls))))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
