"""bench.protocol: a tuned arm's grid grows past an edge where its best lies, is refined around its best, and
its chosen setting is confirmed on fresh seeds; checked against generated truth (loss curves with known
optima), without training."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.protocol import stages
from bench.registry import ConfigError
from bench.suite import Suite


def suite_of(lrs, extend=3, refine=1, seeds=(0, 1), confirm=3, optimizers=("adamw",), tune=("optimizer.lr",), **axes):
    return Suite.parse({
        "suite": {"name": "t", "seeds": list(seeds), "tune": list(tune), "tune_extend": extend, "tune_refine": refine,
                  "confirm_seeds": confirm},
        "base": {"model": "tiny", "steps": 20, "schedule": "constant"},
        "axes": {"optimizer": list(optimizers), "optimizer.lr": list(lrs), **axes},
    })  # fmt: skip


def settle(suite, loss, limit=40):
    """Run the protocol to its end, every run's result given by loss(run) as soon as it is asked for."""
    results = {}
    for _ in range(limit):
        found = stages(suite, results)
        new = [r for r in found.runs if r.hash not in results]
        if not new:
            return found, results
        for run in new:
            results[run.hash] = ("complete", loss(run))
    raise AssertionError("the protocol did not settle")


def bowl(optimum, width=1.0, noise=0.0):
    """A loss convex in log10(lr) with its minimum at `optimum`, plus a per-seed offset."""

    def loss(run):
        lr = run.config.optimizer["lr"]
        return 2.0 + ((math.log10(lr) - math.log10(optimum)) / width) ** 2 + noise * ((run.seed * 7919) % 13 - 6)

    return loss


GRID = [1e-4, 1e-3, 1e-2]  # a decade apart


@settings(max_examples=80, deadline=None)
@given(st.floats(-6.8, 0.8))
def test_the_chosen_rate_is_within_reach_of_the_true_optimum_or_flagged_at_an_edge(log_optimum):
    """Extended at most two decade steps past each edge (1e-6 to 1) and refined twice (to a quarter decade):
    an optimum inside that reach is found within a quarter decade, unflagged; one beyond it is flagged at the
    edge; one within half a step of the reach's last value may go either way, but never both."""
    suite = suite_of(GRID, extend=2, refine=2)
    found, _ = settle(suite, bowl(10**log_optimum))
    (tuning,) = found.arms.values()
    chosen = float(tuning.chosen["optimizer.lr"])
    flagged = "optimizer.lr" in tuning.edges
    if -5.5 <= log_optimum <= -0.5:
        assert not flagged
    elif log_optimum > 0 or log_optimum < -6:
        assert flagged and "2 step(s) past the declared grid (tune_extend = 2)" in tuning.edges["optimizer.lr"]
    if flagged:
        assert chosen in (1e-6, 1.0)  # the edge of what was tried, as the flag says
    else:
        assert abs(math.log10(chosen) - log_optimum) <= 0.25 + 1e-9
    added = [a.value for a in tuning.added]
    assert len(added) == len(set(added)) and not set(added) & set(GRID)  # nothing tried twice


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 4), st.sampled_from([(1e-6, 3), (1e-2, 1), (3.0, 3)]))
def test_an_optimum_past_the_grid_is_extended_toward_step_by_step(extend, case):
    """`needed`: the steps after which the optimum lies inside what was tried (1e-2 is the grid's edge: one
    step past it shows it is the best; 1e-6 and 3 lie two decades out: three steps)."""
    optimum, needed = case
    found, _ = settle(suite_of(GRID, extend=extend, refine=0), bowl(optimum))
    (tuning,) = found.arms.values()
    extensions = [a for a in tuning.added if a.why.startswith("extended past")]
    assert len(extensions) == min(extend, needed)
    assert ("optimizer.lr" in tuning.edges) == (extend < needed)
    side = "largest" if optimum > 1e-3 else "smallest"
    assert all(side in a.why for a in extensions)


def test_with_tune_extend_0_an_edge_is_flagged_and_nothing_added():
    found, _ = settle(suite_of(GRID, extend=0, refine=0), bowl(1.0))
    (tuning,) = found.arms.values()
    assert tuning.added == [] and "not extended (tune_extend = 0)" in tuning.edges["optimizer.lr"]
    assert "largest value tried, 0.01" in tuning.edges["optimizer.lr"]


