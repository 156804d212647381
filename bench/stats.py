"""Seeds -> means, confidence intervals, paired tests, rankings, performance profiles.

Input is `load_results()`'s DataFrame (one row per run: `arm`, `seed`, `status`, `value`, ...). A diverged
run's value is +inf: it counts as the worst possible outcome, as AlgoPerf counts a missed target.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.codec import FINISHED, STATUSES  # the one status vocabulary (bench.codec.Status)

CONFIDENCE = 0.95
ALPHA = 0.05  # a Holm-adjusted p below this separates two arms
# Below this many seeds an arm gets no interval, no p-value and no effect size. Measured by simulation
# (tests/test_stats.py, normal seed noise, 2000 draws): a 95% percentile-bootstrap interval of the mean
# covers the true mean 52% of the time at 2 seeds and 75% at 3 (90% only from 8 seeds), so intervals are
# Student-t intervals, which cover 95% at any n; at 2 seeds that interval is +-12.7 sd wide and the paired
# t-test detects a one-sd difference 8% of the time: nothing worth printing. From 3 seeds both behave.
MIN_SEEDS_FOR_CI = 3


def t_test(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The one-sample t-test of mean 0 (what scipy.stats.ttest_1samp computes, from the t distribution
    directly: ttest_1samp's argument handling cost a millisecond a call, a report of 500 arms two): the
    interval of the mean and the two-sided p. x: two or more finite values, not all equal."""
    n = len(x)
    mean, se = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return mean - half, mean + half, float(2 * sps.t.sf(abs(mean) / se, n - 1))


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """95% Student-t interval of the mean (t_test: scipy.stats.ttest_1samp's); NaN with fewer than
    MIN_SEEDS_FOR_CI values or any non-finite one."""
    x = np.asarray(values, dtype=float)
    if len(x) < MIN_SEEDS_FOR_CI or not np.all(np.isfinite(x)):
        return math.nan, math.nan
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    low, high, _ = t_test(x)
    return low, high


def _groups(frame: pd.DataFrame, by: str, value: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Row positions of each arm in the frame's order, with the statuses and values as arrays (per-arm
    pandas filtering took 3 ms an arm)."""
    positions = frame.groupby(by, sort=False).indices
    order = [k for k in dict.fromkeys(frame[by]) if k in positions]
    values = pd.to_numeric(frame[value], errors="coerce").astype(float).to_numpy()
    return {k: positions[k] for k in order}, frame["status"].to_numpy(dtype=object), values


def summarize(frame: pd.DataFrame, by: str = "arm", value: str = "value") -> pd.DataFrame:
    """Per arm: n, mean, std, 95% CI (NaN where too few seeds), status counts, rank with ties, gap to best."""
    rows = []
    groups, status, all_values = _groups(frame, by, value)
    finished_mask = np.isin(status, FINISHED)
    for arm, idx in groups.items():
        values = all_values[idx][finished_mask[idx]]
        low, high = mean_ci(values)
        counts = Counter(status[idx])
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


def paired_comparisons(
    frame: pd.DataFrame,
    baseline: str,
    by: str = "arm",
    value: str = "value",
    baselines: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Each arm against the baseline over matching seeds (same data order): mean difference with its 95%
    Student-t interval, paired t-test, Holm-adjusted p, the paired effect size d = mean(diff) / sd(diff) with
    its 95% noncentral-t interval, and a verdict ('better', 'worse', 'not distinguishable' by the Holm p;
    'not tested' below MIN_SEEDS_FOR_CI finite pairs, where p, d and the intervals stay NaN). `baselines`
    (arm -> its baseline arm) gives each arm a baseline of its own: arms it does not list are not compared.
    The `baseline` column names the arm each row was compared with."""
    groups, status, values = _groups(frame, by, value)
    seeds = frame["seed"].to_numpy(dtype=object)
    finished_mask = np.isin(status, FINISHED)

    def by_seed(idx: np.ndarray) -> dict[Any, float]:
        kept = idx[finished_mask[idx]]
        return dict(zip(seeds[kept], values[kept], strict=True))

    base_of = baselines if baselines is not None else {arm: baseline for arm in groups if arm != baseline}
    rows = []
    for arm, idx in groups.items():
        if arm not in base_of:
            continue
        base = by_seed(groups.get(base_of[arm], np.array([], dtype=int)))
        other = by_seed(idx)
        common = sorted(set(base) & set(other))
        with np.errstate(invalid="ignore"):  # both diverged: inf - inf is NaN, dropped as not finite
            diff = np.array([other[s] - base[s] for s in common], dtype=float)
        row = {by: arm, "baseline": base_of[arm], **paired_difference(diff)}
        rows.append(row)
    columns = [by, "baseline", "pairs", "mean_diff", "diff_low", "diff_high", "p", "effect_size", "d_low", "d_high"]
    table = pd.DataFrame(rows, columns=columns)
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"].tolist())
    table["verdict"] = [verdict(row) for _, row in table.iterrows()]
    return table


