import json
import os
import signal
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from processes import children, logs, optbench, running_trials, wait_until_gone

from bench.cli import main
from bench.config import RunConfig
from bench.registry import ConfigError
from bench.runfile import load_run_config
from bench.search import (
    PRUNERS,
    REDUCTION_FACTOR,
    SAMPLERS,
    SearchPlan,
    best_config,
    make_pruner,
    make_sampler,
    recipe_toml,
    run_search,
)
from bench.space import parse_space
from bench.store import Store
from bench.suite import Suite

SUITE = """[suite]
name = "NAME"
seeds = [0]
[base]
model = "tiny"
data = { name = "synthetic", alphabet = 8, order = 2, length = 20000 }
steps = 60
eval_interval = 20
eval_batches = 2
batch_size = 4
schedule = { name = "constant" }
[search]
SEARCH
"""
SPACE = """optimizer = ["adamw", "momentum", "lion"]
"schedule.warmup" = { low = 0, high = 10, type = "int" }"""


def write(tmp_path, name="s", search=SPACE):
    path = tmp_path / f"{name}.toml"
    path.write_text(SUITE.replace("NAME", name).replace("SEARCH", search))
    return path


def plan(path, storage, **kw):
    return SearchPlan(str(path), {}, storage, **{"trials": 4, **kw})


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "qmc"])
def test_each_sampler_is_wired(tmp_path, sampler):
    path = write(tmp_path, f"samp_{sampler}")
    storage = str(tmp_path / "s.journal")
    ((name, study),) = run_search(plan(path, storage, sampler=sampler, trials=3, pruner="none"))
    expected = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "qmc": "QMCSampler"}[sampler]
    suite = Suite.load(path)
    assert type(make_sampler(sampler, 0, parse_space(suite.search, suite.base))).__name__ == expected
    assert study.user_attrs["search"]["sampler"] == sampler
    assert len([t for t in study.trials if t.state.is_finished()]) == 3


def test_grid_sampler_needs_explicit_lists(tmp_path, capsys):
    path = write(tmp_path, "grid", "optimizer.lr = [1e-3, 3e-3]\nbatch_size = [4, 8]")
    ((_, study),) = run_search(plan(path, str(tmp_path / "g.journal"), sampler="grid", pruner="none"))
    assert {(t.params["optimizer.lr"], t.params["batch_size"]) for t in study.trials} == {
        (1e-3, 4), (1e-3, 8), (3e-3, 4), (3e-3, 8)}  # fmt: skip
    assert main(["search", str(write(tmp_path, "grid2")), "--sampler", "grid"]) == 2
    assert "grid needs" in capsys.readouterr().err


@pytest.mark.parametrize(("pruner", "cls"), [("none", "NopPruner"), ("median", "MedianPruner"),
                                             ("successive_halving", "SuccessiveHalvingPruner"),
                                             ("hyperband", "HyperbandPruner")])  # fmt: skip
def test_each_pruner_is_wired(tmp_path, pruner, cls):
    path = write(tmp_path, f"prune_{pruner}")
    ((_, study),) = run_search(plan(path, str(tmp_path / "p.journal"), pruner=pruner, trials=2, sampler="random"))
    assert type(make_pruner(pruner, Suite.load(path).base)).__name__ == cls
    assert study.user_attrs["search"]["pruner"] == pruner and len(study.trials) == 2


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=12).filter(lambda n: n not in SAMPLERS and n not in PRUNERS))
def test_unknown_sampler_or_pruner_names_fail_instead_of_falling_through(name):
    # before: make_sampler returned a GridSampler and make_pruner a HyperbandPruner for any other name
    base = Suite.parse({"suite": {"name": "u"}, "base": {"model": "tiny", "steps": 100, "schedule": "constant"}}).base
    space = parse_space({"batch_size": [4, 8]}, base)
    for key, allowed, make in (("--sampler", SAMPLERS, lambda: make_sampler(name, 0, space)),
                               ("--pruner", PRUNERS, lambda: make_pruner(name, base))):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            make()
        assert e.value.key == key and f"allowed: {', '.join(allowed)}" in e.value.message


