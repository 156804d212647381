"""bench.tuning against generated truth: loss-vs-learning-rate curves with known optima, convex and noisy."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.tuning import (
    edge_of,
    grid_scale,
    grid_step,
    propose,
    propose_extension,
    propose_refinement,
)


def test_a_grid_reads_on_the_scale_its_values_are_spaced_on():
    assert grid_scale([1e-3, 3e-3, 1e-2]) == "log" and grid_scale([8, 16, 32, 64]) == "log"
    assert grid_scale([0.0, 0.1, 0.2]) == "linear" and grid_scale([100, 200, 300]) == "linear"
    assert grid_scale([0.9, 0.95, 0.99]) == "linear" and grid_scale([-1.0, 1.0]) == "linear"
    assert grid_step([1e-3, 1e-2, 1e-1]) == pytest.approx(math.log(10))
    assert grid_step([0.0, 0.1, 0.2, 0.4]) == pytest.approx(0.1)


def test_edges_are_named_and_interior_values_are_not():
    assert edge_of([1e-3, 3e-3, 1e-2], 1e-2) == ("largest", 3)
    assert edge_of([1e-3, 3e-3, 1e-2], 1e-3) == ("smallest", 3)
    assert edge_of([1e-3, 3e-3, 1e-2], 3e-3) is None
    assert edge_of([1e-3], 1e-3) is None  # one value: no grid to be at the edge of
    assert edge_of(["adamw", "lion"], "lion") is None  # not numeric: no edge


def test_an_edge_best_extends_by_the_grids_own_step_at_most_max_steps_times():
    grid, means = [1e-3, 3e-3, 1e-2], [2.9, 2.5, 2.3]
    (nxt,) = propose_extension(grid, means)
    assert nxt == pytest.approx(1e-2 * math.sqrt(1e-2 / 1e-3) ** 1, rel=0.05)  # the median ratio, ~3.16
    (down,) = propose_extension(grid, [2.1, 2.5, 2.9])
    assert down < 1e-3 and 1e-3 / down == pytest.approx(nxt / 1e-2)
    assert propose_extension([0.0, 0.1, 0.2], [1.0, 1.1, 1.2]) == []  # not below 0 where the grid starts there
    assert propose_extension([0.1, 0.2, 0.3], [1.2, 1.1, 1.0]) == [pytest.approx(0.4)]
    assert propose_extension([8, 16, 32], [1.2, 1.1, 1.0]) == [64.0]  # integers stay integers
    # two steps past the original grid already: the budget is spent
    assert propose_extension([1e-3, 3e-3, 1e-2, 3e-2, 1e-1], [3, 2.8, 2.6, 2.4, 2.2], original=grid) == []
    assert propose_extension([1e-3, 3e-3, 1e-2, 3e-2], [3, 2.8, 2.6, 2.4], original=grid, max_steps=3)
    assert propose_extension(grid, [2.9, 2.3, 2.5]) == []  # interior
    assert propose_extension(grid, [math.inf, math.inf, math.inf]) == []


def test_refinement_goes_to_the_side_the_parabola_points_to_and_only_when_it_pays():
    grid = [1e-3, 1e-2, 1e-1]
    (mid,) = propose_refinement(grid, [2.0, 1.5, 1.6])  # the optimum leans towards 1e-1
    assert mid == pytest.approx(math.sqrt(1e-2 * 1e-1))
    (mid,) = propose_refinement(grid, [1.6, 1.5, 2.0])
    assert mid == pytest.approx(math.sqrt(1e-3 * 1e-2))
    assert propose_refinement(grid, [2.0, 1.5, 1.6], min_gain=0.5) == []  # predicted gain ~0.07: does not pay
    assert propose_refinement(grid, [1.5, 1.6, 2.0]) == []  # an edge: extend first
    assert propose_refinement(grid, [math.inf, 1.5, 1.6]) == []  # a diverged neighbour bounds it
    # one halving of the suite's step, no finer
    finer = [1e-3, 1e-2, math.sqrt(1e-3), 1e-1]
    assert propose_refinement(finer, [2.0, 1.55, 1.5, 1.9], original=grid) == []


def loss(lr, optimum, curvature=0.3, floor=1.5):
    """A convex loss in log10(lr) with its minimum at `optimum`."""
    return floor + curvature * (math.log10(lr) - math.log10(optimum)) ** 2


def protocol(grid, measure, max_steps=2, min_gain=0.0, rounds=20):
    """The adaptive protocol as the executor runs it: measure, ask, add, until nothing is proposed."""
    original = list(grid)
    grid = list(grid)
    means = {x: measure(x) for x in grid}
    for _ in range(rounds):
        new, _why = propose(grid, [means[x] for x in grid], original, max_steps=max_steps, min_gain=min_gain)
        if not new:
            break
        for x in new:
            grid.append(x)
            means[x] = measure(x)
    best = min(grid, key=lambda x: means[x])
    return grid, best


@settings(max_examples=100, deadline=None, derandomize=True)
@given(log_opt=st.floats(-5.0, -0.5), start=st.floats(-4.0, -2.0))
def test_noiseless_convex_curves_end_interior_and_refined_or_flagged_at_the_edge(log_opt, start):
    grid = [10**start, 10 ** (start + 0.5), 10 ** (start + 1.0)]  # a half-decade grid
    final, best = protocol(grid, lambda lr: loss(lr, 10**log_opt))
    low, high = start - 2 * 0.5, start + 1.0 + 2 * 0.5  # two steps past either edge
    if low + 0.25 <= log_opt <= high - 0.25:  # within reach: interior, then one midpoint towards the optimum
        assert edge_of(final, best) is None
        assert abs(math.log10(best) - log_opt) <= 0.125 + 1e-9, (final, best)
    elif log_opt < low - 0.25 or log_opt > high + 0.25:  # out of reach: still at an edge, which stays flagged
        assert edge_of(final, best) is not None
        assert len(final) == 3 + 2


def test_noisy_curves_find_the_optimum_within_one_reference_step_with_half_the_runs_of_a_dense_grid():
    """Against a dense reference grid of 13 rates (quarter decades from 1e-5 to 1e-2), the protocol from a
    3-point grid finds a best within one reference step of the dense grid's own best in nearly every draw
    while measuring at most half as many rates. The noise is that of a mean over 3 seeds."""
    rng = np.random.default_rng(0)
    dense = [10 ** (-5 + 0.25 * i) for i in range(13)]
    within, runs = [], []
    for _ in range(300):
        log_opt = rng.uniform(-4.5, -2.5)
        curve = {}

        def measure(lr, log_opt=log_opt, curve=curve):
            key = round(math.log10(lr), 6)
            if key not in curve:
                curve[key] = loss(lr, 10**log_opt) + rng.normal(0, 0.01)
            return curve[key]

        dense_best = min(dense, key=measure)
        start = rng.choice([-4.5, -4.0, -3.5])
        grid, best = protocol([10**start, 10 ** (start + 0.5), 10 ** (start + 1.0)], measure, min_gain=0.01)
        within.append(abs(math.log10(best) - math.log10(dense_best)) <= 0.25 + 1e-9)
        runs.append(len(grid))
    assert np.mean(within) >= 0.95, np.mean(within)
    assert max(runs) <= len(dense) / 2 + 0.5, max(runs)
