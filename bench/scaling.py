"""Scaling in data and size: the baseline's final loss against its token budget, the budget it would need to
reach another arm's loss (the speedup), how that moves with model size, whether the arms' order holds across
sizes, and how wide a range of learning rates each arm tolerates.

The speedup is that of "Fantastic Pretraining Optimizers" (Wen, Hall, Ma, Liang 2025): at each model size,
fit the baseline's final loss against its budget, L(D) = E + B * D^-beta, from runs each trained to the end of
its own schedule; an arm that reaches loss L_X with D_X tokens has speedup D_base(L_X) / D_X, where D_base
inverts the fit.

Intervals come from simulating what the seeds could have given (a parametric bootstrap): each draw takes the
noise variance from its scaled inverse chi-square distribution (the pooled within-size residual variance and
its degrees of freedom), draws every cell's mean around the observed one, refits the baseline and recomputes
every speedup, trend and rank correlation. With the variance's own uncertainty drawn, a linear function of
the means gets exactly the Student-t interval; the fit's uncertainty comes with the refit. Seeds shared by
every cell of a size move all of them alike; a speedup is unchanged by such a shift (the fit's floor moves
with it), so where every cell has the same seeds the variance is taken with each seed's shift removed (the
residuals of cell + seed). tests/test_scaling.py measures the coverage against generated truth.

Everything here is numbers: bench.conclusions puts them into words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.stats import CONFIDENCE, mean_ci

DRAWS = 2000
BETA_RANGE = (0.01, 5.0)  # the data exponent: Chinchilla's is near 0.3; outside this range a fit is degenerate
BETA_GRID = np.geomspace(*BETA_RANGE, 61)
GOLDEN_STEPS = 30
SAME_BUDGET = 1.05  # budgets within 5% are one: whole steps round a budget down by up to a step's tokens
# Learning-rate robustness: rates whose mean loss lies within 1% of the arm's best (see docs/conclusions.md)
LR_TOLERANCE = 0.01


# -- the fit --------------------------------------------------------------------------------------------


@dataclass
class Fit:
    """L(D) = E + B * (D / d_ref)^-beta, one per draw (arrays of shape (M,)); form 'saturating' (three or more
    budgets), 'power' (two: E = 0, through both) or 'none'."""

    form: str
    E: np.ndarray
    B: np.ndarray
    beta: np.ndarray
    d_ref: float
    at_bound: np.ndarray  # the least-squares optimum lies on a bound (E = 0, B = 0 or beta at its range's end)

    def loss(self, tokens: Any) -> np.ndarray:
        d = np.asarray(tokens, dtype=float) / self.d_ref
        return self.E[..., None] + self.B[..., None] * d ** -self.beta[..., None]

    def tokens(self, loss: np.ndarray) -> np.ndarray:
        """The budget at which the fit reaches `loss` (per draw): infinite at or below the floor E (and for a
        flat fit, B = 0, at or below its level), 0 above a flat fit's level."""
        loss = np.asarray(loss, dtype=float)
        excess = loss - self.E
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            d = (self.B / excess) ** (1.0 / self.beta) * self.d_ref
        d = np.where(excess <= 0, np.inf, d)
        d = np.where((self.B <= 0) & (excess > 0), 0.0, d)
        return np.where(np.isnan(loss), np.nan, d)


