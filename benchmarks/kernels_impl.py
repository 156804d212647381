"""train() steps per second of the nanoGPT recipe with the optimizer's fused, foreach and for-loop kernels,
and with 1 or all threads."""

from __future__ import annotations

import argparse
import os
import statistics

from _common import small_config


def bench_kernels_impl(steps: int, repeats: int) -> None:
    from bench.techniques.corpora import load_corpus
    from bench.train import train

    cores = os.cpu_count() or 1
    variants = {
        f"fused, {cores} threads": {"optimizer.impl": "fused"},
        f"foreach, {cores} threads": {"optimizer.impl": "foreach"},
        f"forloop, {cores} threads": {"optimizer.impl": "forloop"},
        "fused, 1 thread": {"optimizer.impl": "fused", "threads": 1},
    }
    recipe = {"clip": {"name": "norm", "max_norm": 1.0}, "schedule": {"name": "warmup_cosine", "warmup": 10}}
    configs = {name: small_config(steps, **recipe, **v) for name, v in variants.items()}
    load_corpus(next(iter(configs.values())).data)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, cfg in configs.items():  # interleaved
            times[name].append(train(cfg).train_time)
    first = next(iter(configs))
    base = statistics.median(times[first])
    print(f"small preset, AdamW, clip 1.0, {steps} steps, median of {repeats}")
    for name in configs:
        t = statistics.median(times[name])
        print(f"{name:<22} {steps / t:7.1f} steps/s   time vs {first}: {t / base:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    bench_kernels_impl(args.steps, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
