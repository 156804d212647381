import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from bench.stats import (
    MIN_SEEDS_FOR_CI,
    best_per_arm,
    effect_size_ci,
    holm,
    mean_ci,
    paired_comparisons,
    performance_profile,
    summarize,
)


def runs(spec):
    """{arm: [value per seed]} -> a results-like frame."""
    rows = [{"arm": arm, "seed": s, "status": "complete" if math.isfinite(v) else "diverged", "value": v}
            for arm, values in spec.items() for s, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max: 0.02, 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_interval_brackets_the_mean_and_needs_enough_finite_seeds():
    values = [1.0, 1.2, 0.9, 1.1, 1.05]
    lo, hi = mean_ci(values)
    assert lo < np.mean(values) < hi and (lo, hi) == mean_ci(values)
    reference = sps.ttest_1samp(values, 0.0).confidence_interval(0.95)  # the published computation
    assert (lo, hi) == pytest.approx((reference.low, reference.high), rel=1e-12)
    assert all(math.isnan(x) for x in mean_ci([1.0, 2.0]))  # too few seeds: no interval
    assert all(math.isnan(x) for x in mean_ci([1.0, 2.0, math.inf]))


@pytest.mark.parametrize("n", [MIN_SEEDS_FOR_CI, 5, 10])
def test_a_95_percent_interval_covers_the_mean_95_percent_of_the_time(n):
    # the threshold's evidence: a percentile bootstrap covered 75% at 3 seeds; t intervals hold at any n
    rng = np.random.default_rng(n)
    draws = rng.normal(1.5, 0.05, size=(2000, n))
    covered = np.mean([lo <= 1.5 <= hi for lo, hi in map(mean_ci, draws)])
    assert 0.93 <= covered <= 0.97, covered


def test_no_p_value_or_effect_size_below_the_threshold():
    frame = runs({"base": [1.0, 1.1], "other": [0.5, 0.62]})  # two seeds: d would be about -20
    row = paired_comparisons(frame, "base").iloc[0]
    assert row["pairs"] == 2 and row["mean_diff"] == pytest.approx(-0.49)
    assert math.isnan(row["p"]) and math.isnan(row["effect_size"]) and math.isnan(row["p_holm"])


def test_summary_ranks_with_ties_and_puts_diverged_last():
    table = summarize(runs({
        "a": [1.00, 1.01, 0.99, 1.00],
        "b": [1.002, 1.012, 0.992, 1.003],  # overlaps a
        "c": [2.0, 2.1, 1.9, 2.0],  # clearly worse
        "d": [1.0, math.inf, 1.0, 1.0],  # one seed diverged
    }))  # fmt: skip
    ranks = dict(zip(table["arm"], table["rank"], strict=True))
    assert ranks["a"] == ranks["b"] == 1 and ranks["c"] == 3
    assert table["arm"].iloc[-1] == "d" and math.isinf(table["mean"].iloc[-1]) and table["diverged"].iloc[-1] == 1
    assert table.set_index("arm").loc["a", "mean"] == pytest.approx(1.0)
    assert table["gap"].iloc[0] == 0


def test_paired_comparisons_use_matching_seeds():
    frame = runs({"base": [1.0, 1.1, 1.2, 1.3], "better": [0.9, 1.02, 1.08, 1.21], "same": [1.0, 1.1, 1.2, 1.3]})
    table = paired_comparisons(frame, "base").set_index("arm")
    diff = np.array([-0.1, -0.08, -0.12, -0.09])
    assert table.loc["better", "mean_diff"] == pytest.approx(diff.mean())
    expected = sps.ttest_rel([0.9, 1.02, 1.08, 1.21], [1.0, 1.1, 1.2, 1.3]).pvalue
    assert table.loc["better", "p"] == pytest.approx(expected)
    assert table.loc["better", "effect_size"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert math.isnan(table.loc["same", "p"])  # identical: no test
    assert table.loc["better", "p_holm"] == pytest.approx(table.loc["better", "p"])  # one test only


def test_best_per_arm_tunes_each_arm_separately():
    frame = runs({"o=a, lr=1": [1.0, 1.0], "o=a, lr=2": [0.8, 0.8], "o=b, lr=1": [0.7, 0.7], "o=b, lr=2": [0.9, 0.9]})
    tuned = best_per_arm(frame, frame["arm"].str[2])
    assert dict(zip(tuned["arm"], tuned["tuned_arm"], strict=True)) == {"a": "o=a, lr=2", "b": "o=b, lr=1"}


def test_performance_profile_algoperf():
    times = pd.DataFrame({"fast": [1.0, 2.0], "slow": [2.0, 4.0], "miss": [math.inf, 3.0]})
    taus = np.linspace(1, 4, 301)
    rho, scores = performance_profile(times, taus)
    assert rho.loc[1.0, "fast"] == 1.0 and scores["fast"] == pytest.approx(1.0)
    assert rho["slow"].iloc[-1] == 1.0 and rho.loc[1.0, "slow"] == 0.0
    assert scores["slow"] == pytest.approx(2 / 3, abs=0.01)  # ratio 2 on both seeds: rho = 1 from tau 2 to 4
    assert rho["miss"].iloc[-1] == 0.5  # the miss never counts


def test_arms_without_finished_runs_rank_last_and_are_not_tied():
    frame = runs({"a": [1.0], "b": [1.2]})
    frame = pd.concat([frame, pd.DataFrame([{"arm": "pruned", "seed": 0, "status": "pruned", "value": math.nan}])])
    table = summarize(frame).set_index("arm")
    assert table.loc["a", "rank"] == 1 and table.loc["b", "rank"] == 2 and table.loc["pruned", "rank"] == 3


@settings(max_examples=60, deadline=None, derandomize=True)
@given(arms=st.lists(st.lists(st.floats(0.5, 3.0, allow_nan=False), min_size=1, max_size=5), min_size=1, max_size=8))
def test_the_leaderboard_lists_ranks_in_order_with_the_best_mean_first(arms):
    rows = [
        {"arm": f"arm{i}", "seed": s, "status": "complete", "value": v}
        for i, values in enumerate(arms)
        for s, v in enumerate(values)
    ]
    table = summarize(pd.DataFrame(rows))
    assert list(table["rank"]) == sorted(table["rank"])
    assert table["mean"].iloc[0] == table["mean"].min() and table["gap"].iloc[0] == 0
    assert table["rank"].iloc[0] == 1


@pytest.mark.parametrize(("n", "delta"), [(3, 1.0), (5, 0.5), (10, 2.0)])
def test_the_effect_sizes_noncentral_t_interval_covers_the_true_d(n, delta):
    """The paired d is shown only with its interval; that interval covers the true d = mean / sd 93-97% of
    the time (2000 seeded draws of n normal differences)."""
    rng = np.random.default_rng(n)
    covered = []
    for x in rng.normal(delta, 1.0, size=(2000, n)):
        low, high = effect_size_ci(x.mean() / x.std(ddof=1), n)
        covered.append(low <= delta <= high)
    assert 0.93 <= np.mean(covered) <= 0.97, np.mean(covered)


@pytest.mark.parametrize("d", [-111.68, 400.0, 1000.0, 1e7])
def test_an_effect_size_far_out_still_gets_its_interval(d):
    """The walkthrough's d = -111.68 at 3 pairs, and differences nearly equal on every seed: scipy's
    noncentral t fails out there; the interval scales with d (T = nc / sqrt(V / df) once Z is negligible)."""
    low, high = effect_size_ci(d, 3)
    assert low < d < high and (high < 0 if d < 0 else low > 0)
    assert (low / d, high / d) == pytest.approx(sorted([0.1592, 1.9206], key=lambda r: r * d), rel=0.02)


def test_paired_rows_carry_the_differences_interval_and_a_verdict_by_holm():
    frame = runs({"base": [1.0, 1.1, 1.2, 1.3], "better": [0.9, 1.02, 1.08, 1.21], "same": [1.0, 1.1, 1.2, 1.3],
                  "noisy": [1.3, 0.9, 1.4, 1.0]})  # fmt: skip
    table = paired_comparisons(frame, "base").set_index("arm")
    diff = np.array([-0.1, -0.08, -0.12, -0.09])
    ci = sps.ttest_1samp(diff, 0.0).confidence_interval(0.95)
    assert (table.loc["better", "diff_low"], table.loc["better", "diff_high"]) == pytest.approx((ci.low, ci.high))
    assert table.loc["better", "verdict"] == "better"
    assert table.loc["same", "verdict"] == "not distinguishable"  # identical on every seed
    assert table.loc["noisy", "verdict"] == "not distinguishable"
    assert table.loc["better", "d_low"] < table.loc["better", "effect_size"] < table.loc["better", "d_high"]
    few = paired_comparisons(runs({"base": [1.0, 1.1], "other": [0.5, 0.6]}), "base").iloc[0]
    assert few["verdict"] == "not tested"


def test_a_run_with_no_result_is_no_workload_of_the_profile_not_a_miss():
    times = pd.DataFrame({"a": [1.0, 1.0, math.nan], "b": [2.0, math.inf, 2.0]})  # a's third run was pruned
    rho, scores = performance_profile(times, np.linspace(1, 4, 301))
    assert rho["a"].iloc[0] == 1.0 and scores["a"] == pytest.approx(1.0)  # 2 of 2 workloads, not 2 of 3
    assert rho["b"].iloc[-1] == pytest.approx(2 / 3)  # the miss counts
