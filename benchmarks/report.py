"""Seconds to render the HTML report of a fabricated store of 500 runs (target < 30 s)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fabricate import fabricate_runs  # noqa: E402 -- the one result fabricator, in tests/


def bench_report(runs: int) -> None:
    """Wall time of `build_report` on a fabricated store of about `runs` runs (target < 30 s for 500)."""
    from bench.report import build_report
    from bench.suite import Suite

    axes = 'optimizer = ["adamw", "lion", "sgd", "adam", "nadam"]\n"optimizer.lr" = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]\n'
    axes += 'schedule = ["constant", "cosine", "wsd", "linear", "warmup_cosine"]\n'
    seeds = max(1, runs // 125)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_report.toml"
        path.write_text(f'[suite]\nname = "bench_report"\nseeds = {list(range(seeds))}\ntarget = 1.6\n'
                        f'[base]\nmodel = "tiny"\nsteps = 500\neval_interval = 50\nschedule = {{ name = "constant" }}\n'
                        f"[axes]\n{axes}")  # fmt: skip
        storage = str(Path(tmp) / "r.journal")
        suite = Suite.load(path)
        n = fabricate_runs(suite, storage, status=lambda i: "diverged" if i % 33 == 5 else "complete")
        start = time.perf_counter()
        out = build_report(suite, storage, Path(tmp) / "r.html", sample=False)
        seconds = time.perf_counter() - start
        print(f"report of {n} runs: {seconds:.1f} s, {out.stat().st_size / 1e6:.1f} MB (target < 30 s for 500 runs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args(argv)
    bench_report(args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
