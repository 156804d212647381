"""torch.profiler's table of the operators that take train()'s time on the nanoGPT recipe."""

from __future__ import annotations

import argparse

from _common import small_config


def bench_profile(steps: int) -> None:
    """torch.profiler over train() on the nanoGPT recipe: where a step's time goes, by operator."""
    from torch.profiler import ProfilerActivity, profile

    from bench.techniques.corpora import load_corpus
    from bench.train import train

    cfg = small_config(steps, clip={"name": "norm", "max_norm": 1.0}, schedule={"name": "warmup_cosine", "warmup": 5})
    load_corpus(cfg.data)
    train(small_config(10))  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(cfg)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    bench_profile(args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
