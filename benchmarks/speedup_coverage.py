"""How often the speedup's 95% interval covers the true speedup, by seed count and by what the interval rests on.

Every draw is a fabricated grid (tests/fabricate.py, power_law_truth): a baseline and three arms with known
speedups (0.8, 1.25 and 1.6: the arm reaches any loss with that many times fewer tokens), each trained at
three budgets (1, 2 and 4 times d0) and `--seeds` seeds. The baseline's mean final loss is
E + B (D / d0)^-beta (E = 1.5, B = 0.5); every run adds its own noise N(0, sd) and a shift N(0, 0.02) shared
by every run of its seed (a seed's data order). To make many independent replicates cheaply, one fabricated
suite holds `--sizes` model sizes, each an independent replicate of the experiment (its own fit, its own noise);
the speedups are drawn by bench.conclusions.speedup_findings, as every report draws them.

Coverage is counted over every (replicate, arm, budget), split by where the baseline's fit was read: within
its budgets (interpolated) or past them (extrapolated), and by whether the conclusions mark the interval
trusted.

    python benchmarks/speedup_coverage.py --replicates 1000 [--seed-counts-only]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fabricate import budget_of, fabricate_frame, power_law_truth  # noqa: E402

from bench import scaling  # noqa: E402
from bench.conclusions import speedup_findings  # noqa: E402
from bench.suite import Suite  # noqa: E402

SPEEDUPS = {"adamw": 1.0, "lion": 0.8, "muon": 1.25, "nadam": 1.6}
SEED_SD = 0.02
STEP_TOKENS = 64  # batch 1 x context 64


def suite(seeds: int, sizes: int, budgets: tuple[float, ...]) -> Suite:
    """`sizes` model widths (each an independent replicate), each at every budget (multiples of 64 steps)."""
    scale = [{"model.n_embd": 16 + 2 * i, "tokens": int(b * 64) * STEP_TOKENS} for i in range(sizes) for b in budgets]
    return Suite.parse({
        "suite": {"name": "coverage", "seeds": list(range(seeds)), "baseline": "optimizer=adamw"},
        "base": {"model": "tiny", "batch_size": 1, "schedule": "constant", "eval_interval": 1000},
        "axes": {"optimizer": list(SPEEDUPS), "scale": scale},
    })  # fmt: skip


def speedup_of(s: Suite, frame) -> dict:
    runs = {r.hash: r for r in s.runs()}
    return speedup_findings(s, frame, runs, s.baseline_arms(), [], "grid")


def coverage(seeds: int, replicates: int, sd: float, beta: float, budgets: tuple[float, ...] = (1, 2, 4),
             sizes: int = 40, seed: int = 0) -> dict[str, list[bool]]:  # fmt: skip
    s = suite(seeds, sizes, budgets)
    d0 = budget_of(s.runs()[0].config)
    truth = power_law_truth(lambda r: SPEEDUPS[r.values["optimizer"]], sd, beta=beta, d0=d0)
    rng = np.random.default_rng(seed)
    out: dict[str, list[bool]] = {}
    for _ in range(max(1, replicates // sizes)):
        found = speedup_of(s, fabricate_frame(s, truth, rng, seed_sd=SEED_SD))
        for e in found["entries"]:
            if e["ci"] is None:
                continue
            true = SPEEDUPS[e["method"].split("=")[1]]
            low, high = e["ci"][0], e["ci"][1] if e["ci"][1] is not None else np.inf
            hit = low <= true <= high
            where = "extrapolated" if e["extrapolated"] else "interpolated"
            trust = "trusted" if e["trusted"] else "not trusted"
            for key in ("all", where, trust, f"{where}, {trust}"):
                out.setdefault(key, []).append(hit)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=scaling.DRAWS)
    parser.add_argument(
        "--seed-counts-only",
        action="store_true",
        help="only the first three rows (2, 3 and 5 seeds at sd 0.01, beta 0.35, budgets 1, 2, 4)",
    )
    args = parser.parse_args()
    scaling.DRAWS = args.draws
    scenarios = [(2, 0.01, 0.35, (1, 2, 4)), (3, 0.01, 0.35, (1, 2, 4)), (5, 0.01, 0.35, (1, 2, 4)),
                 (2, 0.005, 0.35, (1, 2, 4)), (2, 0.02, 0.35, (1, 2, 4)), (2, 0.01, 0.15, (1, 2, 4)),
                 (2, 0.01, 0.6, (1, 2, 4)), (2, 0.01, 0.35, (1, 2, 4, 8)), (2, 0.01, 0.35, (1, 4))]  # fmt: skip
    if args.seed_counts_only:
        scenarios = scenarios[:3]
    print("| seeds | run sd | beta | budgets (x d0) | all | interpolated | extrapolated | trusted | not trusted |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seeds, sd, beta, budgets in scenarios:
        start = time.perf_counter()
        got = coverage(seeds, args.replicates, sd, beta, budgets)

        def cell(key: str, got: dict[str, list[bool]] = got) -> str:
            hits = got.get(key, [])
            return f"{np.mean(hits):.1%} ({len(hits)})" if hits else "-"

        print(f"| {seeds} | {sd} | {beta} | {', '.join(map(str, budgets))} | {cell('all')} | {cell('interpolated')} | "
              f"{cell('extrapolated')} | {cell('trusted')} | {cell('not trusted')} |", flush=True)  # fmt: skip
        print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
