"""Tuning a numeric setting on a grid: where the best value lies, and which values to run next.

Pure functions over a grid of values and the mean metric at each (lower is better); the executor runs what
they propose and asks again. A best value at either end of its grid says nothing about what lies past that
end: `edge_of` names it, `propose_extension` steps past it, on the grid's own scale (a log-spaced grid by
its ratio, a linear one by its difference), at most `max_steps` beyond the grid the suite file gave.
A best value inside the grid may still lie half a step from the true optimum: `propose_refinement` offers
the midpoint (on the grid's scale) on the side a parabola through the best and its two neighbours points
to, when the gain that parabola predicts exceeds `min_gain` (the noise of a mean, say), halving the spacing
at most `max_halvings` times.

>>> grid, means = [1e-3, 3e-3, 1e-2], [2.9, 2.5, 2.3]
>>> edge_of(grid, 1e-2)
('largest', 3)
>>> [round(v, 6) for v in propose_extension(grid, means)]
[0.031623]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_EXTENSION_STEPS = 2  # steps past the suite's grid on either side
MAX_HALVINGS = 1  # midpoints between the suite's own values; no finer


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def grid_scale(grid: Sequence[float]) -> str:
    """'log' for a grid spaced by a ratio (1e-3, 3e-3, 1e-2; 8, 16, 32), 'linear' for one spaced by a
    difference or holding zero or negative values: whichever spacing is the more even. Two positive values
    read as log from a ratio of 2 up (a doubling is the usual geometric step)."""
    xs = sorted({float(x) for x in grid})
    if len(xs) < 2 or xs[0] <= 0:
        return "linear"
    if len(xs) == 2:
        return "log" if xs[1] / xs[0] >= 2 else "linear"
    logs = [math.log(b / a) for a, b in zip(xs, xs[1:], strict=False)]
    lins = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    return "log" if _unevenness(logs) <= _unevenness(lins) else "linear"


def _unevenness(steps: list[float]) -> float:
    mean = sum(steps) / len(steps)
    return math.sqrt(sum((s - mean) ** 2 for s in steps) / len(steps)) / mean


def _to_scale(x: float, scale: str) -> float:
    return math.log(x) if scale == "log" else x


def _from_scale(u: float, scale: str) -> float:
    return math.exp(u) if scale == "log" else u


def grid_step(grid: Sequence[float], scale: str | None = None) -> float:
    """The grid's typical step on its scale: the median log-ratio or difference of neighbouring values."""
    scale = scale or grid_scale(grid)
    us = sorted({_to_scale(float(x), scale) for x in grid})
    steps = sorted(b - a for a, b in zip(us, us[1:], strict=False))
    if not steps:
        return 0.0
    mid = len(steps) // 2
    return steps[mid] if len(steps) % 2 else (steps[mid - 1] + steps[mid]) / 2


def edge_of(grid: Sequence[object], value: object) -> tuple[str, int] | None:
    """('largest' | 'smallest', number of values) when `value` is the grid's largest or smallest number and
    the grid holds two or more; None when it lies inside, or the grid is not numeric."""
    if not all(is_number(v) for v in grid) or not is_number(value):
        return None
    numbers = sorted({float(v) for v in grid})
    if len(numbers) < 2:
        return None
    if float(value) == numbers[-1]:
        return "largest", len(numbers)
    if float(value) == numbers[0]:
        return "smallest", len(numbers)
    return None


def best_index(means: Sequence[float]) -> int | None:
    """The index of the lowest finite mean (the first where several share it); None if none is finite."""
    finite = [(m, i) for i, m in enumerate(means) if m is not None and math.isfinite(m)]
    return min(finite)[1] if finite else None


def _rounded(x: float, integral: bool) -> float:
    return float(round(x)) if integral else x


