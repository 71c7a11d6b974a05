"""How the benchmarks measure: the machine, best-of timings, effective cores, peak memory, child processes.

Every benchmark measures the project and its reference in the same run, interleaved, and
keeps the best of several repeats: on a shared machine a single timing varies by tens of
percent with the neighbours' load, and the best run is the one least disturbed by them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


def machine() -> str:
    """``nproc`` cores, CPU model and the main library versions, for the figures' header."""
    model = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            model = found.group(1).strip()
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores ({model}), Python {platform.python_version()}"


def best_of(work, repeat: int = 1):
    """Run ``work()`` ``repeat`` times; return ``(result, best wall seconds, CPU seconds of that run)``."""
    best = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        run = (result, time.perf_counter() - wall, time.process_time() - cpu)
        best = run if best is None or run[1] < best[1] else best
    return best


def interleaved(runs: dict, repeat: int) -> dict:
    """Time each ``name -> work`` once per round, ``repeat`` rounds; best wall seconds per name.

    Alternating the contenders spreads a neighbour's burst of load over all of them
    instead of penalising whichever happened to run during it.
    """
    best: dict[str, float] = {}
    for round_ in range(repeat):
        for name, work in runs.items():
            start = time.perf_counter()
            work()
            wall = time.perf_counter() - start
            print(f"  round {round_ + 1}/{repeat} {name}: {wall:.2f} s", flush=True)
            best[name] = min(best.get(name, wall), wall)
    return best


def effective_cores(threads: int) -> float:
    """How many cores GIL-free work really gets now: sha256 of 32 MiB on 1 thread vs ``threads``."""
    data = os.urandom(32 << 20)

    def run(n):
        workers = [threading.Thread(target=lambda: hashlib.sha256(data).digest()) for _ in range(n)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - start

    return threads * min(run(1) for _ in range(3)) / min(run(threads) for _ in range(3))


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_python(args: list[str], *, env: dict | None = None, cwd: Path | None = None) -> tuple[float, str]:
    """Run ``python args...`` to completion; return (wall seconds, stdout). Raises on failure.

    A benchmark re-runs itself as ``["-m", __spec__.name, ...]``: the child inherits the
    working directory and environment that let the parent import ``benchmarks``.
    """
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout
