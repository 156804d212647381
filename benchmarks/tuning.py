"""The tuning protocol against a dense grid: for each optimizer, the learning rate the adaptive protocol
chooses (a coarse grid a decade apart, extended past an edge and refined around its best) against the best
of a dense reference grid (a quarter decade apart over four decades), trained on the same seeds; the target
is a choice within one reference step of the dense best, using at most half of the dense grid's runs."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

BASE = """[base]
model = "tiny"
data = {{ name = "synthetic", alphabet = 16, order = 2, length = 200000 }}
steps = {steps}
eval_interval = {steps}
eval_batches = 4
batch_size = 8
schedule = {{ name = "warmup_cosine", warmup = 10 }}
"""


def suite_text(name: str, lrs: list[float], optimizers: list[str], seeds: int, tune: bool, steps: int) -> str:
    head = f'[suite]\nname = "{name}"\nseeds = {list(range(seeds))}\n'
    if tune:
        head += 'tune = ["optimizer.lr"]\ntune_extend = 3\ntune_refine = 1\nconfirm_seeds = 0\n'
    axes = f'[axes]\noptimizer = {optimizers!r}\n"optimizer.lr" = {lrs!r}\n'.replace("'", '"')
    return head + BASE.format(steps=steps) + axes


def best_per_optimizer(frame) -> dict[str, tuple[float, float]]:
    """optimizer -> (learning rate with the lowest mean over seeds, that mean)."""
    frame = frame[frame["status"].isin(("complete", "diverged", "stopped_early"))]
    means = frame.groupby([frame["config.optimizer.name"], frame["config.optimizer.lr"]])["value"].mean()
    out = {}
    for (opt, lr), value in means.items():
        if opt not in out or value < out[opt][1]:
            out[opt] = (lr, value)
    return out


def bench_tuning(optimizers: list[str], seeds: int, steps: int, workers: int) -> None:
    from bench.results import suite_results
    from bench.runner import Plan, run_suite
    from bench.suite import Suite

    dense = [float(f"{10 ** (-4 + k / 4):.3g}") for k in range(17)]  # 1e-4 to 1, a quarter decade apart
    coarse = [1e-4, 1e-3, 1e-2]
    with tempfile.TemporaryDirectory() as tmp:
        found = {}
        for name, lrs, tune in (("dense", dense, False), ("adaptive", coarse, True)):
            path = Path(tmp) / f"{name}.toml"
            path.write_text(suite_text(name, lrs, optimizers, seeds, tune, steps))
            store = str(Path(tmp) / f"{name}.journal")  # stores apart: no run is copied from the other
            start = time.perf_counter()
            run_suite(Plan(str(path), {}, store, workers, 1), show_progress=False)
            frame = suite_results(Suite.load(path), store, with_curves=False)
            found[name] = (frame, time.perf_counter() - start)
    (dense_frame, dense_s), (adaptive_frame, adaptive_s) = found["dense"], found["adaptive"]
    print(f"tiny model, synthetic order-2 corpus of 16 tokens, {steps} steps, {seeds} seed(s), {os.cpu_count()} "
          f"cores, {workers} worker(s); dense: {len(dense)} rates a quarter decade apart; adaptive: {coarse}, "
          f"tune_extend 3, tune_refine 1")  # fmt: skip
    print(f"runs: dense {len(dense_frame)} in {dense_s:.0f} s, adaptive {len(adaptive_frame)} in {adaptive_s:.0f} s "
          f"({len(adaptive_frame) / len(dense_frame):.0%} of the dense grid's; target <= 50%)")  # fmt: skip
    dense_best, adaptive_best = best_per_optimizer(dense_frame), best_per_optimizer(adaptive_frame)
    for opt in optimizers:
        (d_lr, d_loss), (a_lr, a_loss) = dense_best[opt], adaptive_best[opt]
        steps_apart = abs(math.log10(a_lr) - math.log10(d_lr)) * 4
        runs = int((adaptive_frame["config.optimizer.name"] == opt).sum())
        print(f"{opt:<9} dense best lr {d_lr:.3g} ({d_loss:.4f}); adaptive chose {a_lr:.3g} ({a_loss:.4f}) with "
              f"{runs} runs: {steps_apart:.2f} reference steps apart (target <= 1)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", default="adamw,lion,momentum")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPTBENCH_CALIBRATION", "off")
    bench_tuning(args.optimizers.split(","), args.seeds, args.steps, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
