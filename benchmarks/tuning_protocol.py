"""The adaptive tuning protocol (bench.tuning) against a dense reference grid, on simulated loss curves.

Each draw is a convex loss in log10(learning rate), 1.5 + 0.3 * (log10 lr - log10 optimum)^2, with the
optimum uniform in [1e-4.5, 1e-2.5], measured with normal noise of sd `--noise` (that of a mean over seeds).
The dense reference grid holds 13 rates a quarter decade apart (1e-5 to 1e-2); the protocol starts from 3
rates half a decade apart, at one of three places, and runs what bench.tuning.propose asks for (one step
past an edge best, at most 2 steps; then one midpoint towards the fitted optimum where the predicted gain
beats the noise). Printed: the share of draws whose best lies within one reference step (a quarter decade)
of the dense grid's best, and the rates measured, against the dense grid's 13. Pure simulation: the
trained measurement on a real suite is the executor's (issue 19, deliverable 1).

    python benchmarks/tuning_protocol.py --draws 2000
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from bench.tuning import propose

DENSE = [10 ** (-5 + 0.25 * i) for i in range(13)]


def loss(lr: float, log_opt: float) -> float:
    return 1.5 + 0.3 * (math.log10(lr) - log_opt) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    within, runs = [], []
    for _ in range(args.draws):
        log_opt = rng.uniform(-4.5, -2.5)
        measured: dict[float, float] = {}

        def measure(lr: float, log_opt: float = log_opt, measured: dict[float, float] = measured) -> float:
            key = round(math.log10(lr), 6)
            if key not in measured:  # a rate the dense grid and the protocol share is measured once
                measured[key] = loss(lr, log_opt) + rng.normal(0, args.noise)
            return measured[key]

        dense_best = min(DENSE, key=measure)
        start = rng.choice([-4.5, -4.0, -3.5])
        grid = [10**start, 10 ** (start + 0.5), 10 ** (start + 1.0)]
        original = list(grid)
        while True:
            new, _ = propose(grid, [measure(x) for x in grid], original, min_gain=args.noise)
            if not new:
                break
            grid += new
        best = min(grid, key=measure)
        within.append(abs(math.log10(best) - math.log10(dense_best)) <= 0.25 + 1e-9)
        runs.append(len(grid))
    counts = np.bincount(runs)
    print(f"{args.draws} draws, noise sd {args.noise}, seed {args.seed}")
    print(f"within one reference step of the dense grid's best: {np.mean(within):.1%}")
    print(f"rates measured: mean {np.mean(runs):.2f}, max {max(runs)} (dense grid: {len(DENSE)}); "
          + ", ".join(f"{k}: {c}" for k, c in enumerate(counts) if c))  # fmt: skip


if __name__ == "__main__":
    main()
