"""The training step's achieved GFLOP/s against the float32 (and bfloat16) matmul rate of its own shapes on
this machine (bench.roofline)."""

from __future__ import annotations

import argparse

from _common import recipe_config


def bench_roofline(preset: str, autocast: str) -> None:
    import torch

    from bench import roofline
    from bench.env import cpu_model

    cfg = recipe_config(preset, autocast=autocast)
    r = roofline.roofline(cfg)
    shapes = roofline.matmul_shapes(cfg, 65)
    _, bf16_rate = roofline.matmul_rate(shapes, torch.bfloat16)
    print(f"{preset} preset, batch {cfg.batch_size} x {cfg.model['block_size']} tokens, autocast {autocast}, "
          f"{torch.get_num_threads()} threads, {cpu_model()}, torch {torch.__version__}")  # fmt: skip
    print(f"training step:  {r.step_seconds * 1e3:6.1f} ms (median of 5 blocks of 20), {r.step_flops / 1e9:.2f} GFLOP"
          f" -> {r.achieved / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"float32 matmuls of its shapes ({sum(m.count for m in shapes)} per step, each timed alone): "
          f"{r.matmul_seconds * 1e3:.1f} ms -> {r.matmul_flops_per_second / 1e9:.0f} GFLOP/s; "
          f"bfloat16: {bf16_rate / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"achieved / float32 matmul rate: {r.fraction:.0%}; the step's FLOPs at that rate: "
          f"{r.floor_seconds * 1e3:.1f} ms; {1e3 * (r.step_seconds - r.floor_seconds):.1f} ms above it")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--autocast", default="none", choices=("none", "bf16"))
    args = parser.parse_args(argv)
    bench_roofline(args.preset, args.autocast)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
