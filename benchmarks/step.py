"""Training.step() variants (optimizer kernels, bf16 autocast) in one process, alternated in blocks; median
time per step and median ratio to the first. `--clock cpu` counts process CPU time (with `--threads 1`,
robust to other load on the machine)."""

from __future__ import annotations

import argparse
import statistics
import time

from _common import recipe_config

STEP_VARIANTS = {
    "fused": {"optimizer.impl": "fused"},
    "foreach": {"optimizer.impl": "foreach"},
    "forloop": {"optimizer.impl": "forloop"},
    "bf16": {"autocast": "bf16"},
    "bf16+foreach": {"autocast": "bf16", "optimizer.impl": "foreach"},
}


def bench_step(variants: list[str], rounds: int, block: int, clock: str, threads: int | None) -> None:
    import torch

    from bench.env import set_threads
    from bench.train import Training

    set_threads(threads)
    unknown = [v for v in variants if v not in STEP_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; allowed: {', '.join(STEP_VARIANTS)}")
    now = time.process_time if clock == "cpu" else time.perf_counter
    runs = {v: Training(recipe_config(**STEP_VARIANTS[v])) for v in variants}
    for run in runs.values():
        for _ in range(block):
            run.step()
    times: dict[str, list[float]] = {v: [] for v in runs}
    for _ in range(rounds):
        for v, run in runs.items():  # interleaved: load on the machine hits every variant alike
            start = now()
            for _ in range(block):
                run.step()
            times[v].append((now() - start) / block)
    first = variants[0]
    print(f"small preset, nanoGPT recipe, {torch.get_num_threads()} threads, {rounds} alternated blocks of "
          f"{block} steps, {clock} clock")  # fmt: skip
    for v in variants:
        ratios = [t / b for t, b in zip(times[v], times[first], strict=True)]
        print(f"{v:<14} {statistics.median(times[v]) * 1e3:7.2f} ms/step  vs {first}: median "
              f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="fused,foreach,forloop,bf16")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    bench_step(args.variants.split(","), args.rounds, args.block, args.clock, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
