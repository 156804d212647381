"""torch.compile of the model: first-step (compile) seconds in a fresh process with a cold and then a warm
on-disk cache, and the per-step time against eager, alternated."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPILE_PROBE = """
import statistics, sys, time, torch
sys.path.insert(0, sys.argv[2])
from _common import recipe_config
from bench.train import Training
rounds = int(sys.argv[1])
eager, compiled = Training(recipe_config()), Training(recipe_config())
compiled.model = torch.compile(compiled.model)
start = time.perf_counter(); compiled.step(); first = time.perf_counter() - start
start = time.perf_counter(); compiled.evaluate(); first_eval = time.perf_counter() - start
for _ in range(10): eager.step(); compiled.step()
te, tc = [], []
for _ in range(rounds):
    for times, run in ((te, eager), (tc, compiled)):
        start = time.perf_counter()
        for _ in range(10): run.step()
        times.append((time.perf_counter() - start) / 10)
ratio = statistics.median(c / e for c, e in zip(tc, te))
print(f"first step {first:.1f} s, first evaluation {first_eval:.1f} s; eager {statistics.median(te) * 1e3:.2f} "
      f"ms/step, compiled {statistics.median(tc) * 1e3:.2f}: ratio {ratio:.3f}")
"""


def bench_compile(rounds: int) -> None:
    """torch.compile of the model, in fresh processes sharing one on-disk cache: cold, then warm."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for label in ("cold cache", "warm cache"):
            start = time.perf_counter()
            probe = [sys.executable, "-c", COMPILE_PROBE, str(rounds), str(Path(__file__).parent)]
            out = subprocess.run(probe, env=env, check=True, capture_output=True, text=True).stdout.strip()
            print(f"{label}: {out}; process {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    bench_compile(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
