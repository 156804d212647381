"""Wall time of `optbench run` on a suite with each workers x threads split of this machine's cores, each into
a fresh store; prints seconds and the speed-up over one worker."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import time_command


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="suites/quick.toml")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    bench_workers(args.suite, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