def paired_difference(diff: np.ndarray) -> dict[str, float]:
    """The paired test on per-seed differences (non-finite ones dropped: a seed where either side diverged):
    pairs, mean difference with its 95% Student-t interval, p, effect size d with its interval; NaN below
    MIN_SEEDS_FOR_CI finite pairs. Pairs that all differ by the same amount get that amount as the interval
    and no p (no noise to test against)."""
    finite = diff[np.isfinite(diff)]
    row = {"pairs": len(finite), "mean_diff": float(finite.mean()) if len(finite) else math.nan,
           "diff_low": math.nan, "diff_high": math.nan, "p": math.nan, "effect_size": math.nan,
           "d_low": math.nan, "d_high": math.nan}  # fmt: skip
    if len(finite) >= MIN_SEEDS_FOR_CI and np.ptp(finite) > 0:
        low, high, p = t_test(finite)  # = the paired t-test on finite pairs
        row.update(p=p, diff_low=low, diff_high=high)
        d = float(finite.mean() / finite.std(ddof=1))
        row["effect_size"] = d
        row["d_low"], row["d_high"] = effect_size_ci(d, len(finite))
    elif len(finite) >= MIN_SEEDS_FOR_CI:
        row.update(diff_low=float(finite[0]), diff_high=float(finite[0]))
    return row


