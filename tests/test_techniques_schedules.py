import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.registry import Choice
from bench.techniques.schedules import SCHEDULES, multiplier

LR = 0.5


def factors(name, total, **params):
    choice = Choice.of(name, SCHEDULES[name].resolve(params, "schedule"))
    f = multiplier(choice, total)
    return [f(t) for t in range(total)]


def torch_lrs(make, total):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = make(opt)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"] / LR)
        opt.step()
        sched.step()
    return lrs


CASES = {
    "cosine": (
        {"min_lr_ratio": 0.1},
        lambda o, n: torch.optim.lr_scheduler.CosineAnnealingLR(o, n, eta_min=0.1 * LR),
    ),
    "step": (
        {"every": 0.25, "gamma": 0.5},
        lambda o, n: torch.optim.lr_scheduler.StepLR(o, round(0.25 * n), 0.5),
    ),
    "exponential": (
        {"final_ratio": 0.01},
        lambda o, n: torch.optim.lr_scheduler.ExponentialLR(o, 0.01 ** (1 / n)),
    ),
    "linear": (
        {"min_lr_ratio": 0.2},
        lambda o, n: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.2, total_iters=n),
    ),
    "onecycle": (
        {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        lambda o, n: torch.optim.lr_scheduler.OneCycleLR(
            o, LR, total_steps=n, pct_start=0.3, div_factor=25.0, final_div_factor=1e4, cycle_momentum=False
        ),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_torch_scheduler(name):
    params, make = CASES[name]
    n = 120
    ours = factors(name, n, **params)
    theirs = torch_lrs(lambda o: make(o, n), n)
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9)


def test_warmup_cosine_is_nanogpts_get_lr():
    lr, min_lr, warmup, iters = 1e-3, 1e-4, 100, 2000

    def get_lr(it):  # nanoGPT train.py
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > iters:
            return min_lr
        ratio = (it - warmup) / (iters - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    ours = factors("warmup_cosine", iters, warmup=100, min_lr_ratio=0.1)
    assert [lr * f for f in ours] == pytest.approx([get_lr(it) for it in range(iters)], rel=1e-12)


def test_inverse_sqrt_with_timescale_equal_to_warmup_is_fairseqs():
    w = 50
    ours = factors("inverse_sqrt", 400, warmup=w, timescale=w)
    assert ours[w:] == pytest.approx([math.sqrt(w / t) for t in range(w, 400)])


def test_wsd_is_flat_then_linear_to_the_floor():
    f = factors("wsd", 200, warmup=20, decay=0.25, min_lr_ratio=0.0)
    decay_start = 20 + 180 - 45
    assert all(v == 1.0 for v in f[20:decay_start])
    assert f[decay_start + 1] < 1.0 and f[-1] == pytest.approx(1 / 45)
    assert all(a >= b for a, b in zip(f[decay_start:], f[decay_start + 1 :], strict=False))


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_warmup_composes_and_peaks_at_one(name):
    total, warmup = 300, 30
    f = factors(name, total, warmup=warmup)
    assert f[0] == pytest.approx(1 / (warmup + 1))
    assert all(a < b for a, b in zip(f[:warmup], f[1:warmup], strict=False))  # rising during warmup
    if name != "onecycle":  # one-cycle has its own rise
        assert f[warmup] == pytest.approx(1.0)  # the peak right after warmup
    assert max(f) <= 1.0 + 1e-12


@pytest.mark.parametrize(
    ("name", "floor"), [("cosine", 0.05), ("linear", 0.05), ("warmup_cosine", 0.05), ("wsd", 0.05)]
)
def test_decaying_schedules_reach_their_floor(name, floor):
    total = 1000
    choice = Choice.of(name, SCHEDULES[name].resolve({"min_lr_ratio": floor}, "schedule"))
    f = multiplier(choice, total)
    assert f(total) == pytest.approx(floor)  # at the end of the run
    assert f(total - 1) == pytest.approx(floor, abs=0.01)


def _edges(param):
    """The values at the edges of a parameter's allowed range (positive ones: just above 0)."""
    low = param.low if param.low is not None else (1e-9 if param.positive else None)
    high = param.high if param.high is not None else (None if low is None else param.kind(low * 10**6))
    return [v for v in (low, high) if v is not None] or [param.default]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SCHEDULES.names()), st.integers(1, 40), st.data())
def test_every_schedule_runs_at_the_edges_of_its_parameters(name, total, data):
    # before: onecycle accepted pct_start = 1.0, then LambdaLR's step after the last one divided by zero
    entry = SCHEDULES[name]
    params = {n: data.draw(st.sampled_from(_edges(p)), label=n) for n, p in entry.params.items() if n != "warmup"}
    params["warmup"] = data.draw(st.sampled_from([0, total - 1]), label="warmup")
    f = multiplier(Choice.of(name, entry.resolve(params, "schedule")), total)
    # every step LambdaLR asks for, the one after the last included
    assert all(math.isfinite(f(t)) and f(t) >= 0 for t in range(total + 1))
