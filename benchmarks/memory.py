"""Peak RSS of a small-preset run of 200 steps in a fresh process (target <= 1 GiB)."""

from __future__ import annotations

import argparse
import subprocess
import sys


def bench_memory() -> None:
    import json

    out = subprocess.run(
        [sys.executable, "-m", "bench", "train", "--quiet", "--json", "--set", "model=small",
         "--set", "steps=200", "--set", "eval_interval=100", "--set", "schedule.warmup=10"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    record = json.loads(out.stdout)
    print(f"small preset, 200 steps, batch 12: peak RSS {record['peak_memory_mb']:.0f} MiB (target <= 1024 MiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    bench_memory()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
