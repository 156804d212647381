"""How often a tuned suite's old headline names a winner that fresh seeds do not support.

The old protocol chose each arm's learning rate by its mean over seeds 0-2 and judged the arm on the same
seeds. Here every draw is a fabricated tuned suite (tests/fabricate.py: known means, independent per-run
noise of sd 0.01) of 4 optimizers x 3 learning rates, run on 3 tuning seeds and 3 confirming seeds; the
conclusions are drawn twice from it: on the tuning seeds alone (the old headline), and with each chosen
setting judged on the confirming seeds (bench.conclusions, confirm_seeds). The optimizers' best reachable
means lie `gap` sd apart (0: all equal); each optimizer's loss rises by CURVATURE per squared decade of
learning rate away from its optimum, which lies at the grid's middle rate.

Per scenario, over the draws (a headline "claims" a winner when its best arm alone holds rank 1: its
interval lies wholly below every other arm's):
  not truly best   the headline's best arm is not the truly best (at the settings chosen)
  contradicted     the old best arm does not hold rank 1 on the confirming seeds (another arm's interval
                   lies wholly below its own)
  other best       the confirmation's best arm (by mean) is not the old headline's
  claims           headlines claiming a winner; unsupported: old claims the confirmation does not repeat
  false claims     headlines claiming a winner that is not the truly best arm
  bias             mean over every arm of (stated mean - true mean of its chosen setting), in sd

    python benchmarks/confirmation.py --draws 2000
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fabricate import fabricate_frame  # noqa: E402

from bench.conclusions import conclude  # noqa: E402
from bench.suite import Suite  # noqa: E402

OPTIMIZERS = ["adamw", "lion", "nadam", "sgd"]
LRS = [1e-3, 3e-3, 1e-2]
SD = 0.01  # per run
CURVATURE = 0.01  # loss above the optimizer's best per squared decade of learning rate from its optimum
GAPS = (0.0, 1.0, 2.0, 4.0)  # sd between consecutive optimizers' best means


def suite() -> Suite:
    return Suite.parse({
        "suite": {"name": "confirmation", "seeds": list(range(6)), "tune": ["optimizer.lr"]},
        "base": {"model": "tiny", "steps": 20, "schedule": "constant"},
        "axes": {"optimizer": OPTIMIZERS, "optimizer.lr": LRS},
    })  # fmt: skip


def alone_at_rank_one(c: dict) -> str | None:
    """The best arm when it alone holds rank 1, else None."""
    ones = [a["arm"] for a in c["arms"] if a["rank"] == 1 and a["ci"] is not None]
    return ones[0] if len(ones) == 1 and c["arms"][0]["arm"] == ones[0] else None


def run(draws: int, seed: int) -> None:
    s = suite()
    by_label = {(s.untuned_label(r), r.values["optimizer.lr"]): r for r in s.runs()}
    print(
        f"{'gap (sd)':>8} | {'not truly best':>14} | {'contra-':>7} | {'other':>6} | {'claims':>13} | "
        f"{'unsup-':>6} | {'false claims':>13} | {'bias (sd)':>13}"
    )
    print(
        f"{'':>8} | {'old':>6} {'conf.':>7} | {'dicted':>7} | {'best':>6} | {'old':>6} {'conf.':>6} | "
        f"{'ported':>6} | {'old':>6} {'conf.':>6} | {'old':>6} {'conf.':>6}"
    )
    for gap in GAPS:
        rng = np.random.default_rng(seed)

        def truth(run, gap=gap):
            i = OPTIMIZERS.index(run.values["optimizer"])
            return 1.5 + gap * SD * i + CURVATURE * (math.log10(run.values["optimizer.lr"]) + 2.5) ** 2, SD

        n = {k: 0 for k in ("old_wrong", "new_wrong", "contradicted", "other_best", "old_claims", "new_claims",
                            "unsupported", "old_false", "new_false")}  # fmt: skip
        bias: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(draws):
            frame = fabricate_frame(s, truth, rng)
            old = conclude(s, frame[frame["seed"] < 3])
            new = conclude(s, frame, confirm_seeds=[3, 4, 5])
            named = old["arms"][0]["arm"]
            for key, c in (("old", old), ("new", new)):
                truths = {a["arm"]: truth(by_label[(a["arm"], a["tuned_values"]["optimizer.lr"])])[0]
                          for a in c["arms"]}  # fmt: skip
                best_true = min(truths.values())
                bias[key] += [(a["mean"] - truths[a["arm"]]) / SD for a in c["arms"]]
                n[f"{key}_wrong"] += truths[c["arms"][0]["arm"]] > best_true + 1e-12
                winner = alone_at_rank_one(c)
                if winner is not None:
                    n[f"{key}_claims"] += 1
                    n[f"{key}_false"] += truths[winner] > best_true + 1e-12
            if alone_at_rank_one(old) is not None and alone_at_rank_one(new) != named:
                n["unsupported"] += 1
            n["contradicted"] += next(a["rank"] for a in new["arms"] if a["arm"] == named) > 1
            n["other_best"] += new["arms"][0]["arm"] != named

        def pct(k: str, of: int = draws, n: dict[str, int] = n) -> str:
            return f"{n[k] / of:6.1%}" if of else f"{'-':>6}"

        print(
            f"{gap:>8.0f} | {pct('old_wrong')} {pct('new_wrong'):>7} | {pct('contradicted'):>7} | "
            f"{pct('other_best')} | {pct('old_claims')} {pct('new_claims')} | "
            f"{pct('unsupported', n['old_claims'])} | {pct('old_false')} {pct('new_false')} | "
            f"{np.mean(bias['old']):+6.2f} {np.mean(bias['new']):+6.2f}"
        )
    print(f"({draws} draws per row, seed {seed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.draws, args.seed)


if __name__ == "__main__":
    main()