def test_the_chosen_setting_is_confirmed_on_fresh_seeds_each_arm_its_own():
    suite = suite_of(GRID, seeds=(0, 1), confirm=3, optimizers=("adamw", "lion"))
    found, results = settle(suite, lambda run: bowl(3e-3 if run.config.optimizer.name == "adamw" else 1e-4)(run))
    assert suite.confirm_seeds == (2, 3, 4)
    for arm, tuning in found.arms.items():
        assert [r.seed for r in tuning.confirm] == [2, 3, 4] and all(r.stage == "confirm" for r in tuning.confirm)
        lrs = {r.config.optimizer["lr"] for r in tuning.confirm}
        assert lrs == {float(tuning.chosen["optimizer.lr"])} and arm in ("optimizer=adamw", "optimizer=lion")
        assert all(r.config.optimizer.name in arm for r in tuning.confirm)
    confirm = [r for r in found.runs if r.stage == "confirm"]
    assert len(confirm) == 6 and all(r.seed not in suite.seeds for r in confirm)


def test_nothing_is_added_before_an_arms_runs_have_settled():
    suite = suite_of(GRID)
    first = stages(suite, {})
    assert first.runs == suite.runs() and not any(t.settled for t in first.arms.values())
    partial = {r.hash: ("complete", 2.0) for r in suite.runs()[:-1]}
    assert stages(suite, partial).runs == suite.runs()  # one run left: the arm waits for it
    partial[suite.runs()[-1].hash] = ("running", None)
    assert stages(suite, partial).runs == suite.runs()


def test_a_failed_run_counts_as_infinitely_bad_and_the_protocol_goes_on():
    suite = suite_of(GRID, extend=1, refine=0)
    loss = bowl(1e-3)
    results = {}
    for _ in range(10):
        for run in stages(suite, results).runs:
            if run.hash not in results:
                failed = run.config.optimizer["lr"] == 1e-3 and run.seed == 1
                results[run.hash] = ("failed", None) if failed else ("complete", loss(run))
    (tuning,) = stages(suite, results).arms.values()
    assert tuning.settled and tuning.chosen["optimizer.lr"] != "0.001"  # its mean is infinite


def test_stages_are_the_same_computed_twice_and_in_any_order_of_results():
    suite = suite_of(GRID, optimizers=("adamw", "lion"))
    _, results = settle(suite, bowl(2e-2))
    reordered = dict(reversed(list(results.items())))
    assert [r.hash for r in stages(suite, results).runs] == [r.hash for r in stages(suite, reordered).runs]


def test_an_extension_stops_at_a_bound_of_the_setting_and_says_so():
    suite = Suite.parse({
        "suite": {"name": "m", "seeds": [0], "tune": ["optimizer.momentum"], "confirm_seeds": 1},
        "base": {"model": "tiny", "steps": 20, "schedule": "constant", "optimizer": "momentum"},
        "axes": {"optimizer.momentum": [0.5, 0.7, 0.9]},
    })  # fmt: skip
    found, _ = settle(suite, lambda run: 2.0 - run.config.optimizer["momentum"])  # more momentum is better
    (tuning,) = found.arms.values()
    assert tuning.added == []  # a linear step of 0.2 goes to 1.1, past momentum's bound
    assert (
        "1.1 cannot run" in tuning.edges["optimizer.momentum"] and "must be <= 1" in tuning.edges["optimizer.momentum"]
    )


def test_a_categorical_tuned_axis_is_chosen_and_confirmed_but_never_extended():
    suite = suite_of([1e-3], tune=("schedule",), schedule=["constant", "cosine", "linear"])
    found, _ = settle(suite, lambda run: {"constant": 2.2, "cosine": 2.0, "linear": 2.1}[run.config.schedule.name])
    (tuning,) = found.arms.values()
    assert tuning.added == [] and tuning.chosen == {"schedule": "cosine"} and not tuning.edges
    assert {r.config.schedule.name for r in tuning.confirm} == {"cosine"}


