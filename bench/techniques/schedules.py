"""Learning-rate schedules as multipliers of the peak learning rate, run by torch's LambdaLR.

Each entry maps (t, n) -> factor, where t counts the steps after warmup and n is the length of that
phase. Any schedule composes with a linear warmup of `warmup` steps, nanoGPT's (step+1)/(warmup+1).
The closed forms are tested against torch.optim.lr_scheduler's own classes where torch has one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.registry import Choice, Param, Registry

SCHEDULES = Registry("schedule", "how the learning rate moves over the run")

Multiplier = Callable[[int], float]


def _warmup(default: int = 0) -> Param:
    # searched over the first quarter of the run, whatever its length (a fixed 0-500 failed any run <= 500 steps)
    return Param(int, default, "linear warmup steps", low=0, search=("steps", 0.0, 0.25))


MIN_RATIO = Param(float, 0.0, "final learning rate / peak", low=0.0, high=1.0)


SCHEDULES.register(
    "constant",
    "the peak learning rate throughout",
    warmup=_warmup(),
    promise=lambda p, n: {0: 1.0, n // 2: 1.0, n: 1.0},
)(lambda p, t, n: 1.0)


@SCHEDULES.register(
    "step",
    "multiply by gamma every `every` (fraction of the run) (StepLR)",
    warmup=_warmup(),
    every=Param(float, 1 / 3, "interval as a fraction of the run", positive=True, high=1.0),
    gamma=Param(float, 0.1, "factor per interval", positive=True, high=1.0),
    promise=lambda p, n: {
        0: 1.0,
        step_size(p, n) - 1: 1.0,
        step_size(p, n): p["gamma"],
        2 * step_size(p, n): p["gamma"] ** 2,
    },
)
def _step(p: dict, t: int, n: int) -> float:
    return p["gamma"] ** (t // step_size(p, n))


def step_size(p: dict, n: int) -> int:
    return max(1, round(p["every"] * n))


@SCHEDULES.register(
    "exponential",
    "geometric decay to final_ratio at the end (ExponentialLR)",
    warmup=_warmup(),
    final_ratio=Param(float, 0.01, "final learning rate / peak", positive=True, high=1.0),
    promise=lambda p, n: {0: 1.0, n: p["final_ratio"], n / 2: math.sqrt(p["final_ratio"])},
)
def _exponential(p: dict, t: int, n: int) -> float:
    return p["final_ratio"] ** (t / n)


@SCHEDULES.register(
    "linear",
    "linear decay to min_lr_ratio (LinearLR)",
    warmup=_warmup(),
    min_lr_ratio=MIN_RATIO,
    promise=lambda p, n: {0: 1.0, n / 2: (1 + p["min_lr_ratio"]) / 2, n: p["min_lr_ratio"]},
)
def _linear(p: dict, t: int, n: int) -> float:
    return 1.0 - (1.0 - p["min_lr_ratio"]) * min(t, n) / n


def _cosine_points(p: dict, n: int) -> dict[float, float]:
    """A cosine's defining values: the peak, the midpoint between peak and floor, the floor."""
    return {0: 1.0, n / 2: (1 + p["min_lr_ratio"]) / 2, n: p["min_lr_ratio"]}


def _cosine_factor(min_ratio: float, t: int, n: int) -> float:
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(t, n) / n))


SCHEDULES.register(
    "cosine",
    "cosine decay to min_lr_ratio (CosineAnnealingLR)",
    warmup=_warmup(),
    min_lr_ratio=MIN_RATIO,
    promise=lambda p, n: _cosine_points(p, n),
)(lambda p, t, n: _cosine_factor(p["min_lr_ratio"], t, n))

SCHEDULES.register(
    "warmup_cosine",
    "nanoGPT's: linear warmup, cosine to min_lr_ratio at the last step",
    warmup=_warmup(100),
    min_lr_ratio=Param(float, 0.1, "final learning rate / peak", low=0.0, high=1.0),
    promise=lambda p, n: _cosine_points(p, n),
)(lambda p, t, n: _cosine_factor(p["min_lr_ratio"], t, n))


@SCHEDULES.register(
    "wsd",
    "warmup-stable-decay: constant, then linear decay over the last `decay` fraction",
    warmup=_warmup(),
    decay=Param(float, 0.2, "decay phase as a fraction of the run", positive=True, high=1.0),
    min_lr_ratio=MIN_RATIO,
    promise=lambda p, n: {0: 1.0, n - round(p["decay"] * n): 1.0, n: p["min_lr_ratio"]},
)
def _wsd(p: dict, t: int, n: int) -> float:
    d = max(1, round(p["decay"] * n))
    start = n - d
    if t < start:
        return 1.0
    return 1.0 - (1.0 - p["min_lr_ratio"]) * min(t - start, d) / d


@SCHEDULES.register(
    "onecycle",
    "Smith's one-cycle: cosine up from peak/div_factor, then down (OneCycleLR, no momentum cycling)",
    warmup=_warmup(),
    pct_start=Param(float, 0.3, "share of the run spent rising", positive=True, high=1.0),
    div_factor=Param(float, 25.0, "peak / initial", low=1.0),
    final_div_factor=Param(float, 1e4, "initial / final", low=1.0),
    promise=lambda p, n: {  # from peak/div_factor up to the peak at pct_start*n - 1, down to initial/final_div_factor
        0: 1 / p["div_factor"],
        p["pct_start"] * n - 1: 1.0,
        n - 1: 1 / p["div_factor"] / p["final_div_factor"],
    },
)
def _onecycle(p: dict, t: int, n: int) -> float:
    initial = 1.0 / p["div_factor"]
    final = initial / p["final_div_factor"]
    # OneCycleLR's two phases, with its step bookkeeping (phase ends at pct_start*n - 1 and n - 1)
    up_end = p["pct_start"] * n - 1
    if t <= up_end:
        return _cos_anneal(initial, 1.0, t / up_end) if up_end > 0 else 1.0
    # an empty phase has no length to divide by (pct_start = 1 ends the rise at the last step; LambdaLR
    # still asks for the step after it): it holds its end value
    down = n - 1 - up_end
    return _cos_anneal(1.0, final, (t - up_end) / down) if down > 0 else final


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


@SCHEDULES.register(
    "inverse_sqrt",
    "1/sqrt decay after warmup (Vaswani et al.): sqrt(timescale / (timescale + t))",
    warmup=_warmup(),
    timescale=Param(int, 100, "steps until the rate falls to 1/sqrt(2) of its peak", low=1),
    promise=lambda p, n: {0: 1.0, p["timescale"]: math.sqrt(0.5), 3 * p["timescale"]: 0.5},
)
def _inverse_sqrt(p: dict, t: int, n: int) -> float:
    return math.sqrt(p["timescale"] / (p["timescale"] + t))


def multiplier(choice: Choice, total_steps: int) -> Multiplier:
    """step -> factor of the peak learning rate, warmup included."""
    entry = SCHEDULES[choice.name]
    p = choice.params
    warmup = p["warmup"]
    n = max(1, total_steps - warmup)
    main: Any = entry.build

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return main(p, step - warmup, n)

    return factor
