"""Benchmarks of optbench itself, printed as ratios from side-by-side runs (shared machines are noisy).

    python -m bench.perf workers [--suite suites/quick.toml] [--repeats 1]

`workers`: wall time of `optbench run` on a suite with each worker/thread split of this machine's
cores, each into a fresh store; prints seconds and the speed-up over one worker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_command(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_workers(suite: str, repeats: int) -> None:
    cores = os.cpu_count() or 1
    splits = [(1, cores)] + [(w, max(1, cores // w)) for w in range(2, cores + 1) if cores % w == 0]
    if (1, 1) not in splits:
        splits.insert(1, (1, 1))
    times: dict[tuple[int, int], list[float]] = {s: [] for s in splits}
    for _ in range(repeats):
        for workers, threads in splits:  # interleaved, so drift in machine load hits every split alike
            with tempfile.TemporaryDirectory() as tmp:
                storage = str(Path(tmp) / "bench.journal")
                cmd = [sys.executable, "-m", "bench", "run", suite, "--storage", storage, "--quiet",
                       "--workers", str(workers), "--threads", str(threads)]  # fmt: skip
                times[(workers, threads)].append(time_command(cmd))
    base = statistics.median(times[splits[0]])
    print(f"suite {suite}, {cores} cores, median of {repeats} run(s) each")
    print(f"{'workers x threads':>18} {'wall s':>8} {'speed-up vs 1 worker':>22}")
    for split in splits:
        t = statistics.median(times[split])
        print(f"{split[0]:>8} x {split[1]:<7} {t:>8.1f} {base / t:>22.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("workers", help="suite wall time per worker/thread split")
    p.add_argument("--suite", default="suites/quick.toml")
    p.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    if args.which == "workers":
        bench_workers(args.suite, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