@pytest.mark.parametrize(("flag", "value"), [("sampler", "tpee"), ("pruner", "hyperbands")])
def test_unknown_sampler_or_pruner_in_a_plan_exits_before_writing(tmp_path, capsys, flag, value):
    storage = tmp_path / "u.journal"
    with pytest.raises(ConfigError, match=f"--{flag}"):
        run_search(plan(write(tmp_path, "u"), str(storage), **{flag: value}))
    assert not storage.exists()
    assert main(["search", str(write(tmp_path, "u2")), f"--{flag}", value, "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--{flag}" in err[0] and "allowed:" in err[0] and not storage.exists()


def test_reduction_factor_reaches_the_pruner_and_the_help_states_its_default(capsys):
    base = Suite.parse({"suite": {"name": "rf"}, "base": {"model": "tiny", "steps": 100, "schedule": "constant"}}).base
    assert make_pruner("hyperband", base)._reduction_factor == REDUCTION_FACTOR
    assert make_pruner("successive_halving", base, 3)._reduction_factor == 3
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert f"(default {REDUCTION_FACTOR})" in " ".join(capsys.readouterr().out.split())


def test_pruned_trials_are_stored_with_their_step(tmp_path):
    path = write(tmp_path, "pruned")
    storage = str(tmp_path / "p.journal")
    ((_, study),) = run_search(plan(path, storage, pruner="successive_halving", trials=10, sampler="random"))
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned
    for t in pruned:
        assert t.user_attrs["status"] == "pruned"
        assert t.user_attrs["status_step"] == max(t.intermediate_values) < 60
        assert t.user_attrs["steps"] == t.user_attrs["status_step"]
    from bench.store import load_results

    frame = load_results(study.study_name, storage)
    assert set(frame["status"]) <= {"complete", "pruned", "diverged"}  # (a sampled high rate may diverge)
    assert (frame["status"] == "pruned").sum() == len(pruned)


def test_export_round_trips_to_the_same_run(tmp_path, capsys):
    path = write(tmp_path, "export")
    out = tmp_path / "best.toml"
    assert main(["search", str(path), "--trials", "3", "--pruner", "none", "--export", str(out), "--no-report",
                 "--storage", str(tmp_path / "e.journal")]) == 0  # fmt: skip
    study = optuna.load_study(study_name="export.search", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "e.journal"))))  # fmt: skip
    best = study.best_trial
    cfg = load_run_config(str(out), None)
    assert cfg.hash == best.user_attrs["run_hash"]
    from bench.train import train

    assert train(cfg).final_val_loss == pytest.approx(best.value)  # the exported file trains the same run


def test_export_of_a_class_path_optimizer_with_parameters_left_at_none_round_trips(tmp_path, capsys):
    """pytorch_optimizer.AdaBelief's constructor has arguments defaulting to None, which TOML cannot write."""
    path = write(tmp_path, "cp", '"optimizer.lr" = { low = 1e-4, high = 1e-2, log = true }')
    path.write_text(path.read_text().replace('model = "tiny"', 'model = "tiny"\noptimizer = { class_path = '
                                             '"pytorch_optimizer.AdaBelief", lr = 1e-3 }'))  # fmt: skip
    out = tmp_path / "best.toml"
    assert main(["search", str(path), "--trials", "2", "--pruner", "none", "--export", str(out), "--no-report",
                 "--storage", str(tmp_path / "cp.journal")]) == 0  # fmt: skip
    study = optuna.load_study(study_name="cp.search", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "cp.journal"))))  # fmt: skip
    assert None in best_config(study).optimizer.params.values()  # the case this test is about
    assert load_run_config(str(out), None).hash == study.best_trial.user_attrs["run_hash"]