def _given_beta(Sx: np.ndarray, Sxx: np.ndarray, SxL: np.ndarray, SLL: np.ndarray, Lm: np.ndarray,
                W: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Weighted least squares of L on x = d^-beta for a fixed beta, from sums over the budgets (weights w,
    L centred on its weighted mean Lm): Sx = sum w x, Sxx = sum w x^2, SxL = sum w x (L - Lm), SLL = sum w
    (L - Lm)^2. Returns (E, B, weighted SSE) with E >= 0 (a loss floor is no negative number: there the fit
    goes through the origin) and B >= 0 (a loss that grows with data is no fit: B = 0, the flat mean)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        B = SxL * W / (W * Sxx - Sx * Sx)
        Ec = -B * Sx / W  # E - Lm
        negative = Lm + Ec < 0
        Ec = np.where(negative, -Lm, Ec)
        B = np.where(negative, (SxL - Ec * Sx) / Sxx, B)
    flat = ~(B > 0)
    B = np.where(flat, 0.0, B)
    Ec = np.where(flat, 0.0, Ec)
    sse = SLL - 2 * B * SxL + Ec * Ec * W + 2 * Ec * B * Sx + B * B * Sxx
    return Lm + Ec, B, np.maximum(sse, 0.0)


def fit_saturating(d: np.ndarray, L: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Least squares of L = E + B d^-beta over draws at once: L (M, K) at budgets d (K,), weights w (K,).
    beta is profiled out (for fixed beta the model is linear in E and B): over a log grid of BETA_RANGE, then
    golden-section search between the grid points around each draw's best. Returns E, B, beta, at_bound (M,).
    tests/test_scaling.py checks it against scipy.optimize.least_squares, which took a thousand times as long
    over a report's draws, one call per draw."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    W = float(w.sum())
    Lm = L @ w / W
    Lc = L - Lm[:, None]
    SLL = (Lc * Lc) @ w
    x = d[None, :] ** -BETA_GRID[:, None]  # (G, K)
    _, _, sse = _given_beta((x * w).sum(1), (x * x * w).sum(1), Lc @ (x * w).T, SLL[:, None], Lm[:, None], W)
    i = np.argmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    lo = np.log(BETA_GRID[np.maximum(i - 1, 0)])
    hi = np.log(BETA_GRID[np.minimum(i + 1, len(BETA_GRID) - 1)])
    g = (math.sqrt(5) - 1) / 2

    def at(log_beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = d[None, :] ** -np.exp(log_beta)[:, None]  # (M, K)
        return _given_beta((x * w).sum(1), (x * x * w).sum(1), (x * w * Lc).sum(1), SLL, Lm, W)

    c, e = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fe = at(c)[2], at(e)[2]
    for _ in range(GOLDEN_STEPS):
        left = fc < fe  # the minimum lies in [lo, e]: e becomes the upper end; else c the lower
        hi = np.where(left, e, hi)
        lo = np.where(left, lo, c)
        new = np.where(left, hi - g * (hi - lo), lo + g * (hi - lo))
        fn = at(new)[2]
        c, e, fc, fe = (np.where(left, new, e), np.where(left, c, new), np.where(left, fn, fe),
                        np.where(left, fc, fn))  # fmt: skip
    log_beta = (lo + hi) / 2
    E, B, _ = at(log_beta)
    beta = np.exp(log_beta)
    at_bound = (i == 0) | (i == len(BETA_GRID) - 1) | (E <= 0) | (B <= 0)
    return E, B, beta, at_bound


def fit_power(d: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, ...]:
    """The two-budget fallback: L = B d^-beta through both points (E = 0). Where the loss does not fall with
    data, B = 0 (a flat fit). Returns E, B, beta, at_bound."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.log(L[:, 0] / L[:, 1]) / np.log(d[1] / d[0])
    ok = (beta > 0) & np.isfinite(beta) & (L[:, 1] > 0)
    beta = np.where(ok, beta, 1.0)
    B = np.where(ok, L[:, 0] * d[0] ** beta, 0.0)
    E = np.where(ok, 0.0, L.mean(axis=1))
    return E, B, beta, ~ok


def fit(tokens: Sequence[float], L: np.ndarray, n: Sequence[int]) -> Fit:
    """The baseline's fit over its budgets: saturating from three budgets, a pure power law through two, none
    below. L: (M, K) draws (or (K,) means); n: each budget's seeds (its weight)."""
    tokens = np.asarray(tokens, dtype=float)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    d_ref = float(np.exp(np.log(tokens).mean())) if len(tokens) else 1.0
    d = tokens / d_ref
    M = L.shape[0]
    if len(tokens) >= 3:
        E, B, beta, bound = fit_saturating(d, L, np.asarray(n, dtype=float))
        return Fit("saturating", E, B, beta, d_ref, bound)
    if len(tokens) == 2:
        E, B, beta, bound = fit_power(d, L)
        return Fit("power", E, B, beta, d_ref, bound)
    nan = np.full(M, np.nan)
    return Fit("none", nan, nan, nan, d_ref, np.ones(M, dtype=bool))


# -- noise and draws -----------------------------------------------------------------------------------


def budget_levels(tokens: Sequence[float]) -> list[float]:
    """Distinct budgets, ascending: tokens within SAME_BUDGET of a level's first belong to it."""
    levels: list[float] = []
    for t in sorted(float(t) for t in tokens):
        if not levels or t > levels[-1] * SAME_BUDGET:
            levels.append(t)
    return levels


def level_of(tokens: float, levels: Sequence[float]) -> int | None:
    """The index of the budget level `tokens` belongs to, or None."""
    for i, low in enumerate(levels):
        if low <= tokens <= low * SAME_BUDGET:
            return i
    return None


def residual_variance(values: dict[Any, dict[Any, float]]) -> tuple[float, int, str]:
    """The seed noise of one size: (variance, degrees of freedom, how). values: cell -> {seed: value}, finite
    values only. Where every cell has the same two or more seeds, the residuals of cell + seed (a seed's shift,
    shared by every cell, leaves a speedup unchanged); else the variance pooled within cells."""
    cells = {c: v for c, v in values.items() if v}
    seed_sets = {frozenset(v) for v in cells.values()}
    if len(seed_sets) == 1 and len(next(iter(seed_sets))) >= 2 and len(cells) >= 2:
        seeds = sorted(next(iter(seed_sets)))
        y = np.array([[cells[c][s] for s in seeds] for c in cells])  # (C, S)
        r = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
        df = (y.shape[0] - 1) * (y.shape[1] - 1)
        return float((r**2).sum() / df), df, "seed shifts removed"
    ss, df = 0.0, 0
    for v in cells.values():
        x = np.array(list(v.values()))
        ss += float(((x - x.mean()) ** 2).sum())
        df += len(x) - 1
    return (ss / df if df else math.nan), df, "pooled within cells"


def noise_by_method(cells: Sequence[Cell]) -> dict[str, tuple[float, int]]:
    """Each method's seed variance pooled within its own cells at one size: (variance, degrees of freedom).
    The intervals pool every method's (residual_variance); this shows whether that is fair."""
    out = {}
    for method in dict.fromkeys(c.method for c in cells):
        variance, df, _ = residual_variance({c.level: c.values for c in cells if c.method == method and c.finite})
        out[method] = (variance, df)
    return out


def unequal_noise(by_method: dict[str, tuple[float, int]]) -> dict[str, Any] | None:
    """The methods whose seed variances differ most at one size, with the two-sided F test's p (scipy): None
    with fewer than two methods that have a variance."""
    known = {m: (v, df) for m, (v, df) in by_method.items() if df and math.isfinite(v)}
    if len(known) < 2:
        return None
    high = max(known, key=lambda m: known[m][0])
    low = min(known, key=lambda m: known[m][0])
    (vh, dh), (vl, dl) = known[high], known[low]
    ratio = vh / vl if vl > 0 else math.inf
    p = min(1.0, 2 * float(sps.f.sf(ratio, dh, dl))) if math.isfinite(ratio) else 0.0
    return {"high": high, "low": low, "sd_high": math.sqrt(vh), "sd_low": math.sqrt(vl), "p": p}


def draw_means(means: np.ndarray, n: np.ndarray, variance: float, df: int, draws: int,
               rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """(draws, C) cell means: the variance from its scaled inverse chi-square distribution, then each mean
    normal around the observed one with that variance over its seed count."""
    if not df or not math.isfinite(variance):
        return np.full((draws, len(means)), np.nan)
    var = variance * df / rng.chisquare(df, size=draws)
    return means[None, :] + rng.standard_normal((draws, len(means))) * np.sqrt(var[:, None] / n[None, :])


def interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The equal-tailed percentile interval of the draws (infinite ends stay infinite); NaN draws make none."""
    if np.isnan(draws).any() or not len(draws):
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    # (no interpolation: between a finite draw and an unbounded one it would give NaN)
    low, high = np.quantile(draws, [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)


# -- the speedup analysis ------------------------------------------------------------------------------


@dataclass
class Cell:
    """One arm at one size and budget: its judged seeds' values."""

    method: str
    size: int
    level: int
    tokens: float
    flops: float | None
    arm: str
    values: dict[Any, float]  # seed -> value (inf where it diverged)

    @property
    def finite(self) -> bool:
        return bool(self.values) and all(math.isfinite(v) for v in self.values.values())

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else math.nan


def cells_of(runs: pd.DataFrame) -> dict[int, list[Cell]]:
    """size -> its cells, from rows with `method`, `size` (parameters), `tokens`, `seed`, `value`, `arm` and
    optionally `flops`: each run's recorded budget and size, whatever axes set them."""
    out: dict[int, list[Cell]] = {}
    for size, at_size in runs.groupby("size", sort=True):
        levels = budget_levels(at_size["tokens"])
        level = at_size["tokens"].map(lambda t, levels=levels: level_of(float(t), levels))
        cells = []
        for (method, lv), group in at_size.groupby([at_size["method"], level], sort=False):
            flops = pd.to_numeric(group.get("flops"), errors="coerce") if "flops" in group else None
            cells.append(Cell(
                method=str(method), size=int(size), level=int(lv), tokens=float(group["tokens"].astype(float).mean()),
                flops=float(flops.mean()) if flops is not None and flops.notna().any() else None,
                arm=str(group["arm"].iloc[0]),
                values={s: float(v) for s, v in zip(group["seed"], group["value"], strict=True)},
            ))  # fmt: skip
        out[int(size)] = sorted(cells, key=lambda c: (c.level, c.method))
    return out


def speedups(runs: pd.DataFrame, baseline: str, draws: int = DRAWS, seed: int = 0,
             confidence: float = CONFIDENCE) -> dict[str, Any]:  # fmt: skip
    """The speedup analysis of judged runs (cells_of's columns) against the `baseline` method: per size the
    baseline's fit, every cell, every other arm's speedup at every budget with its interval; across sizes the
    speedup's trend in parameters and the rank correlation of the arms between sizes. Numbers only (NaN for
    none, inf for unbounded)."""
    rng = np.random.default_rng(seed)
    by_size = cells_of(runs)
    sizes, entries, cells_out = [], [], []
    cell_draws: dict[tuple[int, str, int], np.ndarray] = {}
    entry_draws: dict[tuple[int, str, int], np.ndarray] = {}
    for size, cells in by_size.items():
        finite = [c for c in cells if c.finite]
        variance, df, how = residual_variance({(c.method, c.level): c.values for c in finite})
        means = np.array([c.mean for c in finite])
        n = np.array([len(c.values) for c in finite], dtype=float)
        drawn = draw_means(means, n, variance, df, draws, rng)
        for c, col in zip(finite, drawn.T, strict=True):
            cell_draws[(size, c.method, c.level)] = col
        base = [c for c in finite if c.method == baseline]
        base_cols = [finite.index(c) for c in base]
        tokens = [c.tokens for c in base]
        point = fit(tokens, means[base_cols], n[base_cols])
        drawn_fit = fit(tokens, drawn[:, base_cols], n[base_cols]) if df else None
        sizes.append({
            "size": size, "form": point.form, "budgets": tokens,
            "E": float(point.E[0]), "B": float(point.B[0]), "beta": float(point.beta[0]), "d_ref": point.d_ref,
            "at_bound": bool(point.at_bound[0]) if point.form != "none" else None,
            "draws_at_bound": float(drawn_fit.at_bound.mean()) if drawn_fit is not None and point.form != "none"
            else None,
            "points": [{"tokens": c.tokens, "mean": c.mean, "n": len(c.values), "arm": c.arm, "level": c.level}
                       for c in base],
            "left_out": [{"tokens": c.tokens, "arm": c.arm} for c in cells if c.method == baseline and not c.finite],
            "noise_sd": math.sqrt(variance) if math.isfinite(variance) else math.nan, "noise_df": df,
            "noise_model": how, "noise_by_method": noise_by_method(finite),
        })  # fmt: skip
        for c in cells:
            ci = mean_ci(list(c.values.values()))
            cells_out.append({"size": size, "method": c.method, "arm": c.arm, "level": c.level, "tokens": c.tokens,
                              "flops": c.flops, "mean": c.mean, "n": len(c.values),
                              "seeds": sorted(int(s) for s in c.values), "ci": ci})  # fmt: skip
        for c in cells:
            if c.method == baseline:
                continue
            entry = {"size": size, "method": c.method, "arm": c.arm, "level": c.level, "tokens": c.tokens,
                     "mean": c.mean, "n": len(c.values), "seeds": sorted(int(s) for s in c.values),
                     "d_base": math.nan, "speedup": math.nan, "ci": (math.nan, math.nan), "status": "ok",
                     "extrapolated": None, "interval_extrapolates": None, "unbounded": None}  # fmt: skip
            entries.append(entry)
            if not c.finite:
                entry["status"] = "diverged"
                continue
            if point.form == "none":
                entry["status"] = "no fit"
                continue
            d_base = float(point.tokens(np.array([c.mean]))[0])
            entry["d_base"] = d_base
            low_budget, high_budget = min(tokens), max(tokens)
            if math.isinf(d_base):
                entry["status"] = "below floor"
            else:
                entry["speedup"] = d_base / c.tokens
                if d_base > high_budget * SAME_BUDGET:
                    entry["extrapolated"] = "beyond"
                elif d_base < low_budget / SAME_BUDGET:
                    entry["extrapolated"] = "below"
            if drawn_fit is None:
                entry["status"] = "no interval" if entry["status"] == "ok" else entry["status"]
                continue
            col = cell_draws[(size, c.method, c.level)]
            d_drawn = drawn_fit.tokens(col)
            s_drawn = d_drawn / c.tokens
            entry_draws[(size, c.method, c.level)] = s_drawn
            entry["ci"] = interval(s_drawn, confidence)
            entry["unbounded"] = float(np.isinf(s_drawn).mean())
            lo, hi = entry["ci"]
            entry["interval_extrapolates"] = bool(hi * c.tokens > high_budget * SAME_BUDGET
                                                  or lo * c.tokens < low_budget / SAME_BUDGET)  # fmt: skip
    out = {"sizes": sizes, "cells": cells_out, "entries": entries, "draws": draws, "seed": seed,
           "confidence": confidence}  # fmt: skip
    out["trends"] = trends(entries, entry_draws, confidence)
    out["rank_stability"] = rank_stability(by_size, cell_draws, confidence)
    return out


# -- across sizes --------------------------------------------------------------------------------------


def trends(entries: list[dict[str, Any]], entry_draws: dict[tuple, np.ndarray], confidence: float) -> list[dict]:
    """Per other arm and budget rank (the k-th budget at each size): log speedup against log parameters by
    least squares over the sizes, with the slope's interval and a band from refitting every draw."""
    out = []
    keys = dict.fromkeys((e["method"], e["level"]) for e in entries)
    for method, level in keys:
        rows = [e for e in entries if e["method"] == method and e["level"] == level]
        rows = [e for e in rows if math.isfinite(e["speedup"]) and e["speedup"] > 0]
        if len({e["size"] for e in rows}) < 2:
            continue
        x = np.log([e["size"] for e in rows])
        y = np.log([e["speedup"] for e in rows])
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 25)
        trend = {"method": method, "level": level, "sizes": [e["size"] for e in rows],
                 "tokens_per_param": float(np.mean([e["tokens"] / e["size"] for e in rows])),
                 "slope": float(slope), "intercept": float(intercept), "slope_ci": (math.nan, math.nan),
                 "band": [], "extrapolated_points": sum(e["extrapolated"] is not None for e in rows),
                 "no_interval": None}  # fmt: skip
        out.append(trend)
        stacked = [entry_draws.get((e["size"], method, level)) for e in rows]
        if any(s is None for s in stacked):
            trend["no_interval"] = "a size has no interval"
            continue
        with np.errstate(divide="ignore"):  # a draw's speedup of 0 (never reached) is -inf: counted below
            ys = np.log(np.column_stack(stacked))  # (M, sizes)
        ok = np.isfinite(ys).all(axis=1)
        if (~ok).mean() > (1 - confidence) / 2:
            trend["no_interval"] = (f"in {(~ok).mean():.0%} of the draws a speedup was unbounded or zero: the "
                                    "trend's interval is unbounded")  # fmt: skip
            continue
        # an unbounded draw would lie beyond every bound of the interval: kept at the ends, not dropped
        ys = np.where(np.isfinite(ys), ys, np.where(ys > 0, 1e6, -1e6))
        xc = x - x.mean()
        slopes = (ys - ys.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
        intercepts = ys.mean(axis=1) - slopes * x.mean()
        trend["slope_ci"] = interval(slopes, confidence)
        predicted = intercepts[:, None] + slopes[:, None] * grid[None, :]
        tail = (1 - confidence) / 2
        low, high = np.quantile(predicted, [tail, 1 - tail], axis=0)
        trend["band"] = [(float(np.exp(g)), float(np.exp(intercept + slope * g)), float(np.exp(lo)), float(np.exp(hi)))
                         for g, lo, hi in zip(grid, low, high, strict=True)]  # fmt: skip
    return out


def kendall_draws(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau between the columns of a and b, row by row (draws of untied values: tau-a = tau-b)."""
    i, j = np.triu_indices(a.shape[1], 1)
    return (np.sign(a[:, i] - a[:, j]) * np.sign(b[:, i] - b[:, j])).mean(axis=1)


def rank_stability(by_size: dict[int, list[Cell]], cell_draws: dict[tuple, np.ndarray],
                   confidence: float) -> list[dict[str, Any]]:  # fmt: skip
    """Per budget rank: each size's order of the arms by mean, and Kendall's tau between every two sizes over
    the arms both have (scipy.stats.kendalltau), with the interval of tau over the draws."""
    out = []
    levels = sorted({c.level for cells in by_size.values() for c in cells})
    sizes = sorted(by_size)
    for level in levels:
        means = {s: {c.method: c.mean for c in by_size[s] if c.level == level and c.finite} for s in sizes}
        present = [s for s in sizes if len(means[s]) >= 2]
        if len(present) < 2:
            continue
        entry = {"level": level, "order": {s: sorted(means[s], key=means[s].get) for s in present}, "pairs": []}
        out.append(entry)
        # every pair of a few sizes; of many, each size with the next and the smallest with the largest
        pairs = [(a, b) for k, a in enumerate(present) for b in present[k + 1 :]]
        if len(present) > 4:
            pairs = [*zip(present, present[1:], strict=False), (present[0], present[-1])]
        for s1, s2 in pairs:
            methods = [m for m in means[s1] if m in means[s2]]
            if len(methods) < 2:
                continue
            x = [means[s1][m] for m in methods]
            y = [means[s2][m] for m in methods]
            tau = float(sps.kendalltau(x, y).statistic)
            a = np.column_stack([cell_draws[(s1, m, level)] for m in methods])
            b = np.column_stack([cell_draws[(s2, m, level)] for m in methods])
            ci = interval(kendall_draws(a, b), confidence) if not np.isnan(a).any() else (math.nan, math.nan)
            entry["pairs"].append({"sizes": (s1, s2), "arms": methods, "tau": tau, "ci": ci})
    return out


# -- learning-rate robustness --------------------------------------------------------------------------


def robust_range(rates: Sequence[float], means: Sequence[float], tolerance: float = LR_TOLERANCE) -> dict[str, Any]:
    """The contiguous run of rates around the best (lowest finite mean) whose mean lies within `tolerance`
    (relative) of the best: its ends, its width in decades (log10 high / low) and whether it reaches an end of
    the rates tried (then the width is a lower bound). A rate without a finite mean breaks the run."""
    order = np.argsort(rates)
    r = np.asarray(rates, dtype=float)[order]
    m = np.asarray(means, dtype=float)[order]
    finite = np.isfinite(m)
    if not finite.any():
        return {"best": None, "low": None, "high": None, "width": None, "open_low": None, "open_high": None,
                "within": [False] * len(r), "rates": r.tolist()}  # fmt: skip
    best = int(np.argmin(np.where(finite, m, np.inf)))
    limit = m[best] * (1 + tolerance)
    within = finite & (m <= limit)
    lo = best
    while lo > 0 and within[lo - 1]:
        lo -= 1
    hi = best
    while hi < len(r) - 1 and within[hi + 1]:
        hi += 1
    return {"best": float(r[best]), "low": float(r[lo]), "high": float(r[hi]), "width": float(np.log10(r[hi] / r[lo])),
            "open_low": lo == 0, "open_high": hi == len(r) - 1, "limit": float(limit),
            "within": [bool(lo <= i <= hi) for i in range(len(r))], "rates": r.tolist()}  # fmt: skip
