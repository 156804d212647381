"""Seconds until `optbench --help` and `optbench list` answer (target < 1 s)."""

from __future__ import annotations

import argparse
import statistics
import sys

from _common import time_command


def bench_startup(repeats: int) -> None:
    for args in (["--help"], ["list"]):
        times = [time_command([sys.executable, "-m", "bench", *args]) for _ in range(repeats)]
        median = statistics.median(times)
        print(f"optbench {' '.join(args):<7} median {median:.3f} s  max {max(times):.3f} s  (target < 1 s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    bench_startup(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