def test_per_arm_budgets_are_equal(tmp_path, capsys):
    path = write(tmp_path, "arms")
    storage = str(tmp_path / "a.journal")
    studies = run_search(plan(path, storage, per_arm="optimizer", trials=3, pruner="none", sampler="random"))
    assert [name for name, _ in studies] == ["arms.search.adamw", "arms.search.momentum", "arms.search.lion"]
    for name, study in studies:
        finished = [t for t in study.trials if t.state.is_finished()]
        assert len(finished) == 3
        assert {t.params["optimizer.name"] for t in finished} == {name.rsplit(".", 1)[1]}


def test_multi_objective_reports_a_pareto_front(tmp_path, capsys):
    path = write(tmp_path, "multi")
    assert main(["search", str(path), "--trials", "4", "--objectives", "val_loss,train_time",
                 "--storage", str(tmp_path / "m.journal")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Pareto front (val_loss, train_time)" in out
    html = (tmp_path / "reports" / "multi.html").read_text()
    search_section = html.split('<section id="search">', 1)[1].split("</section>", 1)[0]
    assert "4 trials: 4 complete." in search_section and "A Pareto front of val_loss, train_time" in search_section
    assert "multi-objective, no pruner" in html and "hyperband pruner" not in html  # never pruned: not said so


@settings(max_examples=60, deadline=None)
@given(
    budget=st.sampled_from(["steps", "tokens", "both"]),
    steps=st.integers(1, 5000),
    batch_size=st.integers(1, 32),
    grad_accum=st.integers(1, 4),
    optimizer=st.sampled_from(["adamw", "lion", "muon", "sgd"]),
    regularization=st.sampled_from([{}, {"dropout": {"p": 0.1}}, {"ema": {"decay": 0.9}, "z_loss": {}}]),
)
def test_recipe_reads_back_as_the_same_run(budget, steps, batch_size, grad_accum, optimizer, regularization):
    """An exported recipe trains the same run (same hash), and never reads as two budgets."""
    import tomllib

    values = {"model": "tiny", "batch_size": batch_size, "grad_accum": grad_accum, "optimizer": optimizer,
              "regularization": regularization, "schedule": {"name": "cosine", "warmup": 0}}  # fmt: skip
    if budget in ("steps", "both"):
        values["steps"] = steps
    if budget in ("tokens", "both"):
        values["tokens"] = steps * batch_size * grad_accum * 64 + 7  # not a whole number of steps
    cfg = RunConfig.build(values)
    text = recipe_toml(cfg)
    assert RunConfig.build(tomllib.loads(text)["base"]).hash == cfg.hash
    steps_line = next(line for line in text.splitlines() if line.startswith("steps = "))
    if budget == "steps":
        assert "#" not in steps_line
    else:
        assert f"ignored: tokens sets the budget ({cfg.total_steps} steps" in steps_line
        assert cfg.total_steps == steps


def test_a_recipe_of_awkward_values_round_trips():
    import tomllib

    cfg = RunConfig.build({"model": "tiny", "data": {"name": "text", "path": 'a "b"\\c.txt'},
                           "regularization": {"ema": {"decay": 0.9}, "dropout": {}}, "target": None})  # fmt: skip
    parsed = tomllib.loads(recipe_toml(cfg))["base"]
    assert RunConfig.build(parsed).hash == cfg.hash and parsed["data"]["path"] == 'a "b"\\c.txt'


@pytest.mark.parametrize(
    ("args", "search", "expected"),
    [
        (["--sampler", "bayes"], SPACE, "unknown value 'bayes'"),
        (["--pruner", "asha"], SPACE, "unknown value 'asha'"),
        (["--objectives", "accuracy"], SPACE, "unknown objective"),
        (["--trials", "0"], SPACE, "--trials"),
        ([], '"optimizer.lr" = { low = 1e-2, high = 1e-3 }', "low < high"),
        ([], '"optimizer.lr" = { low = 0, high = 1e-3, log = true }', "> 0 on a log scale"),
        ([], 'optimizer = ["adamw", "adamz"]', "unknown optimizer 'adamz'"),
        ([], '"optimizer.lr" = [-1.0]', "must be > 0"),
        ([], 'batch_size = { low = 1, high = inf, type = "int" }', "finite numbers low < high"),
        ([], 'batch_size = { low = nan, high = 4, type = "int" }', "finite numbers low < high"),
        ([], 'batch_size = { low = 0.5, high = 4.5, type = "int" }', "whole numbers"),
        ([], '"optimizer.lr" = { low = 1e-4, high = 1e-2, log = "no" }', "'search.optimizer.lr.log'"),
        ([], '"optimizer.lr" = { low = 1e-4, high = 1e-2, type = 1 }', "'search.optimizer.lr.type'"),
        (["--per-arm", "init"], SPACE, "--per-arm"),
        (["--reduction-factor", "1"], SPACE, "--reduction-factor"),
    ],
)
def test_bad_search_input_exits_2(tmp_path, capsys, args, search, expected):
    path = write(tmp_path, "bad", search)
    assert main(["search", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "\n" not in err.strip()
    assert not (tmp_path / "results").exists()


def test_search_writes_a_report_with_optunas_plots(tmp_path, capsys):
    path = write(tmp_path, "reported")
    assert (
        main(["search", str(path), "--trials", "4", "--pruner", "none", "--storage", str(tmp_path / "r.journal")]) == 0
    )
    html = (tmp_path / "reports" / "reported.html").read_text()
    search_section = html.split('<section id="search">', 1)[1].split("</section>", 1)[0]
    assert "Optimization history" in search_section and "data:image/png;base64," in search_section
    assert "Best trial: " in html  # the trials are the report's runs, a search's headline names a trial
    assert "4 trials: 4 complete." in search_section  # the search's own count, whatever the report's runs are


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_a_stop_ends_a_search_and_its_workers_in_one_line(tmp_path, stop):
    """Ctrl-C reaches the whole process group (a terminal's), SIGTERM only the search: either way the
    running trials are stored as stopped and the user reads one line, not Optuna's tracebacks."""
    path = tmp_path / "term.toml"
    path.write_text(SUITE.replace("NAME", "term").replace("steps = 60", "steps = 3000").replace("SEARCH", SPACE))
    storage = str(tmp_path / "t.journal")
    proc = optbench("search", str(path), "--trials", "6", "--workers", "2", "--pruner", "none", "--storage", storage,
                    "--no-report", log=tmp_path / "search.log")  # fmt: skip
    running_trials(storage, "term.search", 2)
    workers = children(proc.pid)
    assert len(workers) >= 2
    if stop == "sigterm":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130, logs(tmp_path)
    assert wait_until_gone(workers) == []
    study = optuna.load_study(study_name="term.search", storage=Store.open(storage).storage)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert optuna.trial.TrialState.RUNNING not in states and states.count(optuna.trial.TrialState.FAIL) == 2
    said = [line for line in (tmp_path / "search.log").read_text().splitlines() if not line.startswith("term")]
    assert said == ["optbench: interrupted; finished runs are kept, the same command resumes"], said


def test_search_progress_reaches_a_stderr_that_is_not_a_terminal(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, "progress")
    env = {**os.environ, "OPTBENCH_PROGRESS_INTERVAL": "0"}
    log = tmp_path / "search.log"
    with open(log, "w") as stderr:
        subprocess.run([sys.executable, "-m", "bench", "search", str(path), "--trials", "3", "--workers", "1",
                        "--pruner", "none", "--no-report"], stderr=stderr, stdout=subprocess.DEVNULL, env=env,
                       check=True, timeout=300)  # fmt: skip
    lines = log.read_text().splitlines()
    assert any(line.startswith("progress.search: 3/3, pruned 0, best ") for line in lines), lines


@pytest.mark.parametrize("workers", [1, 2])
def test_a_search_resumed_at_its_trial_count_runs_nothing_more(tmp_path, workers):
    path = write(tmp_path, f"resumed{workers}")
    storage = str(tmp_path / "r.journal")
    ((_, study),) = run_search(plan(path, storage, trials=3, sampler="random", workers=workers))
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    first = len(study.get_trials(states=done))
    assert first == 3 == len(study.get_trials())  # exactly the budget, however many workers race for it
    ((_, again),) = run_search(plan(path, storage, trials=3, sampler="random", workers=workers))
    assert len(again.get_trials()) == len(study.get_trials())  # not one trial more
    ((_, more),) = run_search(plan(path, storage, trials=first + 2, sampler="random", workers=1))
    assert len(more.get_trials(states=done)) == first + 2
    hashes = [t.user_attrs["run_hash"] for t in more.get_trials(states=done)]
    assert len(set(hashes)) == len(hashes)  # resumed, the seeded sampler samples afresh, not its first points again


@pytest.mark.parametrize(("trials", "sampler"), [(5, "random"), (4, "tpe"), (7, "grid")])
def test_workers_together_run_exactly_the_budget(tmp_path, trials, sampler):
    """Two workers racing for the last trial: Optuna's own loop let each start one past --trials."""
    space = "optimizer.lr = [1e-3, 3e-3, 1e-2]\nbatch_size = [4, 8]" if sampler == "grid" else SPACE
    path = write(tmp_path, f"exact{sampler}", space)
    storage = str(tmp_path / "x.journal")
    ((_, study),) = run_search(plan(path, storage, trials=trials, sampler=sampler, workers=2, pruner="none"))
    assert len(study.get_trials()) == (min(trials, 6) if sampler == "grid" else trials)  # a grid: each point once
    if sampler == "grid":
        assert len({tuple(sorted(t.params.items())) for t in study.get_trials()}) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials())


def test_a_trial_of_several_seeds_reads_as_a_row_per_seed(tmp_path, capsys):
    """A new user's search with seeds = [0, 1, 2] read as one seed-0 run: its value a mean beside seed 0's
    losses, '1 seed(s)' in the report, and an export that trained to another number than the one printed."""
    import tomllib

    from bench.report import header
    from bench.store import load_results

    path = write(tmp_path, "seeded", '"optimizer.lr" = { low = 1e-4, high = 1e-2, log = true }')
    path.write_text(path.read_text().replace("seeds = [0]", "seeds = [0, 1, 2]"))
    storage, out = str(tmp_path / "s.journal"), tmp_path / "best.toml"
    assert main(["search", str(path), "--trials", "2", "--pruner", "none", "--export", str(out), "--no-report",
                 "--storage", storage]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    frame = load_results("seeded.search", storage)
    assert len(frame) == 6 and sorted(frame["seed"]) == [0, 0, 1, 1, 2, 2]
    assert frame["run_hash"].nunique() == 6
    for _, row in frame.iterrows():
        assert RunConfig.from_dict(json.loads(row["config"])).hash == row["run_hash"]  # each row: that seed's run
        assert row["value"] == pytest.approx(row["final_val_loss"])  # the objective of that seed
    for _, trial in frame.groupby("trial"):
        assert trial["value"].mean() == pytest.approx(trial["trial_value"].iloc[0])  # what the sampler saw
    assert header(frame)["seeds"] == 3
    best = frame.loc[frame["trial_value"].idxmin()]
    assert "mean over seeds 0, 1, 2" in printed and "mean over seeds 0, 1, 2" in out.read_text().splitlines()[0]
    exported = RunConfig.from_dict(tomllib.loads(out.read_text())["base"])
    seed0 = frame[(frame["trial"] == best["trial"]) & (frame["seed"] == 0)].iloc[0]
    assert exported.hash == seed0["run_hash"]


def test_a_per_arm_search_is_in_the_report_arm_by_arm(tmp_path, capsys):
    """The report looked for `<suite>.search` alone: a --per-arm search's studies never showed."""
    path = write(tmp_path, "perarm")
    assert main(["search", str(path), "--per-arm", "optimizer", "--trials", "2", "--pruner", "none",
                 "--storage", str(tmp_path / "p.journal")]) == 0  # fmt: skip
    html = (tmp_path / "reports" / "perarm.html").read_text()
    search_section = html.split('<section id="search">', 1)[1].split("</section>", 1)[0]
    for arm in ("adamw", "momentum", "lion"):
        assert f"{arm}: 2 trials: 2 complete." in search_section
        assert f'alt="{arm}: Optimization history"' in search_section
    leaderboard = html.split('<section id="leaderboard">', 1)[1].split("</section>", 1)[0]
    assert all(arm in leaderboard for arm in ("adamw", "momentum", "lion"))  # every arm's trials are runs


def test_importances_leave_out_what_every_trial_set_alike(tmp_path, capsys):
    """A per-arm study's pinned arm showed as a parameter of importance < 0.01 in its plot."""
    from bench.stats import param_importances as importances

    path = write(tmp_path, "pinned", '"optimizer.lr" = { low = 1e-4, high = 1e-2, log = true }\nbatch_size = [4, 8]')
    path.write_text(path.read_text().replace("[search]", '[search]\noptimizer = ["adamw", "lion"]'))
    studies = run_search(plan(path, str(tmp_path / "i.journal"), per_arm="optimizer", trials=4, pruner="none",
                              sampler="random"))  # fmt: skip
    for _, study in studies:
        found = importances(study)
        assert "optimizer.lr" in found and "batch_size" in found and "optimizer.name" not in found


def test_two_searches_started_together_sample_apart(tmp_path):
    """Every machine runs the same command: two searches started at the same moment drew the same points
    (their samplers had the same seed) and trained each twice."""
    path = write(tmp_path, "together")
    storage = str(tmp_path / "t.journal")
    args = ("search", str(path), "--trials", "6", "--workers", "1", "--pruner", "none", "--sampler", "random",
            "--storage", storage, "--no-report")  # fmt: skip
    procs = [optbench(*args, log=tmp_path / f"s{i}.log") for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], logs(tmp_path)
    study = optuna.load_study(study_name="together.search", storage=Store.open(storage).storage)
    hashes = [t.user_attrs["run_hash"] for t in study.get_trials()]
    assert len(hashes) == 6 and len(set(hashes)) == 6


def test_a_resumed_grid_takes_its_interrupted_points_again_and_none_twice(tmp_path):
    """Optuna's grid sampler counted an interrupted point as visited, then trained another point again."""
    from optuna.distributions import CategoricalDistribution

    path = write(tmp_path, "regrid", "optimizer.lr = [1e-3, 3e-3, 1e-2]\nbatch_size = [4, 8]")
    storage = str(tmp_path / "g.journal")
    ((_, study),) = run_search(plan(path, storage, trials=2, sampler="grid", pruner="none"))
    done = {(t.params["optimizer.lr"], t.params["batch_size"]) for t in study.get_trials()}
    lost = next((lr, b) for lr in (1e-3, 3e-3, 1e-2) for b in (4, 8) if (lr, b) not in done)
    study.add_trial(optuna.trial.create_trial(  # a point whose trial was interrupted
        state=optuna.trial.TrialState.FAIL, params={"optimizer.lr": lost[0], "batch_size": lost[1]},
        distributions={"optimizer.lr": CategoricalDistribution([1e-3, 3e-3, 1e-2]),
                       "batch_size": CategoricalDistribution([4, 8])}))  # fmt: skip
    ((_, study),) = run_search(plan(path, storage, trials=6, sampler="grid", pruner="none", workers=2))
    finished = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    points = [(t.params["optimizer.lr"], t.params["batch_size"]) for t in finished]
    assert len(points) == 6 and len(set(points)) == 6 and lost in points


def test_a_search_short_of_its_budget_says_who_holds_the_rest(tmp_path, capsys):
    """A trial held by a worker on another host counts toward --trials: the search ended short, silently."""
    path = write(tmp_path, "held")
    storage = str(tmp_path / "h.journal")
    study = Store.open(storage).study("held.search")
    held = study.ask()
    held.set_user_attr("worker", {"host": "elsewhere", "pid": 4242, "started": "x"})
    ((_, study),) = run_search(plan(path, storage, trials=2, sampler="random", pruner="none"))
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 1
    err = capsys.readouterr().err
    assert "held.search: 1 of 2 trials finished; 1 running elsewhere (elsewhere:4242) count toward --trials" in err


# -- one run path: the search's defects that lived in its own copy of the run path ---------------------------


def test_a_search_whose_objectives_differ_from_its_study_exits_2_before_training(tmp_path, capsys):
    """Both workers trained a trial, then died (`The number of the values 2 did not match the number of the
    objectives 1`), exit 0, their trials left RUNNING."""
    path = write(tmp_path, "objectives")
    storage = str(tmp_path / "o.journal")
    assert main(["search", str(path), "--trials", "1", "--no-report", "--storage", storage]) == 0
    before = Path(storage).read_bytes()
    capsys.readouterr()
    code = main(["search", str(path), "--trials", "3", "--objectives", "val_loss,train_time", "--no-report",
                 "--storage", storage])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "study 'objectives.search' was searched for val_loss, not val_loss,train_time" in err
    assert "--objectives val_loss" in err and "optuna delete-study" in err and "\n" not in err.strip()
    assert Path(storage).read_bytes() == before  # nothing trained, nothing written


def test_a_search_over_other_choices_than_its_study_exits_2(tmp_path, capsys):
    path = write(tmp_path, "space")
    storage = str(tmp_path / "s.journal")
    assert main(["search", str(path), "--trials", "1", "--no-report", "--pruner", "none", "--storage", storage]) == 0
    path.write_text(path.read_text().replace('"adamw", "momentum", "lion"', '"adamw", "lion"'))
    capsys.readouterr()
    assert main(["search", str(path), "--trials", "2", "--no-report", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert "search.optimizer.name" in err and "one study holds one space" in err


def test_a_pruner_with_several_objectives_is_refused_and_export_takes_the_first_objectives_best(tmp_path, capsys):
    """--pruner hyperband was dropped silently, and --export wrote nothing and said nothing (exit 0)."""
    path = write(tmp_path, "pareto")
    storage = str(tmp_path / "p.journal")
    multi = ["--objectives", "val_loss,train_time", "--no-report", "--storage", storage]
    assert main(["search", str(path), "--trials", "3", "--pruner", "hyperband", *multi]) == 2
    assert "cannot prune" in capsys.readouterr().err and not Path(storage).exists()
    out = tmp_path / "best.toml"
    assert main(["search", str(path), "--trials", "3", "--export", str(out), *multi]) == 0
    study = Store.open(storage).existing_study("pareto.search")
    first = min(study.best_trials, key=lambda t: t.values[0])
    assert load_run_config(str(out), None).hash == first.user_attrs["run_hash"]
    assert f"best in val_loss: trial {first.number}" in capsys.readouterr().out


def test_class_path_choices_search_per_arm_with_readable_studies_and_no_warnings(tmp_path, capsys):
    """A class_path optimizer in a [search] list: the importance plot raised `unhashable type: 'dict'`, one
    study was named `...search.{'class_path': ...}`, and every later command warned about its choices."""
    pytest.importorskip("pytorch_optimizer")
    space = 'optimizer = ["adamw", { class_path = "pytorch_optimizer.Lamb", lr = 3e-3 }]\nbatch_size = [4, 8]'
    path = write(tmp_path, "third", space)
    storage = str(tmp_path / "t.journal")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's "Choices for a categorical distribution should be ..." fails it
        assert main(["search", str(path), "--trials", "3", "--per-arm", "optimizer", "--pruner", "none",
                     "--storage", storage]) == 0  # fmt: skip
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(Store.open(storage).storage))
        assert main(["doctor", "--storage", storage]) == 0
    from bench.labels import label

    lamb = label({"class_path": "pytorch_optimizer.Lamb", "lr": 3e-3})
    assert names == sorted(["third.search.adamw", f"third.search.{lamb}"]) and "{'" not in "".join(names)
    study = Store.open(storage).existing_study(f"third.search.{lamb}")
    cfg = best_config(study)
    assert cfg.optimizer["class_path"] == "pytorch_optimizer.Lamb" and cfg.optimizer["lr"] == 3e-3
    html = (tmp_path / "reports" / "third.html").read_text()
    assert f"{lamb}: 3 trials: 3 complete." in html


def test_the_exported_recipe_reproduces_its_trials_number_exactly(tmp_path, capsys):
    """The search ran 1 thread per worker and the export left `threads` out: `optbench train best.toml` ran
    at 2 threads and gave 2.469797 for a trial of 2.468898, with the same run hash."""
    path = write(tmp_path, "exact")
    out = tmp_path / "best.toml"
    storage = str(tmp_path / "x.journal")
    assert main(["search", str(path), "--trials", "2", "--workers", "2", "--pruner", "none", "--export", str(out),
                 "--no-report", "--storage", storage]) == 0  # fmt: skip
    best = Store.open(storage).existing_study("exact.search").best_trial
    cfg = load_run_config(str(out), None)
    assert cfg.threads == best.user_attrs["env"]["threads"] == 1
    from bench.train import train

    assert train(cfg).final_val_loss == best.value  # exactly: same run, same threads


def test_a_search_trial_is_claimed_in_one_write_and_its_parameters_are_what_it_sampled(tmp_path):
    """The search claimed with study.ask() and then set_user_attr: two writes, a kill between them left a
    claim nobody could identify. Its parameters are the sampled fields alone."""
    from bench.search import Arm, SearchPlan, open_studies

    path = write(tmp_path, "claimed")
    storage = str(tmp_path / "c.journal")
    plan = SearchPlan(str(path), {}, storage, trials=2, sampler="random")
    arm = Arm(plan, "claimed.search", {})
    open_studies(plan, Store.open(storage), [arm])
    work = arm.open()
    lines = Path(storage).read_bytes().count(b"\n")
    with work.store.claim_lock(work.lock_key):
        job = work.claim()
    claim = Path(storage).read_bytes().splitlines()[lines]  # the first record after the study's own
    assert b'"worker"' in claim and b'"op_code":4' in claim
    trial = work.study.get_trials()[0]
    assert trial.user_attrs["worker"] and set(trial.params) == set(job.context) == {
        "optimizer.name", f"optimizer.{job.context['optimizer.name']}.lr",
        f"optimizer.{job.context['optimizer.name']}.weight_decay", "schedule.warmup",
    } | ({"optimizer.momentum.momentum"} if job.context["optimizer.name"] == "momentum" else set())  # fmt: skip


def test_a_progress_display_cannot_prune_a_run(tiny):
    """The pruner rode on the progress display (`Progress.evaluated` returning True stopped a run); a
    display only displays, and the pruner is an after-evaluation hook."""
    from bench.train import train

    class Pushy:
        def start(self, cfg, total): ...
        def update(self, step, loss): ...
        def evaluated(self, step, val):
            return True

        def finish(self, record): ...

    assert train(tiny(), Pushy()).status == "complete"
    assert train(tiny(), hooks=[lambda step, val: "pruned" if step == 10 else None]).status == "pruned"


def test_doctor_names_running_search_trials_whose_workers_are_gone(tmp_path, capsys):
    """Two dead workers' trials stayed RUNNING while `doctor` said healthy (it skipped search studies)."""
    storage = str(tmp_path / "d.journal")
    store = Store.open(storage)
    study = store.study("dead.search")
    from bench.store import this_worker

    store.create_running_trial(study, {"worker": {**this_worker(), "pid": 2**22 + 7}})
    assert main(["doctor", "--storage", storage]) == 1
    out = capsys.readouterr().out
    assert "study 'dead.search' trial 0: RUNNING, its worker (pid" in out
    assert main(["doctor", "--storage", storage, "--repair"]) == 0
    assert study.get_trials()[0].state == optuna.trial.TrialState.FAIL
