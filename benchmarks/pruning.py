"""The same trials searched with no pruner and with Hyperband: steps used and best found."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

PRUNING_SUITE = """[suite]
name = "pruning_bench"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", order = 2, alphabet = 8 }
steps = 810
eval_interval = 30
eval_batches = 10
schedule = { name = "warmup_cosine", warmup = 30 }
[search]
optimizer = ["adamw", "lion", "nesterov"]
schedule = ["warmup_cosine", "wsd", "constant"]
"schedule.warmup" = { low = 0, high = 100, type = "int" }
"""


def bench_pruning(trials: int, reduction_factors: list[int], seed: int = 0) -> None:
    """The same trials (the same sampled settings, in the same order: a random sampler seeded by the trial's
    number draws them whatever earlier trials scored) searched without pruning and with Hyperband at each
    reduction factor, by `optbench search`'s own code: training steps used and the best value found (target:
    <= 40% of the steps, best within 0.02)."""
    import optuna

    from bench.search import SearchPlan, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        storage = str(Path(tmp) / "p.journal")

        def steps_and_best(pruner: str, reduction_factor: int = 3) -> tuple[int, float]:
            path = Path(tmp) / f"pruning_{pruner}_{reduction_factor}.toml"
            path.write_text(PRUNING_SUITE.replace("pruning_bench", path.stem))
            plan = SearchPlan(str(path), {}, storage, trials, "random", pruner, seed=seed,
                              reduction_factor=reduction_factor)  # fmt: skip
            ((_, study),) = run_search(plan)
            return sum(t.user_attrs.get("steps_trained", 0) for t in study.trials), study.best_value

        print(f"{trials} identical trials (sampled with seed {seed}), tiny model, synthetic order-2 corpus, "
              f"up to 810 steps each")  # fmt: skip
        s0, b0 = steps_and_best("none")
        print(f"no pruning:                     {s0} steps, best {b0:.4f}")
        for factor in reduction_factors:
            s1, b1 = steps_and_best("hyperband", factor)
            print(f"hyperband, reduction factor {factor}: {s1} steps ({s1 / s0:.0%}; target <= 40%), "
                  f"best {b1:.4f} ({b1 - b0:+.4f}; target within 0.02)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--reduction-factor", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sampler drawing the trials")
    args = parser.parse_args(argv)
    bench_pruning(args.trials, args.reduction_factor, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
