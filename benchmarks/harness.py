"""Steps per second of train() on the small preset against a bare loop of the same model, optimizer and
batches with no logging and no evaluation; alternated, median ratio (target >= 0.97)."""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import small_config


def bare_loop_seconds(cfg) -> float:
    """The same model, optimizer and batches as train(cfg), with nothing else: the harness-free floor."""
    from torch.nn import functional as F

    from bench.data import BatchStream
    from bench.techniques.class_path import optimizer_entry
    from bench.techniques.corpora import load_corpus
    from bench.train import build_model

    corpus = load_corpus(cfg.data)
    model = build_model(cfg, corpus, "cpu")
    (opt,) = optimizer_entry(cfg.optimizer).build(model, cfg.optimizer.params, "cpu")
    batches = BatchStream(corpus.train, cfg.batch_size, cfg.model["block_size"], seed=cfg.batch_seed)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg.total_steps):
        x, y = batches.next()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def bench_harness(steps: int, repeats: int) -> None:
    from bench.techniques.corpora import load_corpus
    from bench.train import train

    cfg = small_config(steps)
    load_corpus(cfg.data)  # built once, outside both timings
    ratios, bare_times, harness_times = [], [], []
    bare_loop_seconds(small_config(20))  # warm-up of allocator and kernels
    for _ in range(repeats):
        bare = bare_loop_seconds(cfg)
        harness = train(cfg).train_time
        bare_times.append(bare)
        harness_times.append(harness)
        ratios.append(bare / harness)
    print(f"small preset, {steps} steps, AdamW, {repeats} alternated pairs, {os.cpu_count()} cores")
    for name, times in (("bare loop", bare_times), ("train()", harness_times)):
        median = statistics.median(times)
        print(f"{name:<11} median {median:.2f} s  ({steps / median:.1f} steps/s)")
    print(f"harness ratio (bare / train(), per pair) median {statistics.median(ratios):.3f}  "
          f"min {min(ratios):.3f}  max {max(ratios):.3f}  (target >= 0.97)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    bench_harness(args.steps, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