def propose_extension(
    grid: Sequence[float],
    means: Sequence[float],
    original: Sequence[float] | None = None,
    max_steps: int = MAX_EXTENSION_STEPS,
    lower: float | None = None,
    upper: float | None = None,
) -> list[float]:
    """The next value past the edge where the best mean lies, one step of the original grid's scale beyond
    the current edge; [] when the best is inside the grid, no mean is finite, `max_steps` values already lie
    past the original edge on that side, or the step would leave [lower, upper]. Without `lower`, a grid of
    values >= 0 is not extended below 0. Integer grids stay integers."""
    xs = [float(x) for x in grid]
    original = [float(x) for x in (original if original is not None else grid)]
    i = best_index(means)
    if i is None or len(set(xs)) < 2:
        return []
    edge = edge_of(xs, xs[i])
    if edge is None:
        return []
    side = edge[0]
    beyond = [x for x in xs if (x > max(original) if side == "largest" else x < min(original))]
    if len(beyond) >= max_steps:
        return []
    scale = grid_scale(original)
    step = grid_step(original, scale)
    if step <= 0:
        return []
    u = _to_scale(xs[i], scale) + (step if side == "largest" else -step)
    integral = all(float(x).is_integer() for x in original)
    value = _rounded(_from_scale(u, scale), integral)
    if lower is None and min(original) >= 0:
        lower = 0.0
    if (lower is not None and value < lower) or (upper is not None and value > upper) or value in xs:
        return []
    return [value]


def propose_refinement(
    grid: Sequence[float],
    means: Sequence[float],
    min_gain: float = 0.0,
    original: Sequence[float] | None = None,
    max_halvings: int = MAX_HALVINGS,
) -> list[float]:
    """The midpoint (on the original grid's scale) between an interior best and the neighbour on the side
    where a parabola through the three lies lowest, when that parabola predicts a mean at the midpoint
    lower than the best's by more than `min_gain`; [] when the best is at an edge (extend first), the
    neighbours are already `max_halvings` halvings of the original step apart, or the gain is too small."""
    xs = [float(x) for x in grid]
    order = sorted(range(len(xs)), key=lambda k: xs[k])
    xs_sorted = [xs[k] for k in order]
    ms = [means[k] for k in order]
    i = best_index(ms)
    if i is None or i == 0 or i == len(xs_sorted) - 1:
        return []
    if not all(m is not None and math.isfinite(m) for m in ms[i - 1 : i + 2]):
        return []  # a diverged neighbour bounds the optimum: nothing to fit
    original = [float(x) for x in (original if original is not None else grid)]
    scale = grid_scale(original)
    finest = grid_step(original, scale) / 2**max_halvings
    (ul, ub, ur), (ml, mb, mr) = [_to_scale(x, scale) for x in xs_sorted[i - 1 : i + 2]], ms[i - 1 : i + 2]
    candidates = []
    for neighbour in (ul, ur):
        mid = (ub + neighbour) / 2
        if abs(ub - neighbour) / 2 < finest * (1 - 1e-9):
            continue
        candidates.append((_parabola(ul, ml, ub, mb, ur, mr, mid), mid))
    if not candidates:
        return []
    predicted, mid = min(candidates)
    if mb - predicted <= min_gain:
        return []
    integral = all(float(x).is_integer() for x in original)
    value = _rounded(_from_scale(mid, scale), integral)
    return [] if value in xs else [value]


def _parabola(x0: float, y0: float, x1: float, y1: float, x2: float, y2: float, x: float) -> float:
    """The quadratic through three points, at x (Lagrange form)."""
    return (
        y0 * (x - x1) * (x - x2) / ((x0 - x1) * (x0 - x2))
        + y1 * (x - x0) * (x - x2) / ((x1 - x0) * (x1 - x2))
        + y2 * (x - x0) * (x - x1) / ((x2 - x0) * (x2 - x1))
    )


def propose(
    grid: Sequence[float],
    means: Sequence[float],
    original: Sequence[float] | None = None,
    max_steps: int = MAX_EXTENSION_STEPS,
    min_gain: float = 0.0,
    max_halvings: int = MAX_HALVINGS,
    lower: float | None = None,
    upper: float | None = None,
) -> tuple[list[float], str]:
    """What to run next and why: an extension past an edge best, else a refinement around an interior
    best, else nothing ([], the reason)."""
    i = best_index(means)
    if i is None:
        return [], "no finite mean"
    extension = propose_extension(grid, means, original, max_steps, lower, upper)
    if extension:
        side = edge_of([float(x) for x in grid], float(grid[i]))
        return extension, f"best at the {side[0]} value of the grid: one step past it"  # type: ignore[index]
    if edge_of([float(x) for x in grid], float(grid[i])) is not None:
        return [], "best at an edge, and the extension budget is spent or the bound reached"
    refinement = propose_refinement(grid, means, min_gain, original, max_halvings)
    if refinement:
        return refinement, "best inside the grid: the midpoint on the side the fitted parabola points to"
    return [], "best inside the grid; a finer value would not pay"