def welch_difference(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """mean(x) - mean(y) of two independent samples (finite values only) with Welch's 95% interval and
    two-sided p (scipy.stats.ttest_ind, equal_var=False); NaN where either side has fewer than
    MIN_SEEDS_FOR_CI values. Two sides without any spread get their difference as the interval and no p."""
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    row = {"mean_diff": float(x.mean() - y.mean()) if len(x) and len(y) else math.nan,
           "diff_low": math.nan, "diff_high": math.nan, "p": math.nan}  # fmt: skip
    if min(len(x), len(y)) < MIN_SEEDS_FOR_CI:
        return row
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return {**row, "diff_low": row["mean_diff"], "diff_high": row["mean_diff"]}
    result = sps.ttest_ind(x, y, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    return {**row, "p": float(result.pvalue), "diff_low": float(interval.low), "diff_high": float(interval.high)}


def between(a: pd.DataFrame, b: pd.DataFrame, by: str = "arm", value: str = "value", pair: bool = True) -> pd.DataFrame:
    """Each arm of either frame, side a against side b (the same arm run twice: two stores, two code
    versions): difference a - b with its 95% interval, p, Holm-adjusted p over the arms tested, and the
    verdict (`verdict`: 'better' where a is lower). Paired by seed (paired_difference) where both sides
    finished MIN_SEEDS_FOR_CI or more seeds in common and `pair`, else Welch (welch_difference) over each
    side's finished runs. An arm on one side only is a row with `present` 'a' or 'b' and no test."""
    ga, status_a, values_a = _groups(a, by, value)
    gb, status_b, values_b = _groups(b, by, value)
    seeds_a, seeds_b = a["seed"].to_numpy(dtype=object), b["seed"].to_numpy(dtype=object)

    def by_seed(idx: np.ndarray, status: np.ndarray, values: np.ndarray, seeds: np.ndarray) -> dict[Any, float]:
        kept = idx[np.isin(status[idx], FINISHED)]
        return dict(zip(seeds[kept], values[kept], strict=True))

    rows = []
    for arm in dict.fromkeys([*ga, *gb]):
        sa = by_seed(ga[arm], status_a, values_a, seeds_a) if arm in ga else {}
        sb = by_seed(gb[arm], status_b, values_b, seeds_b) if arm in gb else {}
        xa, xb = np.array(list(sa.values()), dtype=float), np.array(list(sb.values()), dtype=float)
        row: dict[str, Any] = {by: arm, "present": "both" if arm in ga and arm in gb else "a" if arm in ga else "b",
                               "n_a": len(xa), "n_b": len(xb), "test": None, "pairs": 0,
                               "mean_a": float(xa.mean()) if len(xa) else math.nan,
                               "mean_b": float(xb.mean()) if len(xb) else math.nan, "mean_diff": math.nan,
                               "diff_low": math.nan, "diff_high": math.nan, "p": math.nan, "effect_size": math.nan,
                               "d_low": math.nan, "d_high": math.nan}  # fmt: skip
        if row["present"] == "both":
            common = sorted(set(sa) & set(sb))
            with np.errstate(invalid="ignore"):  # both diverged: inf - inf is NaN, dropped as not finite
                diff = np.array([sa[s] - sb[s] for s in common], dtype=float)
            if pair and np.isfinite(diff).sum() >= MIN_SEEDS_FOR_CI:
                row.update(test="paired", **paired_difference(diff))
            else:
                row.update(test="welch", **welch_difference(xa, xb))
        rows.append(row)
    table = pd.DataFrame(rows, columns=[by, "present", "n_a", "n_b", "test", "pairs", "mean_a", "mean_b", "mean_diff",
                                        "diff_low", "diff_high", "p", "effect_size", "d_low", "d_high"])  # fmt: skip
    tested = table["p"].notna()
    table["p_holm"] = math.nan
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"].tolist())
    table["verdict"] = [verdict(row) if row["present"] == "both" else "not tested" for _, row in table.iterrows()]
    return table


def verdict(row: pd.Series) -> str:
    """'better' / 'worse' (lower is better) where the Holm-adjusted p is below ALPHA, else 'not
    distinguishable' (so too where every pair is identical); 'not tested' without a p-value."""
    mean_diff, p_holm = row["mean_diff"], row["p_holm"]
    if math.isnan(p_holm):
        # an interval exists only from MIN_SEEDS_FOR_CI pairs on: one of zero width at 0 is no difference at all
        identical = row["diff_low"] == row["diff_high"] == 0
        return "not distinguishable" if identical else "not tested"
    if p_holm < ALPHA:
        return "better" if mean_diff < 0 else "worse"
    return "not distinguishable"


def effect_size_ci(d: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of a one-sample (paired) standardized mean difference d = mean / sd over n values, by
    inverting the noncentral t distribution of t = d * sqrt(n) (Steiger & Fouladi 1997): the noncentrality
    parameters whose t distributions put the observed t at their upper and lower (1 - confidence) / 2
    quantiles, over sqrt(n). NaN where scipy's noncentral t cannot be evaluated that far out."""
    from scipy import optimize, special

    if n < 2 or not math.isfinite(d):
        return math.nan, math.nan
    if d < 0:  # the t distribution's symmetry: T(nc) = -T(-nc)
        low, high = effect_size_ci(-d, n, confidence)
        return -high, -low
    t, df, tail = d * math.sqrt(n), n - 1, (1 - confidence) / 2

    def cdf(nc: float) -> float:
        value = float(special.nctdtr(df, nc, t))
        if math.isfinite(value):
            return value
        # scipy's series fails far out for some arguments: the definition, T = (Z + nc) / sqrt(V / df) with
        # V chi-square(df), integrated over V: P(T <= t) = E[Phi(t * sqrt(V / df) - nc)]
        from scipy import integrate

        chi = sps.chi2(df)
        low, high = chi.ppf(1e-12), chi.ppf(1 - 1e-12)
        return float(integrate.quad(lambda v: special.ndtr(t * math.sqrt(v / df) - nc) * chi.pdf(v), low, high,
                                    limit=200)[0])  # fmt: skip

    def noncentrality(q: float) -> float:
        f = lambda nc: cdf(nc) - q  # noqa: E731 -- decreasing in nc
        lo, hi, step = t - 1.0, t + 1.0, 1.0
        while (v := f(lo)) < 0:
            lo, step = lo - step, step * 2
        step = 1.0
        while (v := f(hi)) > 0:
            hi, step = hi + step, step * 2
        if math.isnan(v):
            raise ValueError("noncentral t out of range")
        return optimize.brentq(f, lo, hi, xtol=1e-10)

    if t > 1e3:  # far out, Z is nothing beside nc: T = nc / sqrt(V / df), so nc = t * sqrt(V's quantile / df)
        return tuple(t * math.sqrt(float(sps.chi2.ppf(q, df)) / df) / math.sqrt(n) for q in (tail, 1 - tail))
    try:
        with np.errstate(all="ignore"):
            return noncentrality(1 - tail) / math.sqrt(n), noncentrality(tail) / math.sqrt(n)
    except (ValueError, RuntimeError):
        return math.nan, math.nan


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
    inf where the target was missed, NaN where the arm has no result on that workload (a pruned or
    interrupted run: no miss, no workload of that arm). r = t / best t of the workload; rho(tau) = share of
    the arm's workloads with r <= tau; the score is the area under rho from 1 to r_max, normalized to [0, 1]."""
    best = times.min(axis=1, skipna=True)
    ratios = times.div(best, axis=0).to_numpy(dtype=float)  # (workloads, arms); NaN: no workload
    counted = ~np.isnan(ratios)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = (ratios[None, :, :] <= np.asarray(taus)[:, None, None]).sum(axis=1)  # (taus, arms)
        shares = within / counted.sum(axis=0)[None, :]
    rho = pd.DataFrame(shares, index=taus, columns=times.columns)
    grid = taus[(taus >= 1) & (taus <= r_max)]
    scores = pd.Series({arm: float(np.trapezoid(rho.loc[grid, arm], grid) / (r_max - 1)) for arm in times.columns})
    return rho, scores


def compare_times(times: dict[str, Sequence[float]]) -> tuple[pd.DataFrame, float]:
    """Arms' times (to a target, in seconds) against the spread of each arm's own seeds, which differ in
    nothing a clock should see. Per arm: n, median, min, max. On log seconds (a loaded machine slows a run
    by a factor): Welch's one-way ANOVA (Alexander-Govern) over the arms with two or more timed seeds; where
    it separates them, each arm against the fastest by Welch's t-test, Holm-adjusted. Returns the table
    (verdict 'fastest', 'slower', 'within noise' or 'not tested') and the ANOVA's p (NaN where untestable)."""
    rows = []
    for arm, values in times.items():
        x = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], dtype=float)
        rows.append({"arm": arm, "n": len(x), "median": float(np.median(x)) if len(x) else math.nan,
                     "min": float(x.min()) if len(x) else math.nan, "max": float(x.max()) if len(x) else math.nan,
                     "p": math.nan, "p_holm": math.nan, "verdict": "not tested"})  # fmt: skip
    table = pd.DataFrame(rows, columns=["arm", "n", "median", "min", "max", "p", "p_holm", "verdict"])
    logs = {a: np.log([v for v in times[a] if v is not None and np.isfinite(v) and v > 0]) for a in times}
    # an arm needs a spread of its own to be tested against (clocks never repeat exactly; made-up times may)
    testable = [a for a in times if len(logs[a]) >= 2 and np.ptp(logs[a]) > 0]
    p_all = math.nan
    if len(testable) >= 2:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                p_all = float(sps.alexandergovern(*[logs[a] for a in testable]).pvalue)
            except (ValueError, ZeroDivisionError):
                p_all = math.nan
    if not testable:
        return table, p_all
    # the fastest of the arms with a spread to test (an arm that reached the target on one seed has none)
    medians = table[table["arm"].isin(testable)].set_index("arm")["median"]
    fastest = medians.idxmin()
    table.loc[table["arm"] == fastest, "verdict"] = "fastest"
    others = [a for a in testable if a != fastest]
    if math.isnan(p_all):
        return table, p_all
    if p_all >= ALPHA:
        table.loc[table["arm"].isin(others), "verdict"] = "within noise"
        return table, p_all
    ps = []
    for a in others:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(sps.ttest_ind(logs[a], logs[fastest], equal_var=False).pvalue)
        ps.append(p if math.isfinite(p) else 1.0)
    adjusted = holm(ps) if ps else []
    for a, p, q in zip(others, ps, adjusted, strict=True):
        idx = table["arm"] == a
        table.loc[idx, "p"], table.loc[idx, "p_holm"] = p, q
        table.loc[idx, "verdict"] = "slower" if q < ALPHA else "within noise"
    return table, p_all


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
