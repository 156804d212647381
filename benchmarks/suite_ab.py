"""`optbench run SUITE` wall time with the code of git revision REV (extracted to a temporary folder) and with
this checkout, alternated, each into a fresh store, same interpreter and packages."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bench_suite_ab(suite: str, old: str, pairs: int) -> None:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        old_tree.mkdir()
        archive = subprocess.run(["git", "-C", str(root), "archive", old], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        sides = {f"old {old}": (old_tree, {"PYTHONPATH": str(old_tree)}), "this checkout": (root, {})}
        times: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(pairs):
            for side, (cwd, extra) in sides.items():  # alternated: drift in machine load hits both alike
                storage = str(Path(tmp) / f"{len(times[side])}-{side[:3]}.journal")
                cmd = [sys.executable, "-m", "bench", "run", suite, "--storage", storage, "--no-report", "--quiet"]
                start = time.perf_counter()
                subprocess.run(cmd, cwd=cwd, env={**os.environ, **extra}, check=True, capture_output=True)
                times[side].append(time.perf_counter() - start)
                print(f"pair {i + 1}, {side}: {times[side][-1]:.1f} s", flush=True)
    medians = {side: statistics.median(t) for side, t in times.items()}
    old_median, new_median = medians.values()
    print(f"{suite}: old {old_median:.1f} s, this checkout {new_median:.1f} s (medians of {pairs}); "
          f"ratio {new_median / old_median:.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="git revision of the old code")
    parser.add_argument("--suite", default="suites/quick.toml")
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args(argv)
    bench_suite_ab(args.suite, args.old, args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
