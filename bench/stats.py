"""Seeds -> means, confidence intervals, paired tests, rankings, performance profiles.

Input is `load_results()`'s DataFrame (one row per run: `arm`, `seed`, `status`, `value`, ...). A diverged
run's value is +inf: it counts as the worst possible outcome, as AlgoPerf counts a missed target.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.codec import FINISHED, STATUSES  # the one status vocabulary (bench.codec.Status)

CONFIDENCE = 0.95
# Below this many seeds an arm gets no interval, no p-value and no effect size. Measured by simulation
# (tests/test_stats.py, normal seed noise, 2000 draws): a 95% percentile-bootstrap interval of the mean
# covers the true mean 52% of the time at 2 seeds and 75% at 3 (90% only from 8 seeds), so intervals are
# Student-t intervals, which cover 95% at any n; at 2 seeds that interval is +-12.7 sd wide and the paired
# t-test detects a one-sd difference 8% of the time: nothing worth printing. From 3 seeds both behave.
MIN_SEEDS_FOR_CI = 3


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """95% Student-t interval of the mean (scipy.stats.ttest_1samp); NaN with fewer than MIN_SEEDS_FOR_CI
    values or any non-finite one."""
    x = np.asarray(values, dtype=float)
    if len(x) < MIN_SEEDS_FOR_CI or not np.all(np.isfinite(x)):
        return math.nan, math.nan
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    ci = sps.ttest_1samp(x, 0.0).confidence_interval(CONFIDENCE)
    return float(ci.low), float(ci.high)


def summarize(frame: pd.DataFrame, by: str = "arm", value: str = "value") -> pd.DataFrame:
    """Per arm: n, mean, std, 95% CI (NaN where too few seeds), status counts, rank with ties, gap to best."""
    rows = []
    for arm, group in frame.groupby(by, sort=False):
        finished = group[group["status"].isin(FINISHED)]
        values = finished[value].astype(float).to_numpy()
        low, high = mean_ci(values)
        counts = group["status"].value_counts()
        rows.append({
            by: arm,
            "n": len(values),
            "mean": float(np.mean(values)) if len(values) else math.nan,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 and np.all(np.isfinite(values)) else math.nan,
            "ci_low": low,
            "ci_high": high,
            **{s: int(counts.get(s, 0)) for s in STATUSES},
        })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["mean", by], kind="stable", na_position="last").reset_index(drop=True)
    table["rank"] = rank_with_ties(table)
    table["gap"] = table["mean"] - table["mean"].min()
    # listed by rank, then mean: a wide-interval arm may share a better rank than a narrower arm with a lower
    # mean, and a table sorted by mean alone would show ranks going back and forth
    return table.sort_values(["rank", "mean", by], kind="stable", na_position="last").reset_index(drop=True)


def rank_with_ties(table: pd.DataFrame) -> list[int]:
    """1 + the number of arms that are clearly better (their interval lies wholly below this one's).
    Arms whose intervals overlap share a rank; without intervals, ranks follow the means; arms with no
    finished run (all pruned or failed) share the last rank."""
    ranks = []
    unranked = 1 + int(table["mean"].notna().sum())  # arms without a finished run come last
    for _, row in table.iterrows():
        if math.isnan(row["mean"]):
            ranks.append(unranked)
            continue
        if math.isnan(row["ci_low"]):
            better = int((table["mean"] < row["mean"]).sum())
        else:
            better = int((table["ci_high"] < row["ci_low"]).sum())
        ranks.append(1 + better)
    return ranks


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979): step-down, monotone, capped at 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, (m - i) * p[idx])
        adjusted[idx] = min(1.0, running)
    return adjusted.tolist()


def paired_comparisons(frame: pd.DataFrame, baseline: str, by: str = "arm", value: str = "value") -> pd.DataFrame:
    """Each arm against the baseline over matching seeds (same data order): mean difference, paired t-test,
    Holm-adjusted p, and the paired effect size d = mean(diff) / sd(diff). Needs MIN_SEEDS_FOR_CI matching
    finite pairs: with fewer, p and d stay NaN (see MIN_SEEDS_FOR_CI for why)."""
    base = frame[(frame[by] == baseline) & frame["status"].isin(FINISHED)].set_index("seed")[value].astype(float)
    rows = []
    for arm, group in frame.groupby(by, sort=False):
        if arm == baseline:
            continue
        other = group[group["status"].isin(FINISHED)].set_index("seed")[value].astype(float)
        seeds = sorted(set(base.index) & set(other.index))
        with np.errstate(invalid="ignore"):  # both diverged: inf - inf is NaN, dropped as not finite
            diff = np.array([other[s] - base[s] for s in seeds], dtype=float)
        finite = diff[np.isfinite(diff)]
        row = {by: arm, "pairs": len(finite), "mean_diff": float(finite.mean()) if len(finite) else math.nan,
               "p": math.nan, "effect_size": math.nan}  # fmt: skip
        if len(finite) >= MIN_SEEDS_FOR_CI and np.ptp(finite) > 0:
            row["p"] = float(sps.ttest_1samp(finite, 0.0).pvalue)  # = the paired t-test on finite pairs
            row["effect_size"] = float(finite.mean() / finite.std(ddof=1))
        rows.append(row)
    table = pd.DataFrame(rows, columns=[by, "pairs", "mean_diff", "p", "effect_size"])
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"].tolist())
    return table


def best_per_arm(frame: pd.DataFrame, groups: pd.Series, value: str = "value") -> pd.DataFrame:
    """Tuned fairly: within each group (an arm without its tuned settings), the arm with the lowest mean.
    Returns that arm's runs with `arm` set to the group and `tuned_arm` to the arm it was."""
    finished = frame["status"].isin(FINISHED) if "status" in frame else pd.Series(True, index=frame.index)
    values = frame[value].astype(float).where(finished)
    means = values.groupby([groups, frame["arm"]], sort=False).mean()
    chosen = set()
    for _, arms in means.groupby(level=0, sort=False):
        # a group none of whose arms finished (all failed or interrupted) keeps its first arm, unranked
        chosen.add(arms.idxmin()[1] if arms.notna().any() else arms.index[0][1])
    out = frame[frame["arm"].isin(chosen)].copy()
    out["tuned_arm"] = out["arm"]
    out["arm"] = groups[out.index]
    return out


def performance_profile(times: pd.DataFrame, taus: np.ndarray, r_max: float = 4.0) -> tuple[pd.DataFrame, pd.Series]:
    """AlgoPerf's performance profiles. `times` has one row per workload (here: seed), one column per arm,
    inf where the target was missed. r = t / best t of the workload; rho(tau) = share of workloads with
    r <= tau; the score is the area under rho from 1 to r_max, normalized to [0, 1]."""
    best = times.min(axis=1)
    ratios = times.div(best, axis=0)
    rho = pd.DataFrame({arm: [(ratios[arm] <= tau).mean() for tau in taus] for arm in times.columns}, index=taus)
    grid = taus[(taus >= 1) & (taus <= r_max)]
    scores = pd.Series({arm: float(np.trapezoid(rho.loc[grid, arm], grid) / (r_max - 1)) for arm in times.columns})
    return rho, scores


def param_importances(study: Any) -> dict[str, float]:
    """Optuna's default evaluator (PED-ANOVA in Optuna 5) over a study's complete trials; {} when too few.
    Only the parameters every complete trial has and not all set alike (a per-arm study's pinned arm
    explains nothing)."""
    import optuna

    finished = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) < 3 or len(study.directions) > 1:
        return {}
    common = set.intersection(*(set(t.params) for t in finished))
    varied = [name for name in sorted(common) if len({repr(t.params[name]) for t in finished}) > 1]
    if not varied:
        return {}
    try:
        with warnings.catch_warnings():  # PED-ANOVA warns about sparse regimes of conditional parameters
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study, params=varied))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
