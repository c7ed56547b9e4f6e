"""Run a fuzzer for a budget of CPU time (not wall time: the machine is shared), niced,
one process at a time, and say how much CPU it used.

    python fuzz/campaign.py atheris SECONDS_PER_TARGET OUT [TARGET ...]
    python fuzz/campaign.py hypofuzz SECONDS_IN_ALL OUT

atheris: each target in turn, its corpus in OUT/corpus/TARGET (start it with seeds by
copying them there first); FUZZ_ATHERIS_ARGS adds libFuzzer options (a -dict=, say).
hypofuzz: every test of fuzz/test_hypofuzz.py in one worker, its database in
OUT/hypothesis. Findings (failures, the first input of each) go to
OUT/findings/TARGET/; the CPU seconds used to OUT/cpu.txt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
NICE = 15


def _cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run_for(command: list[str], seconds: float, env: dict[str, str], log: Path) -> float:
    """Run ``command`` niced until its processes have used ``seconds`` of CPU (or it
    ends); the CPU seconds it used."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            ["nice", "-n", str(NICE), *command],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        process, used = psutil.Process(child.pid), 0.0
        while child.poll() is None:
            used = max(used, _cpu(process))
            if used >= seconds:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                break
            time.sleep(1)
    return used


def main() -> None:
    fuzzer, seconds, out = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FUZZ_FINDINGS": str(out / "findings")}
    sys.path.insert(0, str(ROOT))
    from fuzz.targets import MAX_LEN, TARGETS

    if fuzzer == "atheris":
        for target in sys.argv[4:] or list(TARGETS):
            corpus = out / "corpus" / target
            corpus.mkdir(parents=True, exist_ok=True)
            command = [PYTHON, "fuzz/atheris_main.py", target, f"-max_len={MAX_LEN}",
                       "-timeout=10", "-rss_limit_mb=2048",
                       *os.environ.get("FUZZ_ATHERIS_ARGS", "").split(), str(corpus)]  # fmt: skip
            started = time.time()
            used = run_for(command, seconds, env, out / f"{target}.log")
            with (out / "cpu.txt").open("a") as f:
                print(f"{target} {used:.0f} s CPU, {time.time() - started:.0f} s wall", file=f)
    else:
        env["FUZZ_HYPOTHESIS_DB"] = str(out / "hypothesis")
        hypothesis = str(Path(PYTHON).parent / "hypothesis")
        command = [hypothesis, "fuzz", "-n", "1", "--no-dashboard", "--",
                   "fuzz/test_hypofuzz.py", "-p", "no:cacheprovider"]  # fmt: skip
        started = time.time()
        used = run_for(command, seconds, env, out / "hypofuzz.log")
        with (out / "cpu.txt").open("a") as f:
            print(f"hypofuzz {used:.0f} s CPU, {time.time() - started:.0f} s wall", file=f)


if __name__ == "__main__":
    main()