@pytest.mark.parametrize(
    ("confirm", "message"),
    [([1], "took no part in tuning"), ([5, 5], "each once"), (-1, "count of fresh seeds"), ("3", "count of fresh")],
)
def test_confirming_seeds_that_tuned_or_repeat_are_refused(confirm, message):
    with pytest.raises(ConfigError) as e:
        suite_of(GRID, confirm=confirm)
    assert e.value.key == "suite.confirm_seeds" and message in e.value.message


def test_a_suite_that_does_not_tune_has_no_stages():
    base = {"model": "tiny", "steps": 20, "schedule": "constant"}
    suite = Suite.parse({"suite": {"name": "n", "seeds": [0]}, "base": base, "axes": {"optimizer": ["adamw", "lion"]}})
    assert stages(suite, {}).runs == suite.runs() and suite.confirm_seeds == ()


def test_a_setting_is_stepped_on_its_parameters_scale_whatever_its_grids_span():
    """A learning rate grid of 1e-3 and 3e-3 was stepped linearly (it spans less than a decade): 5e-3 next;
    a learning rate's declared search range is log, so its next value is 9e-3."""
    found, _ = settle(suite_of([1e-3, 3e-3], extend=1, refine=0), bowl(1.0))
    (tuning,) = found.arms.values()
    assert [a.value for a in tuning.added] == [0.009]
    warmups = Suite.parse({
        "suite": {"name": "w", "seeds": [0], "tune": ["schedule.warmup"], "tune_extend": 1, "tune_refine": 0},
        "base": {"model": "tiny", "steps": 400, "schedule": {"name": "cosine"}},
        "axes": {"schedule.warmup": [10, 100]},
    })  # fmt: skip
    found, _ = settle(warmups, lambda run: -run.config.schedule["warmup"])  # longer is better
    (tuning,) = found.arms.values()
    assert [a.value for a in tuning.added] == [190]  # a warmup's range is linear: 100 + 90


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1e-6, 10.0), min_size=1, max_size=8, unique=True), st.data())
def test_an_edge_is_named_exactly_when_the_value_is_the_grids_smallest_or_largest(grid, data):
    from bench.protocol import edge_of

    value = data.draw(st.sampled_from(grid))
    edge = edge_of(grid, value)
    if len(grid) < 2:
        assert edge is None
    elif value == max(grid):
        assert edge == ("largest", len(grid))
    elif value == min(grid):
        assert edge == ("smallest", len(grid))
    else:
        assert edge is None  # no flag on an interior value
    assert edge_of(["constant", "cosine"], "cosine") is None  # a categorical setting has no edge


def test_every_runs_parameters_lie_in_one_distribution_per_name_added_values_included():
    """Values the protocol adds lay outside the axis's range (and a tuned rate inside an optimizer's table
    made labels no categorical held): one distribution per parameter name, every run's value inside it."""
    from bench.protocol import run_params

    inner = Suite.parse({
        "suite": {"name": "i", "seeds": [0], "tune": ["optimizer.lr"], "tune_extend": 2},
        "base": {"model": "tiny", "steps": 20, "schedule": "constant"},
        "axes": {"optimizer": [{"name": "adamw", "lr": lr} for lr in GRID] + [{"name": "lion", "lr": 1e-4}]},
    })  # fmt: skip
    for suite, optimum in ((suite_of(GRID, extend=2), 1.0), (suite_of(GRID, extend=2), 1e-6), (inner, 3.0)):
        found, _ = settle(suite, bowl(optimum))
        assert any(r.stage == "tune" for r in found.runs)
        held = {}
        for run in found.runs:
            for name, (value, dist) in run_params(suite, run).items():
                assert held.setdefault(name, dist) == dist, name
                assert dist._contains(dist.to_internal_repr(value)), (name, value, dist)
    assert set(run_params(inner, found.runs[0])) == {"optimizer", "optimizer.lr"}


def test_refinement_stops_at_its_level_though_new_values_are_rounded():
    """1e-3 and 3e-3 refined once: the midpoint 0.00173 (rounded from 0.0017320...) is 1.7341 from 3e-3, a
    hair over the finest gap of sqrt(3); it was refined again, one level more than tune_refine = 1 asks."""
    found, _ = settle(suite_of([1e-3, 3e-3, 9e-3], extend=0, refine=1), bowl(3e-3))
    (tuning,) = found.arms.values()
    assert sorted(a.value for a in tuning.added) == [0.00173, 0.0052]
